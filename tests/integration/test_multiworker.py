"""Scale-out as deployed: separate processes against one PostgreSQL ledger and one Redis.

``broadcaster migrate`` prepares an empty database (twice: it must be safe to repeat), then two
worker processes each consume their own queue group and a scheduler process runs the sweep, as
deploy/compose.yaml runs them. 30 announcements to 4 webhook channels (two per group), some
first answered with 503s, must each arrive exactly once: the receiver counts distinct
``webhook-id`` values and successful requests.

Then the other way to scale: three worker processes on the *same* channel queue drain one
backlog together. Their batch claims (``FOR UPDATE SKIP LOCKED``) race for the same rows; each
delivery must be claimed by exactly one of them and arrive exactly once, and every process must
have claimed some (else nothing raced).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from broadcaster import service
from broadcaster.config import load_settings
from broadcaster.runtime import DEFAULT_QUEUE, Runtime, queue_name
from broadcaster.tasks import DRAIN, create_app
from broadcaster.wakeup import NoEnqueuer
from tests.conftest import _reset_pg
from tests.support.consumers import wait_consumers
from tests.support.receiver import Reply
from tests.support.system import System, settings_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

CHANNELS = ("hook-a", "hook-b", "hook-c", "hook-d")
GROUPS = {"one": ("hook-a", "hook-b"), "two": ("hook-c", "hook-d")}
ANNOUNCEMENTS = 30


def _broadcaster(cfg, *args, log=None) -> subprocess.Popen:
    env = {**os.environ, "BROADCASTER_LOG_FORMAT": "json"}
    return subprocess.Popen([sys.executable, "-m", "broadcaster", "--config", str(cfg), *args], env=env,
                            stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_two_queue_groups_and_a_scheduler_deliver_everything_once(pg_database, private_redis, receiver, tmp_path):
    _reset_pg(pg_database)
    channels = {name: {"kind": "webhook", "format": "generic", "url": f"{receiver.url}/{name}",
                       "secret": "whsec_dGVzdC1zZWNyZXQtZm9yLW11bHRpd29ya2Vycw=="} for name in CHANNELS}
    data = {
        "ledger": pg_database, "broker": private_redis.url, "channels": channels,
        "routes": {"incident": list(CHANNELS)},
        "policy": {"defaults": {"attempts": 8, "backoff": {"base": 0.2, "max": 1}, "timeout": 5}},
        "scheduler": {"interval": 0.2, "requeue_after": 2, "lease": 5},
    }
    cfg = tmp_path / "broadcaster.yaml"
    cfg.write_text(yaml.safe_dump(data))

    # an upgrade on an empty database, then again on the current schema
    for expect in ("(was 0; applied", "applied 0)"):
        done = subprocess.run([sys.executable, "-m", "broadcaster", "--config", str(cfg), "migrate"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert expect in done.stdout, done.stdout

    receiver.script(503, 503, 503, 503, 503)  # the first few requests fail, whichever channel they hit
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in (*GROUPS, "scheduler")}  # noqa: SIM115 - the child process writes it for its whole life
    procs: list[subprocess.Popen] = []
    system = System(settings_for(pg_database, private_redis.url, channels, routes=data["routes"],
                                 policy=data["policy"]))
    try:
        for group, names in GROUPS.items():
            queues = [queue_name(n) for n in names] + ([DEFAULT_QUEUE] if group == "two" else [])
            procs.append(_broadcaster(cfg, "worker", "-Q", ",".join(queues), "--pool", "threads", "-c", "4",
                                      "--loglevel", "INFO", log=logs[group]))
        procs.append(_broadcaster(cfg, "scheduler", log=logs["scheduler"]))
        ids = [service.submit(system.runtime, {"kind": "incident", "title": f"Incident {i}", "body": "Investigating."},
                              principal=service.SYSTEM).id for i in range(ANNOUNCEMENTS)]
        deadline = time.time() + 120
        for ann in ids:
            system.wait_settled(ann, timeout=max(1.0, deadline - time.time()), count=len(CHANNELS))
        assert all(p.poll() is None for p in procs), "a process died during the run"
        deliveries = [d for ann in ids for d in system.runtime.ledger.deliveries_of(ann)]
    finally:
        for p in procs:
            _stop(p)
        for fh in logs.values():
            fh.close()
        system.stop()

    expected = ANNOUNCEMENTS * len(CHANNELS)
    assert len(deliveries) == expected
    assert {str(d.state) for d in deliveries} == {"delivered"}
    assert sum(d.attempts for d in deliveries) == expected + 5, "each 503 cost exactly one extra attempt"

    ok = receiver.ok()
    ids_seen = receiver.unique_ids()
    assert len(ids_seen) == expected, "every delivery arrived"
    assert len(ok) == expected, f"{len(ok) - len(ids_seen)} duplicate deliveries"
    by_path = {name: {r.headers["webhook-id"] for r in ok if r.path == f"/{name}"} for name in CHANNELS}
    for d in deliveries:
        assert any(i.endswith(d.id) for i in by_path[d.channel]), f"{d.id} did not reach /{d.channel}"

    # each worker process sent only for its own queue group (the retried ones are logged, as JSON)
    import json

    records = [json.loads(line) for g in GROUPS for line in (tmp_path / f"{g}.log").read_text().splitlines()
               if line.startswith("{") and '"delivery ' in line]
    assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    for group, names in GROUPS.items():
        text = (tmp_path / f"{group}.log").read_text()
        others = [n for n in CHANNELS if n not in names]
        assert not any(f" to {n}:" in text for n in others), f"worker {group} handled another group's channel"


BACKLOG = 60  # deliveries of one channel, waiting before any worker runs
SHARERS = 3  # worker processes on that channel's queue, 2 threads each, claiming 2 at a time
SEND_TIME = 0.2  # the receiver's answer time: the drain lasts ~2 s with three processes, ~6 s with one
_CLAIMED_BY = re.compile(r"claimed by [^ ]*:(\d+):\d+ \(batch of (\d+)\)")


def test_three_workers_drain_one_channel_backlog_each_delivery_claimed_and_sent_once(pg_database, private_redis,
                                                                                      receiver, tmp_path):
    _reset_pg(pg_database)
    channels = {"hook": {"kind": "webhook", "format": "generic", "url": f"{receiver.url}/hook",
                         "secret": "whsec_dGVzdC1zZWNyZXQtZm9yLW11bHRpd29ya2Vycw=="}}
    data = {"ledger": pg_database, "broker": private_redis.url, "channels": channels, "routes": {"incident": ["hook"]},
            "policy": {"defaults": {"attempts": 3, "backoff": {"base": 0.2, "max": 1}, "timeout": 5}},
            "worker": {"batch": 2}}
    cfg = tmp_path / "broadcaster.yaml"
    cfg.write_text(yaml.safe_dump(data))
    settings = load_settings(data, env={})

    # the backlog: committed with no wake-up published, so no worker can start before the others
    submitter = Runtime.from_settings(settings, enqueuer=NoEnqueuer())
    logs = [open(tmp_path / f"worker-{i}.log", "w") for i in range(SHARERS)]  # noqa: SIM115 - the child process writes it for its whole life
    procs: list[subprocess.Popen] = []
    try:
        ids = [service.submit(submitter, {"kind": "incident", "title": f"Incident {i}", "body": "Investigating."},
                              principal=service.SYSTEM).id for i in range(BACKLOG)]
        receiver.script(*[Reply(delay=SEND_TIME)] * BACKLOG)
        procs = [_broadcaster(cfg, "worker", "-Q", queue_name("hook"), "--pool", "threads", "-c", "2",
                              "--loglevel", "INFO", log=fh) for fh in logs]
        wait_consumers(private_redis.url, SHARERS, procs, timeout=60, where=str(tmp_path))
        # a drain message for every worker thread, all at once (sent as such, whatever the
        # intake's own publishing policy: this is about the claims, not the wake-ups)
        publisher = create_app(settings)
        for _ in range(SHARERS * 2):
            publisher.send_task(DRAIN, ("hook",), queue=queue_name("hook"))
        deadline = time.time() + 45
        while time.time() < deadline:
            deliveries = [d for ann in ids for d in submitter.ledger.deliveries_of(ann)]
            if all(str(d.state) == "delivered" for d in deliveries):
                break
            time.sleep(0.2)
        assert all(p.poll() is None for p in procs), "a worker process died during the drain"
        claims = {d.id: [e.reason for e in submitter.ledger.events_of(d.id) if e.to_state == "sending"]
                  for d in deliveries}
    finally:
        for p in procs:
            _stop(p)
        for fh in logs:
            fh.close()
        submitter.close()
        submitter.ledger.close()

    assert len(deliveries) == BACKLOG
    assert [str(d.state) for d in deliveries] == ["delivered"] * BACKLOG, "the backlog was not drained in 45 s"
    assert all(d.attempts == 1 for d in deliveries)

    # each delivery claimed by exactly one process, in a batch of at most worker.batch
    assert all(len(reasons) == 1 for reasons in claims.values()), \
        {i: r for i, r in claims.items() if len(r) != 1}
    owners = {i: _CLAIMED_BY.search(r[0]) for i, r in claims.items()}
    assert all(m is not None and 1 <= int(m.group(2)) <= 2 for m in owners.values()), claims
    per_process = collections.Counter(int(m.group(1)) for m in owners.values() if m)
    assert set(per_process) == {p.pid for p in procs}, f"not every worker process claimed: {dict(per_process)}"

    # and each arrived exactly once, nothing else arrived
    assert len(receiver.requests) == BACKLOG, f"{len(receiver.requests) - BACKLOG} extra requests"
    assert receiver.unique_ids() == {f"msg_{d.id}" for d in deliveries}
