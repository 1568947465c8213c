"""A message that cannot be built from its text is a content error: the delivery fails at once,
nothing is sent, it is never "maybe sent" (so never ``unknown``), and the channel's breaker —
which is about the provider's health — is not touched. One bad title must not hold up a
critical incident on the same channel (issue 13, item 4).

The intake refuses such text too; these tests write the announcement straight into the ledger,
as an older release or an import could have, so the engine is safe on its own."""

from __future__ import annotations

import httpx

from broadcaster import engine
from broadcaster.channels.email import Email
from broadcaster.channels.webhook import Webhook
from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S
from broadcaster.resilience import MemoryBreaker
from tests.support.runtime import memory_runtime

MAIL = {"kind": "email", "transport": "smtp", "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none"},
        "from_address": "status@example.com", "recipients": ["oncall@example.com"]}
CHAT = {"kind": "webhook", "format": "slack", "url": "https://chat.example/hook"}
# one counted failure would open either breaker
POLICY = {"defaults": {"breaker": {"failures": 1, "cooldown": "60s"}, "attempts": 3}}


class Harness:
    def __init__(self, tmp_path, requests: list):
        settings = load_settings({"channels": {"mail": MAIL, "chat": CHAT}, "policy": POLICY}, env={})
        self.http = httpx.Client(transport=httpx.MockTransport(
            lambda r: requests.append(r) or httpx.Response(200, text="ok")))
        self.breaker = MemoryBreaker()
        self.rt = memory_runtime(settings, ledger=Ledger.open(f"sqlite:///{tmp_path}/l.db"), breaker=self.breaker,
                                 http=self.http)
        self.given: dict = {}
        self.connects: list = []

    def use(self, name: str, channel) -> None:
        """Deliver to ``name`` through ``channel`` (a runtime is fixed once built: a new one)."""
        self.given[name] = channel
        self.rt = self.rt.replaced(channels=self.given)

    def write(self, channel: str, title: str) -> str:
        """An announcement as the ledger may hold it, past any intake check."""
        res = self.rt.ledger.accept({"kind": "incident", "title": title, "body": "b", "channels": [channel]},
                                    [{"channel": channel}], actor="t")
        return res.deliveries[0].id

    def breaker_untouched(self, channel: str) -> bool:
        permit = self.breaker.allow(channel, 1, 60)
        return permit.allowed and permit.failures == 0 and permit.opened_at is None

    def close(self) -> None:
        self.rt.close()
        self.http.close()
        self.rt.ledger.close()


def _mail_channel(h: Harness) -> Email:
    def factory(*args, **kwargs):
        h.connects.append(args)
        raise AssertionError("no SMTP connection may be opened for a message that cannot be built")

    return Email("mail", h.rt.settings.channels["mail"], smtp_factory=factory)


def test_a_mail_header_with_a_line_break_fails_at_once_and_leaves_the_breaker_alone(tmp_path):
    h = Harness(tmp_path, [])
    try:
        h.use("mail", _mail_channel(h))
        did = h.write("mail", "Outage\r\nBcc: everyone@example.com")
        assert engine.attempt(h.rt, did) == "failed"
        d = h.rt.ledger.get_delivery(did)
        assert d.state == S.FAILED and not d.maybe_sent and d.attempts == 0
        reason = h.rt.ledger.events_of(did)[-1].reason
        assert "could not be built for sending" in reason and "nothing was sent" in reason
        assert h.connects == [], "nothing left the process"
        assert h.breaker_untouched("mail"), "a content error says nothing about the mail server"
        # the next announcement on the same channel is not held up by the bad one
        h.connects.clear()
        later = h.write("mail", "Critical: API down")
        engine.attempt(h.rt, later)
        assert len(h.connects) == 1, "the next message goes straight to the server (no open breaker)"
    finally:
        h.close()


class PayloadBug(Webhook):
    """Builds its payload from the text before the request; ``after_request`` fails later instead."""

    after_request = False

    def send(self, post, *, key, progress=None):
        if self.after_request:
            self.http  # noqa: B018 - the client was asked for: the request is on its way
        raise ValueError("cannot encode this title")


def test_a_payload_that_cannot_be_built_fails_but_an_error_after_the_request_stays_uncertain(tmp_path):
    requests: list = []
    h = Harness(tmp_path, requests)
    try:
        before = PayloadBug("chat", h.rt.settings.channels["chat"], http=h.http)
        h.use("chat", before)
        did = h.write("chat", "API errors")
        assert engine.attempt(h.rt, did) == "failed"
        assert not h.rt.ledger.get_delivery(did).maybe_sent and h.breaker_untouched("chat")

        after = PayloadBug("chat", h.rt.settings.channels["chat"], http=h.http)
        after.after_request = True
        h.use("chat", after)
        did = h.write("chat", "API errors again")
        assert engine.attempt(h.rt, did) == "unknown", "once a request may have left, a public chat is not re-sent"
        assert h.rt.ledger.get_delivery(did).maybe_sent
    finally:
        h.close()


class Unmarked(PayloadBug):
    marks_io = False  # an adapter that does not report its I/O: any error may follow a send


def test_an_adapter_that_does_not_report_its_io_keeps_the_cautious_reading(tmp_path):
    h = Harness(tmp_path, [])
    try:
        h.use("chat", Unmarked("chat", h.rt.settings.channels["chat"], http=h.http))
        did = h.write("chat", "API errors")
        assert engine.attempt(h.rt, did) == "unknown"
    finally:
        h.close()


class RenderBug(Webhook):
    def render(self, message):
        raise ValueError("a value the payload cannot hold")


def test_a_render_that_raises_on_the_text_is_a_content_error(tmp_path):
    requests: list = []
    h = Harness(tmp_path, requests)
    try:
        h.use("chat", RenderBug("chat", h.rt.settings.channels["chat"], http=h.http))
        did = h.write("chat", "API errors")
        assert engine.attempt(h.rt, did) == "failed"
        assert "cannot be rendered for chat: ValueError" in h.rt.ledger.events_of(did)[-1].reason
        assert requests == [] and h.breaker_untouched("chat")
    finally:
        h.close()
