"""Maintenance windows move by themselves exactly once; cancelling tells every channel; open
incidents; retention. Real SQLite ledger, controlled clock, recording enqueuer."""

from __future__ import annotations

import threading

import httpx
import pytest

from broadcaster import lifecycle, retention, scheduler, service
from broadcaster.config import load_settings
from broadcaster.errors import InvalidRequest
from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S
from broadcaster.runtime import Runtime
from tests.support.ledger import updates_of
from tests.support.runtime import Clock, memory_runtime, wakeups

T0 = 1_800_000_000.0
CHANNELS = ["hook", "chat", "page"]


def make_runtime(url: str, clock: Clock, **config) -> Runtime:
    """Three webhook channels; ``config`` adds sections (``retention=…``)."""
    settings = load_settings({
        "ledger": url,
        "channels": {
            "hook": {"kind": "webhook", "url": "https://hooks.example.test/a"},
            "chat": {"kind": "webhook", "format": "slack", "url": "https://hooks.example.test/b"},
            "page": {"kind": "webhook", "format": "discord", "url": "https://hooks.example.test/c"},
        },
        "routes": {"maintenance": CHANNELS, "incident": CHANNELS, "notice": ["hook"], "promotion": ["chat"]},
        **config,
    }, env={})
    # the sweep's readiness hook checks the channels: over a stand-in, never the network
    http = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, text="ok")))
    return memory_runtime(settings, ledger=Ledger.open(url, clock=clock), clock=clock, http=http)


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def rt(tmp_path, clock):
    r = make_runtime(f"sqlite:///{tmp_path}/l.db", clock)
    yield r
    r.ledger.close()


def maintenance(rt, start: float, end: float, **kw) -> str:
    return service.submit(rt, {"kind": "maintenance", "title": "Database upgrade", "body": "Short read-only period.",
                               "window": {"starts_at": start, "ends_at": end}, **kw}, principal=service.SYSTEM).id


def deliver_all(rt, ann_id):
    for d in rt.ledger.deliveries_of(ann_id):
        if d.state == S.PENDING:
            rt.ledger.transition(d, S.DELIVERED, "test: delivered", attempted=True)


def statuses(rt, ann_id) -> list[str]:
    return [u.status for u in updates_of(rt.ledger, ann_id)]


def test_a_window_goes_in_progress_then_completed_once_each_on_every_channel(rt, clock):
    ann = maintenance(rt, T0 + 60, T0 + 120)
    deliver_all(rt, ann)
    assert lifecycle.maintenance_hook(rt) == 0  # not yet
    clock.t = T0 + 60
    assert lifecycle.maintenance_hook(rt) == 1
    assert lifecycle.maintenance_hook(rt) == 0
    assert statuses(rt, ann) == ["in_progress"]
    assert rt.ledger.get_announcement(ann).status == "in_progress"
    upd = updates_of(rt.ledger, ann)[0]
    assert upd.author == "scheduler"
    assert sorted(d.channel for d in rt.ledger.deliveries_of(ann) if d.update_id == upd.id) == sorted(CHANNELS)
    clock.t = T0 + 90
    assert lifecycle.maintenance_hook(rt) == 0
    clock.t = T0 + 120
    assert lifecycle.maintenance_hook(rt) == 1
    clock.t = T0 + 500
    assert lifecycle.maintenance_hook(rt) == 0
    assert statuses(rt, ann) == ["in_progress", "completed"]
    assert rt.ledger.get_announcement(ann).status == "completed"
    assert lifecycle.open_maintenance(rt.ledger) == []
    assert len(rt.ledger.deliveries_of(ann)) == 3 * len(CHANNELS)


def test_a_restarted_or_second_scheduler_changes_nothing(tmp_path, clock):
    url = f"sqlite:///{tmp_path}/l.db"
    first = make_runtime(url, clock)
    ann = maintenance(first, T0 + 10, T0 + 20)
    clock.t = T0 + 10
    assert lifecycle.maintenance_hook(first) == 1
    # "restart": a new process with a fresh runtime over the same ledger
    second = make_runtime(url, clock)
    assert lifecycle.maintenance_hook(second) == 0
    # a scheduler that read the due list before the first one wrote its step only replays it
    assert lifecycle.advance(second, ann, "in_progress") == "replayed"
    assert statuses(second, ann) == ["in_progress"]
    first.ledger.close()
    second.ledger.close()


def test_concurrent_schedulers_post_each_step_once(tmp_path, clock):
    url = f"sqlite:///{tmp_path}/l.db"
    runtimes = [make_runtime(url, clock) for _ in range(4)]
    ann = maintenance(runtimes[0], T0 + 10, T0 + 20)
    clock.t = T0 + 10
    barrier = threading.Barrier(len(runtimes))
    errors = []

    def run(r):
        barrier.wait()
        try:
            for _ in range(3):
                lifecycle.advance(r, ann, "in_progress")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in runtimes]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == []
    assert statuses(runtimes[0], ann) == ["in_progress"]
    for r in runtimes:
        r.ledger.close()


def test_a_missed_window_gets_only_completed(rt, clock):
    ann = maintenance(rt, T0 + 10, T0 + 20)
    clock.t = T0 + 3600  # the scheduler was down for the whole window
    assert lifecycle.maintenance_hook(rt) == 1
    assert statuses(rt, ann) == ["completed"]


def test_the_step_runs_from_the_scheduler_sweep(rt, clock, monkeypatch):
    ann = maintenance(rt, T0 + 5, T0 + 50)
    clock.t = T0 + 5
    report = scheduler.tick(rt, scheduler.feature_hooks())  # what the scheduler process (and --once) runs
    assert report.extra.get("maintenance_steps") == 1
    assert statuses(rt, ann) == ["in_progress"]
    # the update's deliveries were handed to the workers
    upd = updates_of(rt.ledger, ann)[0]
    fresh = {d.id for d in rt.ledger.deliveries_of(ann) if d.update_id == upd.id}
    assert fresh <= {did for did, _, _ in wakeups(rt).deliveries}


def test_cancelling_a_published_window_tells_every_channel_once(rt, clock):
    ann = maintenance(rt, T0 + 60, T0 + 120)
    deliver_all(rt, ann)
    out = lifecycle.cancel_window(rt, ann, principal=service.SYSTEM, reason="Vendor postponed.")
    assert out == {"id": ann, "status": "cancelled", "told_channels": len(CHANNELS), "cancelled_deliveries": 0}
    upd = updates_of(rt.ledger, ann)[0]
    assert upd.status == "cancelled" and "Vendor postponed." in upd.body
    assert sorted(d.channel for d in rt.ledger.deliveries_of(ann) if d.update_id == upd.id) == sorted(CHANNELS)
    again = lifecycle.cancel_window(rt, ann, principal=service.SYSTEM)
    assert again["told_channels"] == 0 and statuses(rt, ann) == ["cancelled"]
    clock.t = T0 + 200
    assert lifecycle.maintenance_hook(rt) == 0  # nothing more once cancelled
    assert statuses(rt, ann) == ["cancelled"]


def test_cancelling_an_unpublished_window_stops_it_quietly(rt, clock):
    ann = maintenance(rt, T0 + 7200, T0 + 9000, publish_at=T0 + 3600)
    out = lifecycle.cancel_window(rt, ann, principal=service.SYSTEM)
    assert out["told_channels"] == 0 and out["cancelled_deliveries"] == len(CHANNELS)
    assert {d.state for d in rt.ledger.deliveries_of(ann)} == {S.CANCELLED}
    assert updates_of(rt.ledger, ann) == []
    assert rt.ledger.get_announcement(ann).status == "cancelled"
    clock.t = T0 + 8000
    assert lifecycle.maintenance_hook(rt) == 0


def test_a_window_whose_announcement_was_cancelled_elsewhere_closes_quietly(rt, clock):
    ann = maintenance(rt, T0 + 7200, T0 + 9000, publish_at=T0 + 3600)
    service.cancel_scheduled(rt, ann, principal=service.SYSTEM)
    clock.t = T0 + 7200
    assert lifecycle.maintenance_hook(rt) == 0
    assert updates_of(rt.ledger, ann) == [] and rt.ledger.get_announcement(ann).status == "cancelled"


def test_cancel_window_refuses_other_kinds_and_completed_windows(rt, clock):
    inc = service.submit(rt, {"kind": "incident", "title": "x"}, principal=service.SYSTEM).id
    with pytest.raises(InvalidRequest):
        lifecycle.cancel_window(rt, inc, principal=service.SYSTEM)
    ann = maintenance(rt, T0 + 1, T0 + 2)
    clock.t = T0 + 3
    lifecycle.maintenance_hook(rt)
    with pytest.raises(InvalidRequest, match="completed"):
        lifecycle.cancel_window(rt, ann, principal=service.SYSTEM)


def test_open_incidents(rt):
    a = service.submit(rt, {"kind": "incident", "title": "a"}, principal=service.SYSTEM).id
    b = service.submit(rt, {"kind": "incident", "title": "b"}, principal=service.SYSTEM).id
    c = service.submit(rt, {"kind": "incident", "title": "c"}, principal=service.SYSTEM).id
    service.submit(rt, {"kind": "notice", "title": "not an incident"}, principal=service.SYSTEM)
    service.add_update(rt, b, {"status": "resolved", "body": "fixed"}, principal=service.SYSTEM)
    service.retract(rt, c, principal=service.SYSTEM)
    assert [x.id for x in lifecycle.open_incidents(rt.ledger)] == [a]


# ---------------------------------------------------------------- retention


def test_retention_prunes_old_attempt_history_but_never_announcements_unless_asked(rt, clock):
    old = service.submit(rt, {"kind": "notice", "title": "old"}, principal=service.SYSTEM).id
    deliver_all(rt, old)
    clock.t = T0 + 100 * 86400
    new = service.submit(rt, {"kind": "notice", "title": "new"}, principal=service.SYSTEM).id
    deliver_all(rt, new)
    res = retention.prune(rt.ledger, retention.RetentionSettings(keep_events="30d"))
    assert res.events == 2 and res.announcements == 0
    (d_old,) = rt.ledger.deliveries_of(old)
    (d_new,) = rt.ledger.deliveries_of(new)
    assert rt.ledger.events_of(d_old.id) == [] and len(rt.ledger.events_of(d_new.id)) == 2
    assert rt.ledger.get_announcement(old).title == "old"

    res = retention.prune(rt.ledger, retention.RetentionSettings(keep_events=None, keep_announcements="30d"))
    assert res.announcements == 1
    assert [a.id for a in rt.ledger.list_announcements()] == [new]


def test_announcement_pruning_keeps_open_incidents_and_unsettled_deliveries(rt, clock):
    incident = service.submit(rt, {"kind": "incident", "title": "still open"}, principal=service.SYSTEM).id
    deliver_all(rt, incident)
    pending = service.submit(rt, {"kind": "notice", "title": "never delivered"}, principal=service.SYSTEM).id
    clock.t = T0 + 400 * 86400
    assert retention.prune_announcements(rt.ledger, 30 * 86400) == 0
    assert {a.id for a in rt.ledger.list_announcements()} == {incident, pending}


def test_retention_hook_runs_at_most_every_period(tmp_path, clock):
    hook = retention.RetentionHook()
    rt = make_runtime(f"sqlite:///{tmp_path}/l.db", clock, retention={"keep_events": "1d", "every": "1h"})
    assert hook(rt) is not None
    clock.t += 60
    assert hook(rt) is None
    clock.t += 3600
    assert hook(rt) is not None


def test_a_scheduler_acting_on_a_stale_read_replays_instead_of_posting_twice(tmp_path, clock, monkeypatch):
    url = f"sqlite:///{tmp_path}/l.db"
    first, second = make_runtime(url, clock), make_runtime(url, clock)
    ann = maintenance(first, T0 + 10, T0 + 20)
    stale = second.ledger.get_announcement(ann)  # read while the status still said "scheduled"
    clock.t = T0 + 10
    assert lifecycle.advance(first, ann, "in_progress") == "posted"
    real = second.ledger.get_announcement
    monkeypatch.setattr(second.ledger, "get_announcement", lambda i: stale if i == ann else real(i))
    assert lifecycle.advance(second, ann, "in_progress") == "replayed"
    assert statuses(first, ann) == ["in_progress"]
    first.ledger.close()
    second.ledger.close()
