"""A worker process killed with ``kill -9`` in the middle of a batch (issue 15, part 1): only the
delivery whose request was in flight may be uncertain; the deliveries of the same batch that
were never started go back to being due and are sent normally, once.

Real parts: a ``broadcaster worker`` process (threads pool), a private Redis, the ledger (SQLite
and PostgreSQL), the scheduler's sweep, and the sandbox's Facebook and Bluesky stand-ins on
loopback, slowed so the first send is still in flight when the worker dies. The stand-in counts
the requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from urllib.parse import unquote_plus

import pytest
import yaml

from broadcaster import service
from broadcaster.models import DeliveryState as S
from tests.support.sandbox_env import CREATE_PATH, channel_configs, creates, live_posts
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow
NOTICES = 4


@pytest.fixture
def sandbox():
    from broadcaster.sandbox import Sandbox

    sb = Sandbox(port=0, smtp_port=None, rate_limits=False).start()
    yield sb
    sb.stop()


def _worker(config_path: str) -> subprocess.Popen:
    env = {**os.environ, "BROADCASTER_LOG_FORMAT": "text"}
    return subprocess.Popen([sys.executable, "-m", "broadcaster", "--config", config_path, "worker", "--pool",
                             "threads", "-c", "2", "--loglevel", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def kill_mid_batch(sandbox, ledger_url: str, redis_url: str, tmp_path, provider: str) -> tuple[System, list]:
    """Four notices queued, then a worker claims them as one batch; it is killed -9 while the
    stand-in holds its first request; a fresh worker finishes. Returns the system and the four
    deliveries, settled, in the order the notices were posted."""
    name = f"{provider}-page"
    channels = {name: channel_configs(sandbox, tmp_path)[provider]}
    data = {"ledger": ledger_url, "broker": redis_url, "channels": channels, "routes": {"notice": [name]},
            # lease = 2 × timeout + scheduler.lease = 10 s: the in-flight post lands (3 s) well before
            "policy": {"defaults": {"attempts": 5, "backoff": {"base": 0.2, "max": 1}, "timeout": 4}},
            "scheduler": {"interval": 0.2, "requeue_after": 2, "lease": 2}}
    cfg = tmp_path / "b.yaml"
    cfg.write_text(yaml.safe_dump(data))
    system = System(settings_for(ledger_url, redis_url, channels, routes=data["routes"], policy=data["policy"],
                                 scheduler=data["scheduler"]))
    sandbox.set_fault(provider, "slow", seconds=3, path=CREATE_PATH[provider])
    first = second = None
    try:
        system.start_scheduler()
        anns = [service.submit(system.runtime, {"kind": "notice", "title": f"Maintenance notice #{i}",
                                                "body": f"Notice {i} of {NOTICES}."},
                               principal=service.SYSTEM).id for i in range(NOTICES)]
        first = _worker(str(cfg))  # all four are due before it starts: its first drain claims them at once
        deadline = time.time() + 60
        while not creates(sandbox, provider):
            assert time.time() < deadline, "the worker never reached the stand-in"
            time.sleep(0.02)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        assert len(creates(sandbox, provider)) == 1, "killed during the batch's first send"
        claimed = [d for a in anns for d in system.runtime.ledger.deliveries_of(a)]
        assert all(d.state == S.SENDING for d in claimed), "the four were claimed as one batch"
        sandbox.clear_faults(provider)
        second = _worker(str(cfg))
        deliveries = [system.wait_settled(a, timeout=90)[0] for a in anns]
        return system, deliveries
    except BaseException:
        system.stop()
        raise
    finally:
        for proc in (first, second):
            if proc is not None:
                _stop(proc)


def requests_for(sandbox, provider: str, i: int) -> int:
    """Create requests carrying notice ``i`` (Facebook's are form-encoded, Bluesky's JSON)."""
    return sum(1 for r in creates(sandbox, provider) if f"notice #{i}" in unquote_plus(r["body"]))


def test_a_kill_mid_batch_leaves_one_facebook_post_unknown_and_sends_the_rest_once(sandbox, ledger_url,
                                                                                    private_redis, tmp_path):
    """The outside trial's scenario: Facebook can neither look a post up nor refuse a repeat."""
    system, ds = kill_mid_batch(sandbox, ledger_url, private_redis.url, tmp_path, "facebook")
    try:
        events = {d.id: system.runtime.ledger.events_of(d.id) for d in ds}
        [in_flight] = [d for d in ds if any("worker lost mid-send" in e.reason for e in events[d.id])]
        assert in_flight.state == S.UNKNOWN, "the one request in flight may have landed: never re-posted"
        rest = [d for d in ds if d is not in_flight]
        assert [d.state for d in rest] == [S.DELIVERED] * 3
        for d in rest:
            assert d.attempts == 1 and not d.maybe_sent
            assert any("never attempted" in e.reason for e in events[d.id])
        assert len(creates(sandbox, "facebook")) == NOTICES, "one request per notice, none repeated"
        assert [requests_for(sandbox, "facebook", i) for i in range(NOTICES)] == [1] * NOTICES
    finally:
        system.stop()


def test_a_kill_mid_batch_has_bluesky_look_up_only_the_post_in_flight(sandbox, sqlite_url, private_redis, tmp_path):
    """A channel that can look up: only the delivery in flight is looked up (and found); the
    rest are posted once, without a look-up."""
    system, ds = kill_mid_batch(sandbox, sqlite_url, private_redis.url, tmp_path, "bluesky")
    try:
        assert [d.state for d in ds] == [S.DELIVERED] * NOTICES
        lookups = [r for r in sandbox.requests("bluesky") if "getRecord" in r["path"]]
        assert len(lookups) == 1, [r["path"] for r in lookups]
        looked_up = [d for d in ds if any("found on the channel by look-up" in e.reason
                                          for e in system.runtime.ledger.events_of(d.id))]
        assert len(looked_up) == 1, "the post in flight had landed: found, not re-posted"
        assert len(live_posts(sandbox, "bluesky")) == NOTICES
        assert [requests_for(sandbox, "bluesky", i) for i in range(NOTICES)] == [1] * NOTICES
    finally:
        system.stop()
