"""drain.drain(): a channel's due deliveries claimed, gated, sent and recorded as one batch, on a
real SQLite ledger with a fake clock, the memory breaker/limiter twins and the real webhook
adapter over httpx.MockTransport. Every guarantee stays per delivery: own key, own outcome, own
lease; a worker killed mid-batch leaves each one maybe_sent/retrying after its lease."""

from __future__ import annotations

import threading

import httpx
import pytest

from broadcaster import drain, service
from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S, Receipt
from tests.support.runtime import Clock, memory_runtime, wakeups
from tests.unit.test_engine_attempt import LookupChannel, lookup_kind  # noqa: F401 - fixture

NOW = 1_700_000_000.0


class Provider:
    """Every request recorded (from several send threads at once); the ids listed in ``fail``
    are answered 503, everything else 200. With ``kill_at`` = n the worker "dies" while its n-th
    request is in flight: the request arrived, the process ends before any answer."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.fail: set[str] = set()
        self.kill_at: int | None = None
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            if len(self.requests) == self.kill_at:
                self.kill_at = None
                raise SystemExit("worker killed mid-send")
        if request.headers.get("webhook-id", "").removeprefix("msg_") in self.fail:
            return httpx.Response(503, json={"ok": False})
        return httpx.Response(200, json={"ok": True})

    def keys(self, path: str) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests if r.url.path == path]


def hook(path: str) -> dict:
    return {"kind": "webhook", "format": "generic", "url": f"https://hooks.example{path}", "secret": "whsec_dGVzdA=="}


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def h(tmp_path, lookup_kind, provider):  # noqa: F811 - the imported fixture
    clock = Clock(NOW)
    settings = load_settings({
        "channels": {"hook": hook("/hook"), "other": hook("/other"), "three": hook("/three"),
                     "one": hook("/one"), "looky": {"kind": "test-lookup"},
                     "chat": {"kind": "webhook", "format": "slack", "url": "https://hooks.example/chat"}},
        "policy": {"defaults": {"attempts": 3, "backoff": {"base": "1s", "max": "4s"},
                                "breaker": {"failures": 2, "cooldown": "30s"}},
                   "channels": {"three": {"rate_limit": "3/10s"}, "one": {"rate_limit": "1/10s"}}},
        "worker": {"batch": 8},
    }, env={})
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db", clock=clock)
    http = httpx.Client(transport=httpx.MockTransport(provider))
    rt = memory_runtime(settings, ledger=ledger, clock=clock, http=http)
    yield rt
    rt.close()
    http.close()
    ledger.close()


def submit(rt, channel: str, n: int = 1) -> list[str]:
    out = []
    for i in range(n):
        sub = service.submit(rt, {"kind": "incident", "title": f"API errors {i}", "body": "Investigating.",
                                  "channels": [channel]}, principal=service.SYSTEM)
        out.extend(sub.deliveries)
    return out


def states(rt, did: str) -> list[str]:
    return [e.to_state for e in rt.ledger.events_of(did)]


def test_a_drain_sends_every_due_delivery_of_its_channel_each_under_its_own_key(h, provider):
    ids = submit(h, "hook", 20)
    [untouched] = submit(h, "other")
    report = drain.drain(h, "hook", owner="w1")
    assert report.claimed == 20 and report.states == {"delivered": 20}
    assert sorted(provider.keys("/hook")) == sorted(f"msg_{i}" for i in ids), "one request per delivery, own key"
    for did in ids:
        d = h.ledger.get_delivery(did)
        assert (d.state, d.attempts, d.remote_id, d.lease_owner) == (S.DELIVERED, 1, f"msg_{did}", None)
        assert states(h, did) == ["pending", "sending", "delivered"]
    assert h.ledger.get_delivery(untouched).state == S.PENDING, "a drain names one channel"
    assert drain.drain(h, "hook", owner="w1").word() == "idle"


def test_each_delivery_of_a_batch_gets_its_own_outcome(h, provider):
    ok1, bad, ok2 = submit(h, "hook", 3)
    provider.fail = {bad}
    drain.drain(h, "hook", owner="w1")
    assert h.ledger.get_delivery(ok1).state == S.DELIVERED and h.ledger.get_delivery(ok2).state == S.DELIVERED
    d = h.ledger.get_delivery(bad)
    assert d.state == S.RETRYING and d.attempts == 1 and d.due_at > NOW
    assert d.maybe_sent is False, "a 503 from an idempotent webhook"
    assert wakeups(h).deliveries[-1][:2] == (bad, "hook"), "a short wait wakes a worker again"


def test_a_batch_takes_as_many_permits_as_the_rate_limit_allows_and_no_more(h, provider):
    ids = submit(h, "three", 5)
    assert drain.batch_size(h, "three") == 3 and drain.batch_size(h, "one") == 1
    drain.drain(h, "three", owner="w1")
    assert len(provider.keys("/three")) == 3, "never more than 3 in the 10-s window"
    rows = [h.ledger.get_delivery(i) for i in ids]
    assert [r.state for r in rows[:3]] == [S.DELIVERED] * 3
    for r in rows[3:]:  # claimed, refused by the limiter, given back untouched
        assert (r.state, r.attempts, r.due_at) == (S.PENDING, 0, NOW + 10.25)  # window + its margin
        assert "rate limit 3 per 10s" in h.ledger.events_of(r.id)[-1].reason
    drain.drain(h, "three", owner="w1")
    assert len(provider.keys("/three")) == 3, "not due yet"
    h.clock.advance(10.25)
    drain.drain(h, "three", owner="w1")
    assert len(provider.keys("/three")) == 5


def test_a_partial_grant_sends_only_what_the_limiter_granted(h, provider):
    ids = submit(h, "three", 3)
    assert h.limiter.acquire("three", 3, 10.0) == 0  # another worker took one slot
    drain.drain(h, "three", owner="w1")
    assert len(provider.keys("/three")) == 2
    assert [h.ledger.get_delivery(i).state for i in ids] == [S.DELIVERED, S.DELIVERED, S.PENDING]


def test_a_limit_of_one_per_window_means_batches_of_one(h, provider):
    ids = submit(h, "one", 3)
    drain.drain(h, "one", owner="w1")
    assert len(provider.keys("/one")) == 1
    assert sum(1 for i in ids if h.ledger.get_delivery(i).state == S.DELIVERED) == 1


def test_an_open_breaker_holds_back_the_whole_batch_without_a_request(h, provider):
    ids = submit(h, "hook", 4)
    for _ in range(2):
        h.breaker.failure("hook", 2, 30.0)
    drain.drain(h, "hook", owner="w1")
    assert provider.requests == []
    for did in ids:
        d = h.ledger.get_delivery(did)
        assert d.state in (S.PENDING, S.RETRYING) and d.due_at >= NOW + 29 and d.attempts == 0


def _after_the_lease(rt, channel: str) -> list[str]:
    rt.clock.advance(drain.lease_for(rt, channel) + 1)
    return rt.ledger.expire_leases()


def test_a_worker_killed_mid_batch_leaves_only_the_send_in_flight_maybe_sent(h, provider):
    """Killed during the 2nd send of a batch of 4: the 1st was recorded by the write that
    started the 2nd; the 2nd is where a killed single attempt leaves its delivery; the 3rd and
    4th were never started and go back to being due, never attempted."""
    ids = submit(h, "hook", 4)
    provider.kill_at = 2
    with pytest.raises(SystemExit):
        drain.drain(h, "hook", owner="w1")
    assert len(provider.requests) == 2
    assert h.ledger.get_delivery(ids[0]).state == S.DELIVERED, "recorded before the next send started"
    assert all(h.ledger.get_delivery(i).state == S.SENDING for i in ids[1:])
    assert sorted(_after_the_lease(h, "hook")) == sorted(ids[1:])
    d = h.ledger.get_delivery(ids[1])
    assert (d.state, d.maybe_sent, d.attempts) == (S.RETRYING, True, 1)
    for did in ids[2:]:
        d = h.ledger.get_delivery(did)
        assert (d.state, d.maybe_sent, d.attempts, d.lease_owner) == (S.PENDING, False, 0, None)
        assert "never attempted" in h.ledger.events_of(did)[-1].reason
    drain.drain(h, "hook", owner="w2")
    # the one in flight is sent again under its key (an idempotent webhook); the rest once
    assert sorted(provider.keys("/hook")) == sorted(f"msg_{i}" for i in [*ids, ids[1]])
    assert all(h.ledger.get_delivery(i).state == S.DELIVERED for i in ids)
    assert [h.ledger.get_delivery(i).attempts for i in ids] == [1, 2, 1, 1]


def test_a_kill_mid_batch_on_a_channel_with_no_way_to_check_leaves_one_unknown(h, provider):
    """The outside trial's case (a public channel that can neither look up nor dedupe, like
    Facebook): killed during the first send of a batch of 4, exactly one delivery is unknown
    and the three never started are each posted once."""
    ids = submit(h, "chat", 4)
    provider.kill_at = 1
    with pytest.raises(SystemExit):
        drain.drain(h, "chat", owner="w1")
    assert sorted(_after_the_lease(h, "chat")) == sorted(ids)
    drain.drain(h, "chat", owner="w2")
    assert len(provider.requests) == 4, "one request per delivery, none repeated"
    assert [h.ledger.get_delivery(i).state for i in ids] == [S.UNKNOWN] + [S.DELIVERED] * 3


def test_after_a_kill_mid_batch_only_the_send_in_flight_is_looked_up(h):
    ids = submit(h, "looky", 3)

    def landed_then_killed():
        key = LookupChannel.sent[-1]
        LookupChannel.landed[key] = Receipt(remote_id=f"r-{key}")
        raise SystemExit("worker killed after the post landed")

    LookupChannel.during_send = [landed_then_killed]
    with pytest.raises(SystemExit):
        drain.drain(h, "looky", owner="w1")
    LookupChannel.during_send = []
    assert LookupChannel.sent == [ids[0]]
    _after_the_lease(h, "looky")
    drain.drain(h, "looky", owner="w2")
    assert LookupChannel.looked_up == [ids[0]], "only the delivery in flight may have landed"
    assert LookupChannel.sent == ids, "nothing posted twice"
    assert all(h.ledger.get_delivery(i).state == S.DELIVERED for i in ids)


def test_a_send_whose_lease_was_given_back_is_not_started(h, provider):
    """The sweep gave a waiting delivery back (its worker looked dead) and another worker took
    it: the first worker's start mark is refused, and it does not send."""
    a, b = submit(h, "hook", 2)
    claimed = h.ledger.claim_batch("hook", "w1", 30, 2)
    h.clock.advance(31)
    assert sorted(h.ledger.expire_leases()) == sorted([a, b])
    assert h.ledger.start_send(a, "w1") == (False, [])
    assert drain.drain(h, "hook", owner="w2").states == {"delivered": 2}
    assert h.ledger.transition_many([(claimed[0][0], S.DELIVERED, "late", {})], owner="w1") == [False]
    assert len(provider.requests) == 2


def test_a_drain_that_runs_out_of_time_wakes_another_for_the_rest(h):
    ids = submit(h, "hook", 12)
    before = len(wakeups(h).deliveries)
    report = drain.drain(h, "hook", owner="w1", budget=0.0)
    assert report.claimed == 8, "one batch, then the budget is spent"
    # the full batch's hand-on, then the spent budget's: wake-ups for the channel, not the sweep
    assert [w[1] for w in wakeups(h).deliveries[before:]] == ["hook", "hook"]
    assert sum(1 for i in ids if h.ledger.get_delivery(i).state == S.PENDING) == 4


def test_a_full_batch_hands_a_wake_up_on_before_it_sends(h, provider):
    """More may be due after a full claim: another worker thread is woken to claim the next
    batch while this one sends (a slow provider's backlog is worked in parallel)."""
    submit(h, "hook", 20)
    sent_at_wake = []
    wakeups(h).on_deliver = lambda _id, channel, _countdown: sent_at_wake.append(len(provider.requests))
    drain.drain(h, "hook", owner="w1")
    assert [w[1] for w in wakeups(h).deliveries[-2:]] == ["hook", "hook"] and len(sent_at_wake) == 2
    assert sent_at_wake == [0, 8], "handed on before each full batch was sent (20 = 8 + 8 + 4)"


def test_no_hand_on_when_the_rate_limit_holds_some_back(h):
    submit(h, "three", 5)
    before = len(wakeups(h).deliveries)
    assert h.limiter.acquire("three", 3, 10.0) == 0  # one slot of three already used
    drain.drain(h, "three", owner="w1")
    assert [w for w in wakeups(h).deliveries[before:] if w[2] is None] == [], "nothing more can go now"


def test_a_drain_says_it_started_before_its_first_claim(h, monkeypatch):
    """The pending-drain mark is cleared before anything is claimed: a wake-up coalesced into
    this drain was published before the clear, so its rows were committed before the claim."""
    submit(h, "hook", 3)
    order = []
    real_claim = h.ledger.claim_batch
    monkeypatch.setattr(h.enqueuer, "started", lambda channel: order.append(("started", channel)))
    monkeypatch.setattr(h.ledger, "claim_batch", lambda *a, **kw: order.append(("claim", a[0])) or real_claim(*a, **kw))
    drain.drain(h, "hook", owner="w1")
    assert order[:2] == [("started", "hook"), ("claim", "hook")]
    assert order.count(("started", "hook")) == 1


def test_a_batch_that_ran_long_gives_the_rest_back_unsent_before_their_leases_could_end(h):
    """Sends one after another must not outlive a lease: once timeout + half of scheduler.lease
    has passed since the claim, the deliveries not yet sent go back, due at once, nothing sent."""
    ids = submit(h, "looky", 3)
    LookupChannel.during_send = [lambda: h.clock.advance(h.settings.policy_for("looky").timeout
                                                         + h.settings.scheduler.lease)]
    drain.drain(h, "looky", owner="w1")
    assert len(LookupChannel.sent) == 1, "the first send took too long: the others were not started"
    rows = [h.ledger.get_delivery(i) for i in ids]
    assert rows[0].state == S.DELIVERED
    for r in rows[1:]:
        assert (r.state, r.attempts, r.maybe_sent, r.lease_owner) == (S.PENDING, 0, False, None)
        assert "batch ran long" in h.ledger.events_of(r.id)[-1].reason
    assert wakeups(h).deliveries[-1][1] == "looky", "woken again at once"


def test_batch_threads_send_a_batch_concurrently_with_the_same_outcomes(tmp_path, lookup_kind):  # noqa: F811
    clock = Clock(NOW)
    provider = Provider()
    settings = load_settings({"channels": {"hook": hook("/hook")}, "worker": {"batch": 8, "batch_threads": 4}}, env={})
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db", clock=clock)
    http = httpx.Client(transport=httpx.MockTransport(provider))
    rt = memory_runtime(settings, ledger=ledger, clock=clock, http=http)
    try:
        ids = submit(rt, "hook", 6)
        provider.fail = {ids[2]}
        drain.drain(rt, "hook", owner="w1")
        assert sorted(provider.keys("/hook")) == sorted(f"msg_{i}" for i in ids)
        assert [rt.ledger.get_delivery(i).state for i in ids] == [S.DELIVERED] * 2 + [S.RETRYING] + [S.DELIVERED] * 3
    finally:
        rt.close()
        http.close()
        ledger.close()
