"""Network faults from a TCP proxy: between workers and Redis (latency, connection resets) and
between workers and a provider (black hole: the request is swallowed, no answer ever comes)."""

from __future__ import annotations

import time

import pytest

from broadcaster import service
from tests.support.faultproxy import FaultProxy
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow


def submit(system, title: str, channels=None) -> str:
    data = {"kind": "incident", "title": title, "body": "network chaos"}
    if channels:
        data["channels"] = channels
    return service.submit(system.runtime, data, principal=service.SYSTEM).id


def test_redis_latency_and_resets(sqlite_url, private_redis, receiver):
    proxy = FaultProxy("127.0.0.1", private_redis.port).start()
    url = f"redis://127.0.0.1:{proxy.port}/0"
    channels = {"hook": {"kind": "webhook", "format": "generic", "url": receiver.url + "/hook"}}
    system = System(settings_for(sqlite_url, url, channels))
    ids = []
    try:
        with system.worker():
            system.start_scheduler()
            ids += [submit(system, f"calm #{i}") for i in range(5)]
            proxy.set("latency", 0.1)
            ids += [submit(system, f"slow redis #{i}") for i in range(5)]
            for i in range(3):  # connections torn down with RST, three times
                time.sleep(1)
                proxy.set("reset")
                ids.append(submit(system, f"reset #{i}"))
                proxy.set("pass")
            for ann in ids:
                [d] = system.wait_settled(ann, timeout=90)
                assert str(d.state) == "delivered", (d.channel, d.last_error)
        assert len(receiver.unique_ids()) == len(ids)
    finally:
        system.stop()
        proxy.stop()


def test_provider_black_hole(sqlite_url, private_redis, receiver):
    proxy = FaultProxy("127.0.0.1", int(receiver.url.rsplit(":", 1)[1])).start()
    via_proxy = f"http://127.0.0.1:{proxy.port}"
    channels = {
        "hook": {"kind": "webhook", "format": "generic", "url": via_proxy + "/hook"},
        "chat": {"kind": "webhook", "format": "slack", "url": via_proxy + "/services/T/B/chat"},
    }
    policy = {"defaults": {"attempts": 20, "backoff": {"base": 0.2, "max": 1}, "timeout": 1,
                           "breaker": {"failures": 100, "cooldown": 1}}}
    system = System(settings_for(sqlite_url, private_redis.url, channels, policy=policy))
    try:
        proxy.set("blackhole")
        with system.worker():
            system.start_scheduler()
            ann = submit(system, "into the void")
            deadline = time.time() + 30
            while time.time() < deadline:  # wait until the chat delivery gave up as unknown
                states = {d.channel: str(d.state) for d in system.runtime.ledger.deliveries_of(ann)}
                if states.get("chat") == "unknown":
                    break
                time.sleep(0.2)
            proxy.set("pass")
            ds = {d.channel: d for d in system.wait_settled(ann, timeout=60)}
        assert str(ds["chat"].state) == "unknown", "a chat webhook cannot be checked: never re-posted blindly"
        assert str(ds["hook"].state) == "delivered", "the signed webhook is re-sent with the same webhook-id"
        assert ds["hook"].attempts >= 2
        assert [r.path for r in receiver.requests] == ["/hook"], "the chat post went into the void and stays unsent"
    finally:
        system.stop()
        proxy.stop()
