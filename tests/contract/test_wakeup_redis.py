"""Wake-ups pushed straight onto the Redis broker (``broadcaster/wakeup_redis.py``): what is
pushed is what kombu would push for ``send_task``, a real worker runs it, and coalescing per
channel follows its rules — against a real Redis."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from broadcaster.config import load_settings
from broadcaster.runtime import queue_name
from broadcaster.tasks import DRAIN, CeleryEnqueuer, create_app
from broadcaster.wakeup_redis import MARK_PREFIX, MARK_TTL, RedisWakeups, task_payload


@pytest.fixture
def channel() -> str:
    return f"wk-{uuid.uuid4().hex[:10]}"  # its own queue and mark in the shared Redis


@pytest.fixture
def app(shared_redis_url, tmp_path, channel):
    settings = load_settings({"ledger": f"sqlite:///{tmp_path}/l.db", "broker": shared_redis_url,
                              "channels": {channel: {"kind": "webhook", "url": "http://127.0.0.1:9/x"}},
                              "routes": {"incident": [channel]}}, env={})
    return create_app(settings)


@pytest.fixture
def redis_client(shared_redis_url, channel):
    import redis

    client = redis.Redis.from_url(shared_redis_url)
    yield client
    client.delete(queue_name(channel), MARK_PREFIX + channel)
    client.close()


def _decoded(raw: bytes) -> dict:
    msg = json.loads(raw)
    msg["body"] = json.loads(base64.b64decode(msg["body"]))
    return msg


def test_the_payload_is_what_kombu_pushes_for_send_task(app, redis_client, channel):
    queue = queue_name(channel)
    for countdown in (None, 3.0):
        redis_client.delete(queue)
        opts = {"countdown": countdown} if countdown else {}
        app.send_task(DRAIN, (channel,), queue=queue, **opts)
        [theirs] = [_decoded(m) for m in redis_client.lrange(queue, 0, -1)]
        ours = _decoded(task_payload(app, DRAIN, (channel,), queue, countdown).encode())
        assert ours.keys() == theirs.keys()
        assert ours["body"] == theirs["body"] == [[channel], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                                  "chord": None}]
        assert {k: ours[k] for k in ("content-type", "content-encoding")} == \
               {k: theirs[k] for k in ("content-type", "content-encoding")}
        assert ours["headers"].keys() == theirs["headers"].keys()
        differ = {"id", "root_id", "eta", "ignore_result"}  # fresh per message; send_task leaves it unset
        assert {k: v for k, v in ours["headers"].items() if k not in differ} == \
               {k: v for k, v in theirs["headers"].items() if k not in differ}
        assert (ours["headers"]["eta"] is None) == (countdown is None)
        if countdown:
            from datetime import datetime

            gap = datetime.fromisoformat(ours["headers"]["eta"]) - datetime.fromisoformat(theirs["headers"]["eta"])
            assert abs(gap.total_seconds()) < 2
        assert ours["properties"].keys() == theirs["properties"].keys()
        same = {"delivery_mode", "delivery_info", "priority", "body_encoding"}
        assert {k: ours["properties"][k] for k in same} == {k: theirs["properties"][k] for k in same}
        assert ours["properties"]["correlation_id"] == ours["headers"]["id"]


def _without_ids(msg: dict) -> dict:
    return {**msg, "headers": {k: v for k, v in msg["headers"].items() if k not in {"id", "root_id"}},
            "properties": {k: v for k, v in msg["properties"].items() if k not in {"correlation_id", "delivery_tag"}}}


def test_each_wake_up_is_a_message_of_its_own(app, redis_client, channel):
    """A channel's message is built once; every push still carries its own task id (as root and
    correlation id too) and delivery tag, and is otherwise the message ``task_payload`` builds."""
    wakeups = RedisWakeups(app, redis_client, DRAIN)
    assert wakeups.wake([channel]) == [channel]
    wakeups.started(channel)
    assert wakeups.wake([channel]) == [channel]
    second, first = [_decoded(m) for m in redis_client.lrange(queue_name(channel), 0, -1)]
    built = _decoded(task_payload(app, DRAIN, (channel,), queue_name(channel)).encode())
    for msg in (first, second):
        assert msg["headers"]["id"] == msg["headers"]["root_id"] == msg["properties"]["correlation_id"]
        assert _without_ids(msg) == _without_ids(built)
    assert first["headers"]["id"] != second["headers"]["id"]
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]


def test_coalesced_per_channel_until_its_drain_starts(app, redis_client, channel):
    other = channel + "-b"
    wakeups = RedisWakeups(app, redis_client, DRAIN)
    try:
        assert wakeups.wake([channel, other]) == [channel, other]
        assert wakeups.wake([channel, other]) == []  # both already have a drain queued
        assert redis_client.llen(queue_name(channel)) == 1
        wakeups.started(channel)  # the drain of `channel` is about to claim
        assert wakeups.wake([channel, other]) == [channel]
        assert redis_client.llen(queue_name(channel)) == 2 and redis_client.llen(queue_name(other)) == 1
        ttl = redis_client.pttl(MARK_PREFIX + channel)
        assert 0 < ttl <= MARK_TTL * 1000
    finally:
        redis_client.delete(queue_name(other), MARK_PREFIX + other)


def test_the_sweep_publishes_past_a_mark_and_marks(app, redis_client, channel):
    wakeups = RedisWakeups(app, redis_client, DRAIN)
    redis_client.set(MARK_PREFIX + channel, "1")  # a mark whose message was lost
    assert wakeups.wake([channel]) == []
    assert wakeups.wake([channel], force=True) == [channel]
    assert redis_client.llen(queue_name(channel)) == 1
    assert 0 < redis_client.pttl(MARK_PREFIX + channel) <= MARK_TTL * 1000  # now it expires
    assert wakeups.wake([channel]) == []  # the intake coalesces into the sweep's drain


def test_a_delayed_wake_up_neither_waits_for_nor_sets_the_mark(app, redis_client, channel):
    wakeups = RedisWakeups(app, redis_client, DRAIN)
    assert wakeups.wake([channel], countdown=5) == [channel]
    assert redis_client.exists(MARK_PREFIX + channel) == 0
    assert wakeups.wake([channel]) == [channel]  # a drain due now is not left out for one in 5 s
    assert wakeups.wake([channel], countdown=5) == [channel]
    [delayed, now, first] = [_decoded(m) for m in redis_client.lrange(queue_name(channel), 0, -1)]
    assert delayed["headers"]["eta"] and first["headers"]["eta"] and now["headers"]["eta"] is None


def test_one_round_trip_for_every_channel(app, redis_client, channel):
    calls = []
    real = redis_client.execute_command

    def counting(*args, **kw):
        calls.append(args[0])
        return real(*args, **kw)

    redis_client.execute_command = counting
    wakeups = RedisWakeups(app, redis_client, DRAIN)
    names = [f"{channel}-{i}" for i in range(4)]
    try:
        wakeups.wake(names)
        assert calls == ["EVALSHA"]
    finally:
        redis_client.execute_command = real
        redis_client.delete(*[queue_name(n) for n in names], *[MARK_PREFIX + n for n in names])


def test_a_real_worker_runs_what_was_pushed(shared_redis_url, tmp_path, channel, redis_client):
    """The pushed message is taken by a Celery worker and runs the real ``broadcaster.drain``
    (which, finding nothing due, says it started and goes idle)."""
    from celery.contrib.testing.worker import start_worker

    from broadcaster.runtime import Runtime
    from broadcaster.wakeup import MemoryEnqueuer

    settings = load_settings({"ledger": f"sqlite:///{tmp_path}/l.db", "broker": shared_redis_url,
                              "channels": {channel: {"kind": "webhook", "url": "http://127.0.0.1:9/x"}},
                              "routes": {"incident": [channel]}}, env={})
    seen = MemoryEnqueuer()
    runtime = Runtime.from_settings(settings, enqueuer=seen)
    app = create_app(settings, runtime)  # the worker's drain reports to `seen`
    publisher = create_app(settings)  # the API's own app, as in production
    enqueuer = CeleryEnqueuer(publisher, RedisWakeups.for_app(publisher, settings, DRAIN))
    try:
        with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, loglevel="WARNING"):
            enqueuer.deliver([("dlv_x", channel)])
            deadline = time.monotonic() + 15
            while not seen.started_drains and time.monotonic() < deadline:
                time.sleep(0.05)
        assert seen.started_drains == [channel], "the worker never ran the pushed drain"
        assert redis_client.llen(queue_name(channel)) == 0
    finally:
        runtime.close()
        runtime.ledger.close()
