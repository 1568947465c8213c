"""Incident templates and "next update by" promises (issue 16 item 8): a real SQLite ledger, a
controlled clock, the service, the scheduler's sweep with its feature hooks.

A template fills what a post leaves out (and nothing the author gave); a promise is said in the
body of every channel's post and kept as ``next_update_at``; when it passes unanswered the
on-call channel gets one reminder per promise, and ``holding: post`` posts a holding statement
with the next promise — at most ``holding_limit`` in a row.
"""

from __future__ import annotations

import pytest

from broadcaster import commitments, scheduler, service
from broadcaster.config import load_settings
from broadcaster.errors import InvalidRequest
from broadcaster.ledger import Ledger
from broadcaster.ledger.commitments import CommitmentStore
from broadcaster.resilience import MemoryBreaker, MemoryRateLimiter
from broadcaster.runtime import Runtime
from broadcaster.wakeup import MemoryEnqueuer
from tests.support.ledger import updates_of
from tests.support.runtime import Clock

T0 = 1_795_996_800.0  # 30 Nov 2026, 00:00 UTC
TEMPLATES = {
    "db": {"title": "Database connectivity problems", "severity": "major", "components": ["Database"],
           "next_update": "30m",
           "phases": {"investigating": "Some requests fail; we are investigating.",
                      "identified": "We found the cause. Next update by {next_update}.",
                      "resolved": "The database is reachable again."}},
    "upgrade": {"kind": "maintenance", "title": "Database upgrade",
                "phases": {"scheduled": "A short read-only period."}},
}


def make(tmp_path, clock: Clock, **commitments_cfg) -> Runtime:
    settings = load_settings({
        "ledger": f"sqlite:///{tmp_path}/l.db",
        "public_url": "https://status-admin.example.test",
        "channels": {
            "hook": {"kind": "webhook", "url": "https://hooks.example.test/a"},
            "oncall": {"kind": "webhook", "format": "slack", "url": "https://hooks.example.test/oncall"},
            "site": {"kind": "statuspage", "output_dir": str(tmp_path / "site"), "components": ["API", "Database"]},
        },
        "routes": {"incident": ["hook", "site"], "maintenance": ["hook"], "notice": ["hook"]},
        "quiet_during_incidents": ["notice"],  # a reminder is a notice, and is never held
        "templates": TEMPLATES,
        "commitments": {"remind": ["oncall"], **commitments_cfg},
    }, env={})
    return Runtime(settings, ledger=Ledger.open(settings.ledger, clock=clock), breaker=MemoryBreaker(),
                   limiter=MemoryRateLimiter(), clock=clock, enqueuer=MemoryEnqueuer())


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def rt(tmp_path, clock):
    r = make(tmp_path, clock)
    yield r
    r.ledger.close()


def post(rt, **fields):
    data = {"kind": "incident", **fields}
    return rt.ledger.get_announcement(service.submit(rt, data, principal=service.Principal("alice", admin=True)).id)


# ---------------------------------------------------------------- templates


def test_a_template_fills_what_the_post_leaves_out(rt):
    a = post(rt, template="db")
    assert (a.title, a.severity, a.components) == ("Database connectivity problems", "major", ("Database",))
    assert a.body == "Some requests fail; we are investigating.\n\nNext update by 30 Nov 2026, 00:30 UTC."
    assert a.next_update_at == T0 + 1800
    mine = post(rt, template="db", title="Checkout fails", body="Payments fail.", severity="minor", components=["API"],
                next_update_at="1h")
    assert (mine.title, mine.severity, mine.components) == ("Checkout fails", "minor", ("API",))
    assert mine.body == "Payments fail.\n\nNext update by 30 Nov 2026, 01:00 UTC." and mine.next_update_at == T0 + 3600


def test_unknown_or_foreign_templates_are_refused_naming_the_field(rt):
    with pytest.raises(InvalidRequest) as exc:
        post(rt, template="nope")
    assert exc.value.field == "template" and "known incident templates: db" in str(exc.value)
    with pytest.raises(InvalidRequest, match="'upgrade' is a maintenance template, not for an incident"):
        post(rt, template="upgrade")
    with pytest.raises(InvalidRequest) as exc:
        post(rt, body="no title and no template")
    assert exc.value.field == "title"
    assert rt.ledger.list_announcements() == []


def test_an_update_takes_its_phase_from_the_template(rt, clock):
    a = post(rt, template="db")
    clock.advance(600)
    service.add_update(rt, a.id, {"status": "identified", "template": "db"}, principal=service.SYSTEM)
    (u,) = updates_of(rt.ledger, a.id)
    assert u.body == "We found the cause. Next update by 30 Nov 2026, 00:40 UTC."  # {next_update}: 30m from now
    assert rt.ledger.get_announcement(a.id).next_update_at == T0 + 600 + 1800
    with pytest.raises(InvalidRequest, match="'db' has no text for 'monitoring'"):
        service.add_update(rt, a.id, {"status": "monitoring", "template": "db"}, principal=service.SYSTEM)
    with pytest.raises(InvalidRequest) as exc:
        service.add_update(rt, a.id, {"status": "monitoring"}, principal=service.SYSTEM)
    assert exc.value.field == "body"


# ---------------------------------------------------------------- promises


def test_a_promise_is_said_on_every_channel_and_ends_with_the_resolve(rt, clock):
    a = post(rt, title="API errors", body="Looking into it.", next_update_at="2026-11-30T01:00:00Z",
             variants={"hook": {"body": "Short: looking."}})
    assert a.next_update_at == T0 + 3600
    assert a.body.endswith("Next update by 30 Nov 2026, 01:00 UTC.")
    assert a.variants["hook"]["body"] == "Short: looking.\n\nNext update by 30 Nov 2026, 01:00 UTC."
    service.add_update(rt, a.id, {"status": "identified", "body": "Found it."}, principal=service.SYSTEM)
    assert rt.ledger.get_announcement(a.id).next_update_at is None, "an update without a promise makes none"
    with pytest.raises(InvalidRequest, match="a resolved incident promises no further update"):
        service.add_update(rt, a.id, {"status": "resolved", "body": "Fixed.", "next_update_at": "30m"},
                           principal=service.SYSTEM)


@pytest.mark.parametrize("fields, message", [
    ({"next_update_at": T0 - 1}, "must be in the future"),
    ({"next_update_at": "8d"}, "at most 7 days ahead"),
    ({"kind": "maintenance", "next_update_at": "30m"}, "only incidents promise"),
    ({"body": "Next update by {next_update}."}, "give its time"),
])
def test_promises_that_mean_nothing_are_refused(rt, fields, message):
    with pytest.raises(InvalidRequest, match=message) as exc:
        post(rt, title="T", **fields)
    assert exc.value.field == "next_update_at"


# ---------------------------------------------------------------- when a promise passes


def notices(rt):
    return [a for a in rt.ledger.list_announcements() if a.kind == "notice"]


def test_an_overdue_promise_reminds_the_on_call_channel_once_and_the_page_proposes_a_holding_statement(rt, clock):
    a = post(rt, title="API errors", body="Looking into it.", next_update_at="30m")
    clock.advance(1799)
    assert commitments.overdue_hook(rt) == 0
    clock.advance(2)
    report = scheduler.tick(rt, scheduler.feature_hooks())  # what the scheduler process runs
    assert report.extra.get("overdue_updates") == 1
    (note,) = notices(rt)
    assert note.channels == ("oncall",) and note.title == "Update overdue: API errors"
    assert "promised by 30 Nov 2026, 00:30 UTC" in note.body and "Opened by alice" in note.body
    assert f"https://status-admin.example.test/announcements/{a.id}" in note.body
    assert {str(d.state) for d in rt.ledger.deliveries_of(note.id)} == {"pending"}, "not held: an incident is open"
    # once per promise, however often the sweep runs; propose mode posts nothing by itself
    clock.advance(600)
    assert commitments.overdue_hook(rt) == 0 and len(notices(rt)) == 1
    assert updates_of(rt.ledger, a.id) == []
    # the author posts with a new promise: a new promise, a new reminder when it passes
    service.add_update(rt, a.id, {"status": "identified", "body": "Found it.", "next_update_at": "15m"},
                       principal=service.SYSTEM)
    clock.advance(15 * 60 + 1)
    assert commitments.overdue_hook(rt) == 1 and len(notices(rt)) == 2


def test_holding_post_keeps_the_promise_up_to_the_limit(tmp_path, clock):
    rt = make(tmp_path, clock, holding="post", holding_interval="20m", holding_limit=2)
    try:
        a = post(rt, title="API errors", body="Looking into it.", next_update_at="30m")
        promise = T0 + 1800
        for n in (1, 2):
            clock.t = promise + 5
            assert commitments.overdue_hook(rt) == 1
            u = updates_of(rt.ledger, a.id)[-1]
            promise += 1200  # the next promise counts from the missed one
            assert (u.status, u.author) == ("investigating", "commitments")
            assert u.body == f"We are still working on this. Next update by {commitments.promises.moment(promise)}."
            assert rt.ledger.get_announcement(a.id).next_update_at == promise
            assert len(updates_of(rt.ledger, a.id)) == n
        clock.t = promise + 5
        assert commitments.overdue_hook(rt) == 1  # reminded, but the limit stops a third holding statement
        assert len(updates_of(rt.ledger, a.id)) == 2 and len(notices(rt)) == 3
        # resolved: nothing is promised, nothing is overdue
        service.add_update(rt, a.id, {"status": "resolved", "body": "Fixed."}, principal=service.SYSTEM)
        clock.advance(86400)
        assert commitments.overdue_hook(rt) == 0
    finally:
        rt.ledger.close()


def test_two_schedulers_remind_and_hold_once(tmp_path, clock):
    first = make(tmp_path, clock, holding="post")
    second = make(tmp_path, clock, holding="post")  # another process on the same ledger
    try:
        a = post(first, title="API errors", body="x", next_update_at="30m")
        clock.advance(1801)
        (ann,) = CommitmentStore(first.ledger).overdue(clock())
        commitments.handle(first, ann, clock())
        commitments.handle(second, ann, clock())  # it read the same row before the first marked it
        assert len(notices(first)) == 1 and len(updates_of(first.ledger, a.id)) == 1
    finally:
        first.ledger.close()
        second.ledger.close()
