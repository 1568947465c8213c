"""One contract, two backends: the in-memory twins must behave exactly like the Redis-backed
breaker and rate limiter the workers share. Every test below runs against both.

Redis uses the server clock, so both backends run on real time here, with small windows
(a few hundred milliseconds) and generous tolerances.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from broadcaster.resilience import MemoryBreaker, MemoryRateLimiter, RedisBreaker, RedisRateLimiter

COOLDOWN = 0.3
FAILURES = 3
SLACK = 0.25  # scheduling tolerance on a busy machine


@pytest.fixture
def redis_client(shared_redis_url):
    import redis

    client = redis.Redis.from_url(shared_redis_url)
    prefix = f"bc-test:{uuid.uuid4().hex}:"
    client.test_prefix = prefix
    yield client
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def breaker(request):
    if request.param == "memory":
        return MemoryBreaker()
    client = request.getfixturevalue("redis_client")
    return RedisBreaker(client, prefix=client.test_prefix + "breaker:")


@pytest.fixture(params=["memory", "redis"])
def limiter(request):
    if request.param == "memory":
        return MemoryRateLimiter()
    client = request.getfixturevalue("redis_client")
    return RedisRateLimiter(client, prefix=client.test_prefix + "rate:")


def fail(breaker, channel="ch", n=1):
    for _ in range(n):
        breaker.failure(channel, FAILURES, COOLDOWN)


def allow(breaker, channel="ch"):
    return breaker.allow(channel, FAILURES, COOLDOWN)


# ---------------------------------------------------------------- circuit breaker


def test_breaker_starts_closed(breaker):
    p = allow(breaker)
    assert p.allowed and not p.probe and p.opened_at is None
    assert breaker.state("ch", COOLDOWN).state == "closed"


def test_breaker_opens_after_n_consecutive_failures(breaker):
    before = time.time()
    fail(breaker, n=FAILURES - 1)
    assert allow(breaker).allowed, "below the threshold the channel is still tried"
    assert breaker.state("ch", COOLDOWN).state == "closed"
    fail(breaker)
    p = allow(breaker)
    assert not p.allowed and not p.probe
    assert COOLDOWN - SLACK <= p.retry_after <= COOLDOWN
    assert p.opened_at == pytest.approx(before, abs=1.0)
    st = breaker.state("ch", COOLDOWN)
    assert st.state == "open" and st.failures == FAILURES


def test_breaker_lets_exactly_one_probe_through_after_the_cooldown(breaker):
    fail(breaker, n=FAILURES)
    time.sleep(COOLDOWN + 0.05)
    assert breaker.state("ch", COOLDOWN).state == "half_open"
    first = allow(breaker)
    assert first.allowed and first.probe and first.opened_at is not None
    second = allow(breaker)
    assert not second.allowed, "only one probe per cooldown"
    assert second.retry_after > COOLDOWN - SLACK


def test_breaker_probe_success_closes_it(breaker):
    fail(breaker, n=FAILURES)
    time.sleep(COOLDOWN + 0.05)
    assert allow(breaker).probe
    breaker.success("ch")
    p = allow(breaker)
    assert p.allowed and not p.probe
    assert breaker.state("ch", COOLDOWN).state == "closed"
    fail(breaker, n=FAILURES - 1)
    assert allow(breaker).allowed, "the failure count starts again from zero"


def test_breaker_failed_probe_reopens_for_a_full_cooldown(breaker):
    fail(breaker, n=FAILURES)
    opened = allow(breaker).opened_at
    time.sleep(COOLDOWN + 0.05)
    assert allow(breaker).probe
    fail(breaker)
    p = allow(breaker)
    assert not p.allowed
    assert COOLDOWN - SLACK <= p.retry_after <= COOLDOWN
    assert p.opened_at == pytest.approx(opened), "opened_at keeps the first opening (for fallback_after)"
    time.sleep(COOLDOWN + 0.05)
    assert allow(breaker).probe, "and after another cooldown, another probe"


def test_breaker_success_resets_the_failure_count(breaker):
    fail(breaker, n=FAILURES - 1)
    breaker.success("ch")
    fail(breaker, n=FAILURES - 1)
    assert allow(breaker).allowed


def test_breaker_channels_are_independent(breaker):
    fail(breaker, "down", n=FAILURES)
    assert not allow(breaker, "down").allowed
    assert allow(breaker, "up").allowed


def test_breaker_reset(breaker):
    fail(breaker, n=FAILURES)
    breaker.reset("ch")
    assert allow(breaker).allowed
    assert breaker.state("ch", COOLDOWN).state == "closed"


def test_breaker_probe_is_exclusive_across_threads(breaker):
    fail(breaker, n=FAILURES)
    time.sleep(COOLDOWN + 0.05)
    barrier = threading.Barrier(8)
    results = []
    lock = threading.Lock()

    def worker():
        barrier.wait()
        p = allow(breaker)
        with lock:
            results.append(p.allowed)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results.count(True) == 1, results


# ---------------------------------------------------------------- sliding-window rate limit


def test_limit_allows_n_then_waits_until_the_oldest_grant_leaves_the_window(limiter):
    limit, per = 3, 0.9
    waits = [limiter.acquire("k", limit, per) for _ in range(limit)]
    assert waits == [0.0] * limit
    wait = limiter.acquire("k", limit, per)
    assert 0.9 - SLACK <= wait <= 0.9 + 0.01
    again = limiter.acquire("k", limit, per)
    assert 0 < again <= wait + 0.01, "a refused request takes no slot"


def test_limit_frees_slots_as_grants_age_out(limiter):
    limit, per = 2, 0.6
    assert limiter.acquire("k", limit, per) == 0.0
    time.sleep(0.3)
    assert limiter.acquire("k", limit, per) == 0.0
    assert limiter.acquire("k", limit, per) > 0, "two in the last 0.6 s"
    time.sleep(0.3 + 0.05)  # the first grant has left the window, the second has not
    assert limiter.acquire("k", limit, per) == 0.0, "one slot came back"
    assert limiter.acquire("k", limit, per) > 0, "only one"
    time.sleep(0.6 + 0.1)
    assert [limiter.acquire("k", limit, per) for _ in range(2)] == [0.0, 0.0], "a whole window later: all free"
    assert limiter.acquire("k", limit, per) > 0, "never more than the limit in one window"


def test_no_window_ever_holds_more_than_the_limit(limiter):
    """The promise a token bucket cannot keep: at most `limit` grants in ANY window of `per`."""
    limit, per = 5, 0.5
    grants = []
    deadline = time.time() + 1.6
    while time.time() < deadline:
        if limiter.acquire("w", limit, per) == 0.0:
            grants.append(time.time())
        time.sleep(0.005)
    assert len(grants) >= limit * 3 - 1, "the limit is used, not just respected"
    worst = max(sum(1 for g in grants if t <= g < t + per - SLACK) for t in grants)
    assert worst <= limit, f"{worst} grants inside one {per}s window"


def test_wait_shrinks_as_time_passes(limiter):
    limiter.acquire("k", 1, 1.0)
    first = limiter.acquire("k", 1, 1.0)
    time.sleep(0.3)
    later = limiter.acquire("k", 1, 1.0)
    assert 0 < later < first
    assert first - later == pytest.approx(0.3, abs=SLACK)


def test_limit_keys_are_independent(limiter):
    assert limiter.acquire("a", 1, 60) == 0.0
    assert limiter.acquire("a", 1, 60) > 0
    assert limiter.acquire("b", 1, 60) == 0.0


def test_limit_reset(limiter):
    limiter.acquire("k", 1, 60)
    assert limiter.acquire("k", 1, 60) > 0
    limiter.reset("k")
    assert limiter.acquire("k", 1, 60) == 0.0


def test_limit_is_shared_exactly_under_concurrency(limiter):
    barrier = threading.Barrier(8)
    granted = []
    lock = threading.Lock()

    def worker():
        barrier.wait()
        for _ in range(5):
            w = limiter.acquire("shared", 10, 60)
            with lock:
                granted.append(w == 0.0)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(granted) == 40
    assert granted.count(True) == 10, "exactly the limit, however many workers ask"


def test_limit_long_window_reports_long_waits(limiter):
    assert limiter.acquire("slow", 1, 3600) == 0.0
    assert limiter.acquire("slow", 1, 3600) == pytest.approx(3600, abs=1)


def test_a_batch_takes_as_many_slots_as_are_free_and_no_more(limiter):
    """A drain asks once for its whole batch: it gets what the window has left, and the wait
    until the next slot for the rest; single requests and batches share one window."""
    assert limiter.acquire_many("b", 5, 60, 3) == (3, 0.0)
    assert limiter.acquire("b", 5, 60) == 0.0
    granted, wait = limiter.acquire_many("b", 5, 60, 4)
    assert granted == 1 and 59 <= wait <= 60
    assert limiter.acquire_many("b", 5, 60, 2) == (0, pytest.approx(wait, abs=1)), "a full window grants nothing"
    assert limiter.acquire("b", 5, 60) > 0


def test_batches_racing_for_one_limit_never_get_more_than_it(limiter):
    barrier = threading.Barrier(6)
    granted: list[int] = []
    lock = threading.Lock()

    def worker():
        barrier.wait()
        for _ in range(4):
            n, _wait = limiter.acquire_many("race", 10, 60, 3)
            with lock:
                granted.append(n)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(granted) == 10, "exactly the limit, whatever the batch sizes"
