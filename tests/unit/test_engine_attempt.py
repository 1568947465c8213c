"""engine.attempt(): one delivery attempt end to end, on a real SQLite ledger with a fake clock,
in-memory breaker/limiter twins and the real webhook adapter over httpx.MockTransport."""

from __future__ import annotations

from typing import ClassVar, Literal

import httpx
import pytest

from broadcaster import engine, service
from broadcaster.channels import registry
from broadcaster.channels.base import Channel
from broadcaster.config import ChannelSettings, load_settings
from broadcaster.errors import TransientError
from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S, Receipt, current_error
from tests.support.ledger import claim, set_announcement
from tests.support.provider import Provider
from tests.support.runtime import NOW, Clock, memory_runtime, wakeups


class LookupSettings(ChannelSettings):
    kind: Literal["test-lookup"] = "test-lookup"


class LookupChannel(Channel):
    """Non-idempotent, public, but able to tell whether a key already landed."""

    kind = "test-lookup"
    Settings = LookupSettings
    idempotent = False
    can_lookup = True
    public = True
    landed: ClassVar[dict[str, Receipt]] = {}
    sent: ClassVar[list[str]] = []
    looked_up: ClassVar[list[str]] = []
    during_send: ClassVar[list] = []

    def send(self, post, *, key, progress=None):
        type(self).sent.append(key)
        for hook in type(self).during_send:
            hook()
        receipt = Receipt(remote_id=f"r-{key}", url=f"https://lookup.example/{key}")
        type(self).landed[key] = receipt
        return receipt

    def lookup(self, post, *, key):
        type(self).looked_up.append(key)
        return type(self).landed.get(key)


@pytest.fixture
def lookup_kind(monkeypatch):
    monkeypatch.setitem(registry._registry, LookupChannel.kind, LookupChannel)
    LookupChannel.landed, LookupChannel.sent, LookupChannel.looked_up, LookupChannel.during_send = {}, [], [], []
    return LookupChannel


def hook(path: str, fmt: str = "generic") -> dict:
    return {"kind": "webhook", "format": fmt, "url": f"https://hooks.example{path}", "secret": "whsec_dGVzdA=="}


class Harness:
    def __init__(self, tmp_path, clock: Clock, provider: Provider):
        self.clock = clock
        self.provider = provider
        self.settings = load_settings({
            "channels": {
                "hook": hook("/hook"),
                "slack": hook("/slack", "slack"),
                "primary": hook("/primary"),
                "backup": hook("/backup"),
                "limited": hook("/limited"),
                "quick": hook("/quick"),
                "looky": {"kind": "test-lookup"},
            },
            "policy": {
                "defaults": {"attempts": 3, "backoff": {"base": "1s", "max": "4s"},
                             "breaker": {"failures": 2, "cooldown": "30s"}},
                "channels": {
                    "primary": {"fallback": ["backup"], "fallback_after": "60s",
                                "breaker": {"failures": 2, "cooldown": "300s"}},
                    "limited": {"rate_limit": "1/10s"},
                    "quick": {"rate_limit": "1/2s"},
                },
                "deadlines": {"maintenance": "5m"},
            },
        }, env={})
        self.ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db", clock=clock)
        self.http = httpx.Client(transport=httpx.MockTransport(provider))
        self.runtime = memory_runtime(self.settings, ledger=self.ledger, clock=clock, http=self.http)
        self.enqueued = wakeups(self.runtime).deliveries

    def submit(self, channel: str, kind: str = "incident", **fields) -> str:
        data = {"kind": kind, "title": "API errors", "body": "We are investigating.", "channels": [channel], **fields}
        sub = service.submit(self.runtime, data, principal=service.SYSTEM)
        [did] = sub.deliveries
        return did

    def attempt(self, did: str) -> str:
        return engine.attempt(self.runtime, did, owner="worker-1")

    def get(self, did: str):
        return self.ledger.get_delivery(did)

    def states(self, did: str) -> list[str]:
        return [e.to_state for e in self.ledger.events_of(did)]

    def close(self):
        self.runtime.close()
        self.http.close()
        self.ledger.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def provider():
    return Provider()


@pytest.fixture
def h(tmp_path, clock, provider, lookup_kind):
    harness = Harness(tmp_path, clock, provider)
    yield harness
    harness.close()


# ---------------------------------------------------------------- the happy path


def test_delivered_records_receipt_attempt_and_events(h):
    did = h.submit("hook")
    assert h.enqueued == [(did, "hook", None)], "submit wakes a worker once"
    assert h.attempt(did) == "delivered"
    d = h.get(did)
    assert d.state == S.DELIVERED and d.attempts == 1 and d.maybe_sent is False
    assert d.receipt is not None and d.remote_id == f"msg_{did}"
    assert d.settled_at == NOW and d.lease_owner is None
    assert h.states(did) == ["pending", "sending", "delivered"]
    [req] = h.provider.requests
    assert req.headers["webhook-id"] == f"msg_{did}", "the stable delivery key is the webhook id"
    assert b"API errors" in req.content


def test_a_second_attempt_of_a_delivered_row_is_skipped(h):
    did = h.submit("hook")
    h.attempt(did)
    assert h.attempt(did) == "skipped"
    assert len(h.provider.requests) == 1


def test_claimed_by_another_worker_is_skipped_without_a_request(h):
    did = h.submit("hook")
    assert claim(h.ledger, did, "worker-2", 60) is not None
    assert h.attempt(did) == "skipped"
    assert h.provider.requests == []
    d = h.get(did)
    assert d.state == S.SENDING and d.lease_owner == "worker-2"


def test_unknown_delivery_id_is_skipped(h):
    assert h.attempt("dlv_does_not_exist") == "skipped"


def test_not_yet_due_is_skipped(h):
    did = h.submit("hook", publish_at=NOW + 3600)
    assert h.get(did).state == S.SCHEDULED
    assert h.attempt(did) == "skipped"
    assert h.provider.requests == []


# ---------------------------------------------------------------- failures and the policy


def test_transient_error_goes_back_to_the_ledger_with_backoff_and_a_short_countdown(h):
    h.provider.script["/hook"] = [503]
    did = h.submit("hook")
    h.enqueued.clear()
    assert h.attempt(did) == "retrying"
    d = h.get(did)
    assert d.attempts == 1 and "503" in d.last_error
    assert NOW + 0.1 <= d.due_at <= NOW + 1.0
    assert [(x[0], x[1]) for x in h.enqueued] == [(did, "hook")]
    assert 0 <= h.enqueued[0][2] <= 1.0, "a short wait also gets a Celery countdown"
    assert h.runtime.breaker.state("hook", 30).failures == 1


def test_transient_errors_until_out_of_attempts_end_failed(h):
    h.provider.script["/hook"] = [503, 502, 500]
    did = h.submit("hook")
    outcomes = []
    for _ in range(3):
        outcomes.append(h.attempt(did))
        h.runtime.breaker.reset("hook")
        h.clock.advance(10)
    assert outcomes == ["retrying", "retrying", "failed"]
    d = h.get(did)
    assert d.attempts == 3 and d.state == S.FAILED
    assert len(h.provider.requests) == 3


def test_permanent_error_falls_back_and_enqueues_the_fallback(h):
    h.provider.script["/primary"] = [400]
    did = h.submit("primary")
    h.enqueued.clear()
    assert h.attempt(did) == "fallen_back"
    ds = {d.channel: d for d in h.ledger.deliveries_of(h.get(did).announcement_id)}
    assert ds["primary"].state == S.FALLEN_BACK and ds["primary"].attempts == 1
    backup = ds["backup"]
    assert backup.state == S.PENDING and backup.fallback_of == did
    assert backup.deadline_at == ds["primary"].deadline_at
    assert h.enqueued == [(backup.id, "backup", None)]
    assert h.attempt(backup.id) == "delivered"
    assert h.provider.paths() == ["/primary", "/backup"]


def test_rate_limited_by_the_provider_waits_exactly_retry_after(h):
    h.provider.script["/hook"] = [httpx.Response(429, headers={"Retry-After": "42"})]
    did = h.submit("hook")
    h.enqueued.clear()
    assert h.attempt(did) == "retrying"
    d = h.get(did)
    assert d.due_at == NOW + 42
    assert h.enqueued == [], "a long wait lives in the ledger only"
    assert h.runtime.breaker.state("hook", 30).state == "closed"
    h.clock.advance(41)
    assert h.attempt(did) == "skipped", "not due yet"
    h.clock.advance(1)
    assert h.attempt(did) == "delivered"


# ---------------------------------------------------------------- breaker


def open_breaker(h, channel, failures=2, cooldown=30):
    for _ in range(failures):
        h.runtime.breaker.failure(channel, failures, cooldown)


def test_breaker_open_sends_nothing_and_counts_no_attempt(h):
    did = h.submit("hook")
    open_breaker(h, "hook")
    h.clock.advance(5)
    assert h.attempt(did) == "retrying"
    d = h.get(did)
    assert d.attempts == 0, "no request was made, so no attempt is counted"
    assert d.due_at == pytest.approx(NOW + 30), "due when the breaker lets a probe through"
    assert h.provider.requests == []
    h.clock.advance(25)
    assert h.attempt(did) == "delivered", "the probe goes through and succeeds"
    assert h.runtime.breaker.state("hook", 30).state == "closed"


def test_breaker_open_past_fallback_after_falls_back(h):
    did = h.submit("primary")
    open_breaker(h, "primary", cooldown=300)
    h.clock.advance(61)
    h.enqueued.clear()
    assert h.attempt(did) == "fallen_back"
    ds = {d.channel: d for d in h.ledger.deliveries_of(h.get(did).announcement_id)}
    assert ds["primary"].attempts == 0
    assert "circuit breaker open" in h.ledger.events_of(did)[-1].reason
    assert ds["backup"].state == S.PENDING and ds["backup"].fallback_of == did
    assert h.enqueued == [(ds["backup"].id, "backup", None)]
    assert h.provider.requests == []


def test_breaker_open_before_fallback_after_keeps_retrying(h):
    did = h.submit("primary")
    open_breaker(h, "primary", cooldown=300)
    h.clock.advance(59)
    assert h.attempt(did) == "retrying"
    assert [d.channel for d in h.ledger.deliveries_of(h.get(did).announcement_id)] == ["primary"]


# ---------------------------------------------------------------- shared rate limit


def test_shared_rate_limit_puts_the_delivery_back_without_a_request(h):
    first, second = h.submit("limited"), h.submit("limited")
    h.enqueued.clear()
    assert h.attempt(first) == "delivered"
    assert h.attempt(second) == "pending"
    d = h.get(second)
    assert d.state == S.PENDING and d.attempts == 0
    assert d.due_at == pytest.approx(NOW + 10.25)  # the 10-s window and its margin (limit_at_provider)
    assert len(h.provider.requests) == 1, "no request for the rate-limited delivery"
    assert h.enqueued == [], "a 10 s wait is not a Celery countdown"
    h.clock.advance(10)
    assert h.attempt(second) == "skipped", "not due yet: the window's margin"
    h.clock.advance(0.25)
    assert h.attempt(second) == "delivered"
    assert len(h.provider.requests) == 2


def test_short_rate_limit_wait_is_also_a_countdown(h):
    first, second = h.submit("quick"), h.submit("quick")
    h.enqueued.clear()
    h.attempt(first)
    assert h.attempt(second) == "pending"
    assert h.enqueued == [(second, "quick", pytest.approx(2.1))]  # a 2-s window + 5 %


# ---------------------------------------------------------------- stale work is dropped


def test_deadline_passed_fails_without_a_request(h):
    did = h.submit("hook", kind="maintenance")  # maintenance deadline: 5 minutes
    assert h.get(did).deadline_at == NOW + 300
    h.clock.advance(301)
    assert h.attempt(did) == "failed"
    d = h.get(did)
    assert d.state == S.FAILED and d.attempts == 0
    assert "deadline" in h.ledger.events_of(did)[-1].reason
    assert "deadline passed" in current_error(d.state, d.last_error)
    assert h.provider.requests == []


def test_deadline_passed_after_an_attempt_that_may_have_landed_is_unknown_not_failed(h):
    """"failed" would tell an operator the announcement never went out; an earlier attempt
    that timed out may have been posted — past the deadline it is not re-sent, and says so."""
    h.provider.script["/hook"] = [httpx.ReadTimeout("read timed out")]
    did = h.submit("hook", kind="maintenance")  # maintenance deadline: 5 minutes
    assert h.attempt(did) == "retrying" and h.get(did).maybe_sent
    h.clock.advance(301)
    assert h.attempt(did) == "unknown"
    d = h.get(did)
    assert d.state == S.UNKNOWN and d.maybe_sent and d.attempts == 1
    assert "may have landed" in current_error(d.state, d.last_error)
    assert len(h.provider.requests) == 1, "not re-sent late"


def test_retracted_announcement_is_cancelled_without_a_request(h):
    did = h.submit("hook")
    set_announcement(h.ledger, h.get(did).announcement_id, retracted_at=NOW)
    assert h.attempt(did) == "cancelled"
    assert h.get(did).state == S.CANCELLED
    assert h.provider.requests == []


# ---------------------------------------------------------------- maybe sent (guarantee 2)


def lose_the_lease(h, did):
    """A worker claimed it and died mid-send: the sweep marks it retrying + maybe_sent."""
    assert claim(h.ledger, did, "dead-worker", 5) is not None
    h.clock.advance(10)
    assert h.ledger.expire_leases() == [did]
    d = h.get(did)
    assert d.state == S.RETRYING and d.maybe_sent


def test_ambiguous_timeout_on_slack_ends_unknown(h):
    h.provider.script["/slack"] = [httpx.ReadTimeout("read timed out")]
    did = h.submit("slack")
    assert h.attempt(did) == "unknown"
    d = h.get(did)
    assert d.maybe_sent and d.attempts == 1
    assert len(h.provider.requests) == 1


def test_maybe_sent_on_a_non_idempotent_public_channel_is_not_re_sent(h):
    did = h.submit("slack")
    lose_the_lease(h, did)
    assert h.attempt(did) == "unknown"
    assert h.get(did).maybe_sent is True
    assert h.provider.requests == [], "never a blind re-post on a public channel"
    # the reason is its error too: `status` NOTE, the page and the API's current_error show it
    assert "may have been posted" in current_error(h.get(did).state, h.get(did).last_error)


def test_maybe_sent_on_an_idempotent_webhook_is_re_sent_with_the_same_key(h):
    h.provider.script["/hook"] = [httpx.ReadTimeout("read timed out")]
    did = h.submit("hook")
    assert h.attempt(did) == "retrying"
    assert h.get(did).maybe_sent
    h.clock.advance(10)
    assert h.attempt(did) == "delivered"
    ids = {r.headers["webhook-id"] for r in h.provider.requests}
    assert ids == {f"msg_{did}"} and len(h.provider.requests) == 2
    assert h.get(did).maybe_sent is False


def test_maybe_sent_on_a_lookup_channel_finds_the_earlier_post(h):
    did = h.submit("looky")
    LookupChannel.landed[did] = Receipt(remote_id="earlier", url="https://lookup.example/earlier")
    lose_the_lease(h, did)
    assert h.attempt(did) == "delivered"
    assert LookupChannel.looked_up == [did]
    assert LookupChannel.sent == [], "found by look-up: not posted again"
    d = h.get(did)
    assert d.remote_id == "earlier" and d.maybe_sent is False
    assert "look-up" in h.ledger.events_of(did)[-1].reason


def test_maybe_sent_on_a_lookup_channel_sends_when_nothing_landed(h):
    did = h.submit("looky")
    lose_the_lease(h, did)
    assert h.attempt(did) == "delivered"
    assert LookupChannel.looked_up == [did] and LookupChannel.sent == [did]


def test_first_attempt_on_a_lookup_channel_does_not_look_up(h):
    did = h.submit("looky")
    assert h.attempt(did) == "delivered"
    assert LookupChannel.looked_up == [] and LookupChannel.sent == [did]


def test_lookup_that_cannot_tell_retries_later(h):
    did = h.submit("looky")
    lose_the_lease(h, did)

    def cannot_tell(post, *, key):
        raise TransientError("lookup service down")

    h.runtime.channel("looky").lookup = cannot_tell
    assert h.attempt(did) == "retrying"
    assert LookupChannel.sent == []


def test_a_worker_whose_lease_expired_does_not_overwrite_the_newer_state(h):
    did = h.submit("looky")

    def lease_expires_mid_send():
        h.clock.advance(3600)
        h.ledger.expire_leases()

    LookupChannel.during_send.append(lease_expires_mid_send)
    assert h.attempt(did) == "lease_lost"
    d = h.get(did)
    assert d.state == S.RETRYING and d.maybe_sent, "the sweep's verdict stands"
    LookupChannel.during_send.clear()
    assert h.attempt(did) == "delivered"
    assert LookupChannel.sent == [did], "the next attempt looked up and found the post: sent once"
