"""The core promises with real parts: a Celery worker, Redis, SQLite and PostgreSQL, and an HTTP
receiver on loopback speaking Standard Webhooks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from broadcaster import service
from broadcaster.channels.webhook import verify
from tests.support.receiver import Receiver, Reply
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow
SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLXdlYmhvb2tzLTEyMzQ1Ng=="


def hook(url: str) -> dict:
    return {"kind": "webhook", "format": "generic", "url": url, "secret": SECRET}


@pytest.fixture
def system_factory(private_redis):
    systems = []

    def make(ledger_url, channels, **kw):
        s = System(settings_for(ledger_url, private_redis.url, channels, **kw))
        systems.append(s)
        return s

    yield make
    for s in systems:
        s.stop()


def submit(system, **fields):
    data = {"kind": "incident", "title": "API errors", "body": "We are **investigating**.", **fields}
    return service.submit(system.runtime, data, principal=service.SYSTEM).id


def test_receiver_failing_three_times_gets_it_exactly_once(system_factory, ledger_url, receiver):
    system = system_factory(ledger_url, {"hook": hook(receiver.url + "/hook")})
    receiver.script(503, 503, 503)
    with system.worker():
        system.start_scheduler()
        ann = submit(system)
        [d] = system.wait_settled(ann)
    assert str(d.state) == "delivered"
    assert d.attempts == 4
    assert [r.status for r in receiver.requests] == [503, 503, 503, 200]
    assert len(receiver.unique_ids()) == 1 and len(receiver.ok()) == 1
    ok = receiver.ok()[0]
    assert verify(SECRET, ok.headers, ok.body), "Standard Webhooks signature must verify"
    assert ok.json()["data"]["title"] == "API errors"
    reasons = [e.to_state for e in system.runtime.ledger.events_of(d.id)]
    assert reasons.count("retrying") == 3 and reasons[-1] == "delivered"


def test_retry_after_is_honoured(system_factory, ledger_url, receiver):
    system = system_factory(ledger_url, {"hook": hook(receiver.url + "/hook")})
    receiver.script(Reply(429, {"Retry-After": "2"}))
    with system.worker():
        system.start_scheduler()
        ann = submit(system)
        [d] = system.wait_settled(ann)
    assert str(d.state) == "delivered"
    first, second = receiver.requests[0], receiver.requests[1]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 2.0, f"retried after {second.at - first.at:.2f}s, provider asked for 2s"


def test_permanent_error_goes_straight_to_fallback(system_factory, ledger_url, receiver):
    channels = {"primary": hook(receiver.url + "/primary"), "backup": hook(receiver.url + "/backup")}
    policy = {"defaults": {"attempts": 5, "backoff": {"base": 0.2, "max": 1}},
              "channels": {"primary": {"fallback": ["backup"]}}}
    system = system_factory(ledger_url, channels, routes={"incident": ["primary"]}, policy=policy)
    receiver.script(Reply(400, body=b'{"error":"bad payload"}'))
    with system.worker():
        system.start_scheduler()
        ann = submit(system)
        ds = system.wait_settled(ann, count=2)
    by_channel = {d.channel: d for d in ds}
    assert str(by_channel["primary"].state) == "fallen_back"
    assert by_channel["primary"].attempts == 1, "a permanent error must not be retried"
    assert str(by_channel["backup"].state) == "delivered"
    assert by_channel["backup"].fallback_of == by_channel["primary"].id
    assert [r.path for r in receiver.requests] == ["/primary", "/backup"]


def test_a_channel_routed_directly_and_as_a_fallback_gets_the_announcement_once(system_factory, ledger_url,
                                                                                 receiver):
    """Routed to a and b, a falls back to [b, c], and a fails for good: b's receiver sees exactly
    one post (its own delivery), c exactly one (the fallback), and a's record says why b got
    no second one."""
    others = Receiver().start()
    try:
        channels = {"a": hook(receiver.url + "/a"), "b": hook(others.url + "/b"), "c": hook(others.url + "/c")}
        policy = {"defaults": {"attempts": 5, "backoff": {"base": 0.2, "max": 1}},
                  "channels": {"a": {"fallback": ["b", "c"]}}}
        system = system_factory(ledger_url, channels, routes={"incident": ["a", "b"]}, policy=policy)
        receiver.script(*[Reply(400, body=b'{"error":"bad payload"}')] * 3)
        with system.worker():
            system.start_scheduler()
            ann = submit(system)
            ds = system.wait_settled(ann, count=3)
        by_channel = {d.channel: d for d in ds}
        assert sorted(by_channel) == ["a", "b", "c"] and len(ds) == 3
        assert str(by_channel["a"].state) == "fallen_back"
        assert str(by_channel["b"].state) == "delivered" and by_channel["b"].fallback_of is None
        assert str(by_channel["c"].state) == "delivered" and by_channel["c"].fallback_of == by_channel["a"].id
        assert [r.path for r in others.ok()].count("/b") == 1, "b must get the announcement exactly once"
        assert [r.path for r in others.ok()].count("/c") == 1
        reasons = " ".join(e.reason for e in system.runtime.ledger.events_of(by_channel["a"].id))
        assert f"fallback b already has it ({by_channel['b'].id}" in reasons
    finally:
        others.stop()


def test_flushall_mid_run_loses_nothing(system_factory, sqlite_url, receiver, private_redis):
    # requeue_after is long on purpose: the scheduler must notice the emptied Redis by itself
    system = system_factory(sqlite_url, {"hook": hook(receiver.url + "/hook")}, scheduler={"requeue_after": 120})
    system.start_scheduler()
    time.sleep(0.5)  # the scheduler has seen the broker once
    ids = [submit(system, title=f"notice {i}") for i in range(20)]  # queued, no worker yet
    private_redis.client().flushall()
    started = time.time()
    with system.worker():
        for ann in ids:
            system.wait_settled(ann, timeout=40)
    assert time.time() - started < 30, "recovery must not wait for requeue_after (120 s)"
    assert all(str(d.state) == "delivered" for a in ids for d in system.runtime.ledger.deliveries_of(a))
    assert len(receiver.unique_ids()) == 20


def _worker_process(config_path: str) -> subprocess.Popen:
    env = {**os.environ, "BROADCASTER_LOG_FORMAT": "text"}
    return subprocess.Popen([sys.executable, "-m", "broadcaster", "--config", config_path, "worker", "--pool", "threads",
                             "-c", "2", "--loglevel", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def test_worker_killed_mid_send_settles_exactly_once(ledger_url, private_redis, receiver, tmp_path):
    settings = settings_for(ledger_url, private_redis.url, {"hook": hook(receiver.url + "/hook")})
    cfg = tmp_path / "b.yaml"
    cfg.write_text(yaml.safe_dump({
        "ledger": ledger_url, "broker": private_redis.url,
        "channels": {"hook": hook(receiver.url + "/hook")}, "routes": {"incident": ["hook"]},
        "policy": {"defaults": {"attempts": 5, "backoff": {"base": 0.2, "max": 1}, "timeout": 5}},
        "scheduler": {"interval": 0.2, "requeue_after": 2, "lease": 3}}))
    system = System(settings)
    try:
        system.start_scheduler()
        receiver.hold()
        first = _worker_process(str(cfg))
        ann = submit(system)
        assert receiver.arrived.wait(30), "the worker never reached the receiver"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        receiver.release()  # the receiver finishes the request the dead worker had sent
        second = _worker_process(str(cfg))
        try:
            [d] = system.wait_settled(ann, timeout=60)
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(20)
        events = system.runtime.ledger.events_of(d.id)
        assert str(d.state) == "delivered"
        assert any("expired" in e.reason for e in events), "the lost lease must be visible in the log"
        assert [e.to_state for e in events].count("delivered") == 1
        assert len(receiver.unique_ids()) == 1, "the receiver must see one webhook-id only"
    finally:
        receiver.release()
        system.stop()
        time.sleep(0.1)


def test_each_message_reaches_only_its_channel_queue(shared_redis_url):
    """Bulkheads: a delivery for one channel must not also land in every other channel's queue."""
    import redis

    from broadcaster.config import load_settings
    from broadcaster.tasks import celery_enqueuer

    url = shared_redis_url.rsplit("/", 1)[0] + "/13"
    client = redis.Redis.from_url(url)
    client.flushdb()
    settings = load_settings({"broker": url, "channels": {
        "a": {"kind": "webhook", "url": "http://127.0.0.1:9/a"},
        "b": {"kind": "webhook", "url": "http://127.0.0.1:9/b"}}}, env={})
    enqueuer = celery_enqueuer(settings)
    try:
        enqueuer.deliver([("dlv_only_a", "a")])
        lists = {k.decode(): client.llen(k) for k in client.keys("bc*") if client.type(k) == b"list"}
        assert lists == {"bc.ch.a": 1}
    finally:
        client.flushdb()


def test_a_per_delivery_message_queued_before_an_upgrade_is_still_processed(system_factory, sqlite_url, receiver):
    """Workers now wake per channel (``broadcaster.drain``); a ``broadcaster.deliver`` message
    naming one delivery, published by an older version and still in a queue, is served too."""
    from broadcaster.runtime import queue_name
    from broadcaster.tasks import DELIVER
    from broadcaster.wakeup import NoEnqueuer

    system = system_factory(sqlite_url, {"hook": hook(receiver.url + "/hook")})
    quiet = system.runtime.replaced(enqueuer=NoEnqueuer())  # no drain for this one: only the old message wakes a worker
    ann = service.submit(quiet, {"kind": "incident", "title": "API errors", "body": "Looking."},
                         principal=service.SYSTEM).id
    [d] = system.runtime.ledger.deliveries_of(ann)
    system.app.send_task(DELIVER, (d.id, "hook"), queue=queue_name("hook"))
    with system.worker():  # no scheduler: nothing but that message can send it
        [d] = system.wait_settled(ann, timeout=30)
    assert str(d.state) == "delivered"
    assert len(receiver.ok()) == 1 and receiver.unique_ids() == {f"msg_{d.id}"}
    claim = [e for e in system.runtime.ledger.events_of(d.id) if e.to_state == "sending"]
    assert len(claim) == 1 and "batch" not in claim[0].reason, "claimed by the single-delivery path"


def test_a_lost_coalesced_wake_up_is_delivered_by_the_sweep(system_factory, sqlite_url, receiver, private_redis):
    """A drain was queued (its mark set) and its message lost: the next submit's wake-up is
    coalesced into that lost drain, so no worker is woken for it — and the sweep, publishing
    past the mark, still gets it delivered, once."""
    from broadcaster.runtime import queue_name
    from broadcaster.wakeup_redis import MARK_PREFIX, MARK_TTL

    system = system_factory(sqlite_url, {"hook": hook(receiver.url + "/hook")}, scheduler={"interval": 0.5})
    redis = private_redis.client()
    system.runtime.enqueue([("dlv_earlier", "hook")])  # a drain is queued for `hook`…
    assert redis.exists(MARK_PREFIX + "hook") and redis.llen(queue_name("hook")) == 1
    redis.delete(queue_name("hook"))  # …and its message is lost; the mark stays
    ann = submit(system)
    assert redis.llen(queue_name("hook")) == 0, "the submit's wake-up should have been coalesced"
    with system.worker():
        time.sleep(2.0)  # a worker is up, but nothing woke it: without the sweep it stays pending
        [d] = system.runtime.ledger.deliveries_of(ann)
        assert str(d.state) == "pending" and receiver.requests == []
        assert redis.pttl(MARK_PREFIX + "hook") > 0, "the mark outlived the wait (else this proves nothing)"
        started = time.time()
        system.start_scheduler()
        [d] = system.wait_settled(ann, timeout=10)
        took = time.time() - started
    assert str(d.state) == "delivered" and len(receiver.ok()) == 1
    assert took < MARK_TTL - 2, f"delivered {took:.1f} s after the sweep started: the sweep, not the mark's expiry"


def test_a_backlog_on_a_slow_provider_is_sent_by_several_threads_at_once(system_factory, sqlite_url, receiver,
                                                                          private_redis):
    """24 announcements wait for a worker; their wake-ups were coalesced into one drain. A full
    batch hands a wake-up on before it sends, so idle threads take the next batches: the slow
    provider sees requests overlapping, as it did when each announcement had its own wake-up."""
    from broadcaster.runtime import queue_name

    system = system_factory(sqlite_url, {"hook": hook(receiver.url + "/hook")})
    receiver.script(*[Reply(200, delay=0.3)] * 24)
    ids = [submit(system, title=f"backlog {i}") for i in range(24)]
    assert private_redis.client().llen(queue_name("hook")) == 1, "one queued drain for the whole backlog"
    with system.worker(concurrency=4):
        for ann in ids:
            system.wait_settled(ann, timeout=30)
    spans = [(r.at, r.at + 0.3) for r in receiver.requests]
    overlap = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert overlap >= 2, "one thread sent the whole backlog, one request after another"
    assert len(receiver.unique_ids()) == 24 and len(receiver.requests) == 24
