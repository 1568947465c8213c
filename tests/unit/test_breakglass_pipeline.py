"""Break-glass (``post --direct``) runs the worker's pipeline: ``engine.attempt`` over a journalled
memory twin of the ledger, so ``delivery.decide`` is its only retry policy — a provider's
Retry-After is waited exactly and does not use up the attempts, a permanent error stops at
once and hands over to the channel's fallbacks, transient errors are retried as the channel's
policy says — and a re-run or a ``reconcile`` never posts twice what may have landed.

Real webhook adapters over httpx.MockTransport, a clock that moves only when break-glass
sleeps, the journal in a temporary directory and (for reconcile) a SQLite ledger file."""

from __future__ import annotations

import httpx
import pytest

from broadcaster import engine
from broadcaster.breakglass import Journal, publish_direct
from broadcaster.breakglass_reconcile import reconcile
from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S
from tests.support.provider import Provider
from tests.support.runtime import Clock, memory_runtime

PAYLOAD = {"kind": "incident", "title": "Checkout is down", "body": "We are on it."}


class Killed(BaseException):
    """The process dies in the middle of a send (nothing in our code catches it)."""


def hook(path: str, fmt: str = "generic") -> dict:
    return {"kind": "webhook", "format": fmt, "url": f"https://hooks.example{path}", "secret": "whsec_dGVzdA=="}


class Glass:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.clock = Clock()
        self.sleeps: list[float] = []
        self.provider = Provider()
        self.http = httpx.Client(transport=httpx.MockTransport(self.provider))
        self.journal = Journal(tmp_path / "journal.jsonl")
        self.settings = load_settings({
            "ledger": f"sqlite:///{tmp_path}/ledger.db",
            "channels": {"hook": hook("/hook"), "chat": hook("/chat", "slack"), "primary": hook("/primary"),
                         "backup": hook("/backup")},
            "routes": {"incident": ["hook"]},
            "policy": {
                "defaults": {"attempts": 4, "backoff": {"base": "1s", "max": "4s"},
                             "breaker": {"failures": 10, "cooldown": "30s"}},
                "channels": {"primary": {"fallback": ["backup"]}},
            },
        }, env={})

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def post(self, *channels: str, key: str = "bg-1"):
        return publish_direct(self.settings, {**PAYLOAD, "channels": list(channels)}, key=key, journal=self.journal,
                              clock=self.clock, sleep=self.sleep, channel_io={"http": self.http})

    def reconcile(self) -> tuple[Ledger, dict[str, int]]:
        ledger = Ledger.open(self.settings.ledger, clock=self.clock)
        return ledger, reconcile(ledger, self.settings, self.journal)


@pytest.fixture
def glass(tmp_path):
    g = Glass(tmp_path)
    yield g
    g.http.close()


def states(result) -> dict[str, str]:
    return {o.channel: o.state for o in result.outcomes}


def test_a_rate_limit_waits_exactly_what_the_provider_asked_and_does_not_use_up_the_attempts(glass):
    limited = httpx.Response(429, headers={"Retry-After": "2"})
    glass.provider.script["/hook"] = [limited, limited, limited, limited, 200]
    result = glass.post("hook")
    assert states(result) == {"hook": "delivered"} and result.ok
    assert glass.sleeps == [2.0, 2.0, 2.0, 2.0], "each wait is the provider's Retry-After, to the second"
    assert glass.provider.count("/hook") == 5, "four rate limits are not four failures: the policy has 4 attempts"


def test_a_permanent_error_stops_at_once_and_hands_over_to_the_fallback(glass):
    glass.provider.script["/primary"] = [400]
    result = glass.post("primary")
    assert states(result) == {"primary": "fallen_back", "backup": "delivered"} and result.ok
    assert glass.provider.count("/primary") == 1 and glass.provider.count("/backup") == 1
    assert glass.sleeps == []
    [primary, backup] = result.outcomes
    assert backup.delivery_id != primary.delivery_id and "HTTP 400" in (primary.error or "")


def test_a_permanent_error_without_fallbacks_fails_without_a_second_try(glass):
    glass.provider.script["/hook"] = [403]
    result = glass.post("hook")
    assert states(result) == {"hook": "failed"} and not result.ok
    assert glass.provider.count("/hook") == 1 and glass.sleeps == []


def test_transient_errors_are_retried_as_the_channel_policy_says(glass):
    glass.provider.script["/hook"] = [503] * 10
    result = glass.post("hook")
    assert states(result) == {"hook": "failed"}
    assert glass.provider.count("/hook") == 4, "policy attempts: 4"
    # full jitter under min(max, base · 2^(n-1)); a sleep is what is left of the wait when the
    # loop gets to it, so its floor is only "more than nothing"
    ceilings = [1.0, 2.0, 4.0]
    assert len(glass.sleeps) == 3 and all(0 < s <= c for s, c in zip(glass.sleeps, ceilings, strict=True))
    assert "gave up after 4 attempts" in (result.outcomes[0].error or "")


def test_a_post_that_may_have_landed_is_never_sent_again_not_even_by_a_rerun(glass):
    glass.provider.script["/chat"] = [httpx.ReadTimeout("no answer")]
    first = glass.post("chat")
    assert states(first) == {"chat": "unknown"} and glass.provider.count("/chat") == 1
    again = glass.post("chat")
    assert states(again) == {"chat": "unknown"}
    assert glass.provider.count("/chat") == 1, "a slack webhook cannot tell: never re-posted"


def test_a_run_killed_mid_send_does_not_post_again_when_run_again(glass):
    glass.provider.script["/chat"] = [Killed()]
    with pytest.raises(Killed):
        glass.post("chat")
    assert glass.provider.count("/chat") == 1
    again = glass.post("chat")
    assert states(again) == {"chat": "unknown"}, "it may have landed, and this channel cannot check"
    assert glass.provider.count("/chat") == 1


def test_an_idempotent_channel_killed_mid_send_is_sent_again_under_the_same_key(glass):
    glass.provider.script["/hook"] = [Killed()]
    with pytest.raises(Killed):
        glass.post("hook")
    assert states(glass.post("hook")) == {"hook": "delivered"}
    keys = [r.headers["webhook-id"] for r in glass.provider.requests]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_a_wait_longer_than_break_glass_waits_is_left_to_the_workers(glass):
    glass.provider.script["/hook"] = [httpx.Response(429, headers={"Retry-After": "120"})]
    result = glass.post("hook")
    assert states(result) == {"hook": "retrying"} and not result.ok
    assert glass.sleeps == [] and "in 120 s" in (result.outcomes[0].error or "")
    ledger, counts = glass.reconcile()
    try:
        assert counts["pending"] == 1
        [d] = ledger.deliveries_of(result.announcement_id)
        assert d.state == S.PENDING and d.id == result.outcomes[0].delivery_id
    finally:
        ledger.close()


def test_reconcile_imports_the_fallback_and_the_workers_post_nothing_twice(glass):
    glass.provider.script["/primary"] = [400]
    result = glass.post("primary")
    ledger, counts = glass.reconcile()
    try:
        assert (counts["delivered"], counts["pending"]) == (1, 0)
        by_channel = {d.channel: d for d in ledger.deliveries_of(result.announcement_id)}
        assert by_channel["primary"].state == S.FALLEN_BACK and by_channel["backup"].state == S.DELIVERED
        assert by_channel["backup"].fallback_of == by_channel["primary"].id
        rt = memory_runtime(glass.settings, ledger=ledger, clock=glass.clock, http=glass.http)
        for d in by_channel.values():
            assert engine.attempt(rt, d.id) == "skipped"
        assert glass.provider.count("/primary") == 1 and glass.provider.count("/backup") == 1
        assert reconcile(ledger, glass.settings, glass.journal)["skipped"] == 1, "twice changes nothing"
    finally:
        ledger.close()


def test_the_same_key_for_a_different_announcement_is_refused(glass):
    glass.post("hook")
    from broadcaster.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="bg-1"):
        publish_direct(glass.settings, {**PAYLOAD, "title": "Something else", "channels": ["hook"]}, key="bg-1",
                       journal=glass.journal, clock=glass.clock, sleep=glass.sleep, channel_io={"http": glass.http})
    assert glass.provider.count("/hook") == 1


def test_a_slow_channel_does_not_hold_the_others_up(glass):
    glass.provider.script["/hook"] = [httpx.Response(429, headers={"Retry-After": "20"})]
    result = glass.post("hook", "chat")
    assert states(result) == {"hook": "delivered", "chat": "delivered"}
    assert [r.url.path for r in glass.provider.requests] == ["/hook", "/chat", "/hook"]
    assert glass.sleeps == [20.0]
    assert [o.channel for o in result.outcomes] == ["chat", "hook"], "reported as each settles"


def test_a_journal_written_by_the_earlier_break_glass_is_read_on_rerun_and_reconciled(glass):
    """Before break-glass ran over the ledger twin it journalled a note and one record per
    outcome; such a journal (on disk when broadcaster is upgraded) still reconciles, and a re-run
    of its command posts nothing that landed."""
    from broadcaster.breakglass import _digest

    ann_id = "ann_direct_" + _digest("ann", "bg-old")
    ids = {ch: "dlv_direct_" + _digest("dlv", "bg-old", ch) for ch in ("hook", "chat")}
    at = glass.clock()
    request = {**PAYLOAD, "channels": ["hook", "chat"], "components": [], "tags": [], "variants": {},
               "severity": None, "url": None, "window": None, "status": None}
    glass.journal.append({"type": "announcement", "id": ann_id, "key": "bg-old", "at": at, "author": "break-glass",
                          "request": request, "channels": ["hook", "chat"], "status": "investigating"})
    glass.journal.append({"type": "delivery", "announcement_id": ann_id, "delivery_id": ids["hook"], "channel": "hook",
                          "state": "delivered", "attempts": 1, "at": at + 1, "error": None, "note": None, "items": {},
                          "receipt": {"remote_id": "r-1", "url": "https://hooks.example/r-1", "extra": {}}})
    glass.journal.append({"type": "delivery", "announcement_id": ann_id, "delivery_id": ids["chat"], "channel": "chat",
                          "state": "failed", "attempts": 3, "at": at + 2, "error": "HTTP 500", "note": None,
                          "items": {"part:0": ["done", "ts-1"]}, "receipt": None})
    again = publish_direct(glass.settings, {**PAYLOAD, "channels": ["hook", "chat"]}, key="bg-old",
                           journal=glass.journal, clock=glass.clock, sleep=glass.sleep,
                           channel_io={"http": glass.http})
    assert states(again) == {"hook": "delivered", "chat": "delivered"}
    assert glass.provider.count("/hook") == 0, "delivered before the upgrade: not sent again"
    ledger, counts = glass.reconcile()
    try:
        assert (counts["announcements"], counts["delivered"]) == (1, 2)
        by_channel = {d.channel: d for d in ledger.deliveries_of(ann_id)}
        assert by_channel["hook"].remote_url == "https://hooks.example/r-1" and by_channel["hook"].id == ids["hook"]
        assert ledger.get_announcement(ann_id).title == PAYLOAD["title"]
    finally:
        ledger.close()
