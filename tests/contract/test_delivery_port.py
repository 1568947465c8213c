"""The delivery port's contract (``broadcaster/ledger/ports.py``), the same assertions on every
implementation: the SQL ledger on SQLite and on PostgreSQL, the memory twin, and the twin
journalled to a file — which, after each test, must replay into exactly what it holds.

What the engine, the drain and the sweep rely on: one delivery per (message, channel),
conditional claims under leases, outcomes only under the lease, an event per change, item
progress with lease renewal, and the sweep's moves. If the twin drifts from the SQL ledger, a
test here fails on the twin's parameters."""

from __future__ import annotations

import threading

import pytest

from broadcaster.errors import NotFound
from broadcaster.ledger import Ledger
from broadcaster.ledger.journal import Journal
from broadcaster.ledger.memory import MemoryLedger
from broadcaster.models import DeliveryState as S, Receipt, Window
from tests.conftest import _reset_pg
from tests.support.ledger import set_announcement
from tests.support.runtime import NOW, Clock


@pytest.fixture
def clock():
    return Clock()


def snapshot(twin: MemoryLedger) -> list:
    """Everything a twin holds, through its reads."""
    out = []
    for ann_id in twin.announcement_ids():
        dels = twin.deliveries_of(ann_id)
        out.append((twin.announcement_row(ann_id), dels, {d.id: (twin.events_of(d.id), twin.item_states(d.id))
                                                          for d in dels}))
    return out


@pytest.fixture(params=["sqlite", "postgres", "memory", "journal"])
def port(request, tmp_path, clock):
    if request.param in ("sqlite", "postgres"):
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path}/ledger.db"
        else:
            url = request.getfixturevalue("pg_database")
            _reset_pg(url)
        ledger = Ledger.open(url, clock=clock)
        ledger.url = url  # for tests that open more connections (racing workers)
        yield ledger
        ledger.close()
    elif request.param == "memory":
        yield MemoryLedger(clock=clock)
    else:
        journal = Journal(tmp_path / "journal.jsonl")
        twin = MemoryLedger(clock=clock, journal=journal)
        yield twin
        assert snapshot(MemoryLedger.replay(journal)) == snapshot(twin), "the journal replays into what was live"


def others(port, n: int) -> list:
    """``n`` more handles on the same ledger, as separate worker processes would have (the twin
    is one object shared by threads)."""
    if isinstance(port, MemoryLedger):
        return [port] * n
    return [Ledger.open(port.url, migrate_schema=False, clock=port.clock) for _ in range(n)]


def close(handles, port) -> None:
    for h in handles:
        if h is not port:
            h.close()


def create(port, kind="incident", channels=("a", "b"), state=S.PENDING, due_at=None, **extra):
    rows = [{"channel": c, "state": state, **({"due_at": due_at} if due_at is not None else {})} for c in channels]
    fields = {"kind": kind, "title": "API errors", "body": "b", "channels": list(channels), "status": None, **extra}
    ann_id, created = port.create_announcement(fields, rows, actor="tester")
    assert created
    return ann_id, port.deliveries_of(ann_id)


def states(port, delivery_id) -> list[tuple[str | None, str, int]]:
    return [(e.from_state, e.to_state, e.attempt) for e in port.events_of(delivery_id)]


# ---------------------------------------------------------------- what was written reads back the same


def test_an_announcement_and_its_deliveries_read_back_as_written(port):
    extra = {"components": ["API", "Web"], "variants": {"a": {"title": "short"}}, "tags": ["x"], "severity": "major",
             "url": "https://example.com/i/1", "window_starts_at": NOW + 60, "window_ends_at": NOW + 120,
             "allowed_channels": ["a", "b"], "component_states": {"API": "major_outage"}, "status": "investigating"}
    ann_id, ds = create(port, **extra)
    ann = port.get_announcement(ann_id)
    assert (ann.kind, ann.title, ann.body, ann.url, ann.severity, ann.status) == (
        "incident", "API errors", "b", "https://example.com/i/1", "major", "investigating")
    assert (ann.components, ann.channels, ann.tags, ann.allowed_channels) == (("API", "Web"), ("a", "b"), ("x",),
                                                                               ("a", "b"))
    assert ann.variants == {"a": {"title": "short"}} and ann.component_states == {"API": "major_outage"}
    assert ann.window == Window(NOW + 60, NOW + 120)
    assert (ann.author, ann.created_at, ann.retracted_at, ann.publish_at) == ("tester", NOW, None, None)
    assert [(d.channel, d.state, d.attempts, d.due_at, d.deadline_at, d.maybe_sent, d.update_id, d.receipt,
             d.lease_owner, d.settled_at, d.created_at) for d in ds] == [
        ("a", S.PENDING, 0, NOW, None, False, None, None, None, None, NOW),
        ("b", S.PENDING, 0, NOW, None, False, None, None, None, None, NOW)]
    assert ds[0].id < ds[1].id, "ids sort in the order they were made"
    for d in ds:
        [ev] = port.events_of(d.id)
        assert (ev.from_state, ev.to_state, ev.attempt, ev.reason, ev.at, ev.response) == (
            None, "pending", 0, "accepted", NOW, None)
        assert port.get_delivery(d.id) == d


def test_a_bare_announcement_gets_the_defaults(port):
    ann_id, _ = port.create_announcement({"kind": "notice", "title": "T"}, [{"channel": "a", "reason": "routed"}],
                                         actor="t")
    ann = port.get_announcement(ann_id)
    assert (ann.body, ann.components, ann.channels, ann.variants, ann.tags, ann.allowed_channels,
            ann.component_states, ann.window) == ("", (), (), {}, (), None, {}, None)
    [d] = port.deliveries_of(ann_id)
    assert port.events_of(d.id)[0].reason == "routed"


def test_a_message_gets_at_most_one_delivery_per_channel(port):
    with pytest.raises(ValueError, match="named twice: a"):
        port.create_announcement({"kind": "notice", "title": "T"}, [{"channel": "a"}, {"channel": "a"}], actor="t")
    assert port.count_by_state() == {}, "nothing was written"


def test_a_failed_create_writes_nothing(port):
    with pytest.raises(Exception) as info:  # the SQL ledger raises its driver's IntegrityError, the twin Conflict
        port.create_announcement({"kind": "notice", "title": "T"},
                                 [{"channel": "a", "id": "dlv_same"}, {"channel": "b", "id": "dlv_same"}], actor="t")
    assert not isinstance(info.value, ValueError)
    assert port.count_by_state() == {} and port.events_of("dlv_same") == []


def test_missing_rows_are_not_found(port):
    with pytest.raises(NotFound):
        port.get_announcement("ann_missing")
    with pytest.raises(NotFound):
        port.get_delivery("dlv_missing")
    with pytest.raises(NotFound):
        port.get_update("upd_missing")
    with pytest.raises(NotFound):
        port.force("dlv_missing", S.CANCELLED, "x", actor="op", from_states=[S.PENDING])
    assert port.claim_with_announcement("dlv_missing", "w", 30) is None
    assert port.deliveries_of("ann_missing") == [] and port.events_of("dlv_missing") == []


# ---------------------------------------------------------------- claims


def test_a_claim_leases_the_delivery_to_one_owner_and_logs_it(port, clock):
    ann_id, [a, b] = create(port)
    claimed = port.claim_with_announcement(a.id, "w1", 30)
    assert claimed is not None
    d, ann = claimed
    assert ann == port.get_announcement(ann_id)
    assert (d.state, d.lease_owner, d.lease_until, d.attempts, d.updated_at) == (S.SENDING, "w1", NOW + 30, 0, NOW)
    assert port.get_delivery(a.id) == d
    assert states(port, a.id) == [(None, "pending", 0), ("pending", "sending", 1)]
    assert port.events_of(a.id)[-1].reason == "claimed by w1"
    assert port.claim_with_announcement(a.id, "w2", 30) is None, "leased: nobody else gets it"
    assert port.get_delivery(b.id).state == S.PENDING


def test_a_claim_needs_a_claimable_state_and_a_due_time(port, clock):
    _, [later] = create(port, channels=("a",), due_at=NOW + 60)
    _, [almost] = create(port, channels=("a",), due_at=NOW + 0.04)
    _, [sched] = create(port, channels=("a",), state=S.SCHEDULED)
    _, [done] = create(port, channels=("a",))
    assert port.force(done.id, S.CANCELLED, "stop", actor="op", from_states=[S.PENDING])
    assert port.claim_with_announcement(later.id, "w", 30) is None
    assert port.claim_with_announcement(sched.id, "w", 30) is None
    assert port.claim_with_announcement(done.id, "w", 30) is None
    assert port.claim_with_announcement(almost.id, "w", 30) is not None, "due within 50 ms counts as due"
    clock.advance(60)
    assert port.claim_with_announcement(later.id, "w", 30) is not None
    assert states(port, sched.id) == [(None, "scheduled", 0)]


def test_a_claim_is_exclusive_under_eight_racing_workers(port):
    """Eight workers (each with its own handle — on SQL its own engine, like separate
    processes) race for each row."""
    handles = others(port, 8)
    try:
        for round_ in range(3):
            _, [d] = create(port, channels=("a",))
            barrier = threading.Barrier(8)
            wins: list[int] = []
            errors: list[Exception] = []

            def worker(i, barrier=barrier, d=d, wins=wins, errors=errors):
                try:
                    barrier.wait(10)
                    if handles[i].claim_with_announcement(d.id, f"w{i}", 30) is not None:
                        wins.append(i)
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert errors == [] and len(wins) == 1, f"round {round_}: {wins} {errors}"
            assert port.get_delivery(d.id).lease_owner == f"w{wins[0]}"
            assert [e.to_state for e in port.events_of(d.id)].count("sending") == 1
    finally:
        close(handles, port)


def test_a_batch_claim_takes_the_oldest_due_of_one_channel_each_with_its_own_lease(port, clock):
    ids = []
    for _ in range(6):
        _, ds = create(port)
        ids.append(next(d.id for d in ds if d.channel == "a"))
        clock.advance(1)
    assert port.force(ids[1], S.CANCELLED, "stop", actor="op", from_states=[S.PENDING])
    assert port.force(ids[2], S.RETRYING, "later", actor="op", from_states=[S.PENDING], due_at=clock() + 60)
    assert port.claim_with_announcement(ids[3], "other", 30) is not None
    got = port.claim_batch("a", "w1", 30, 2)
    assert [d.id for d, _ in got] == [ids[0], ids[4]], "oldest due first; cancelled, not due and leased skipped"
    for d, ann in got:
        assert (d.channel, d.state, d.lease_owner, d.lease_until) == ("a", S.SENDING, "w1", clock() + 30)
        assert ann.id == d.announcement_id
        assert port.events_of(d.id)[-1].reason == "claimed by w1 (batch of 2)"
        assert states(port, d.id)[-1] == ("pending", "sending", 1)
    assert [d.id for d, _ in port.claim_batch("a", "w1", 30, 50)] == [ids[5]]
    assert port.claim_batch("a", "w1", 30, 50) == [] and port.claim_batch("b", "w1", 30, 0) == []
    assert len(port.claim_batch("b", "w1", 30, 50)) == 6, "the other channel's rows were untouched"
    clock.advance(61)
    assert [d.id for d, _ in port.claim_batch("a", "w1", 30, 50)] == [ids[2]]
    assert states(port, ids[2])[-1] == ("retrying", "sending", 1)


def test_workers_draining_one_channel_at_once_never_share_a_delivery(port):
    for _ in range(40):
        create(port, channels=("a",))
    handles = others(port, 4)
    taken: list[list[str]] = [[] for _ in handles]
    barrier = threading.Barrier(len(handles))
    errors: list[Exception] = []

    def drain(i: int) -> None:
        try:
            barrier.wait(10)
            while batch := handles[i].claim_batch("a", f"w{i}", 30, 3):
                taken[i] += [d.id for d, _ in batch]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(handles))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        close(handles, port)
    every = [x for ids in taken for x in ids]
    assert errors == [] and len(every) == 40 and len(set(every)) == 40
    assert port.count_by_state() == {"sending": 40}


# ---------------------------------------------------------------- outcomes under the lease


def test_an_outcome_is_recorded_only_by_the_lease_holder(port, clock):
    _, [d, _] = create(port)
    c = port.claim_with_announcement(d.id, "w1", 30)[0]
    clock.advance(2)
    assert port.transition(c, S.DELIVERED, "not mine", owner="w2", attempted=True) is False
    assert port.get_delivery(d.id).state == S.SENDING and len(port.events_of(d.id)) == 2
    receipt = Receipt(remote_id="r1", url="https://x.example/r1", extra={"thread": ["r0", "r1"], "n": 2})
    assert port.transition(c, S.DELIVERED, "sent", owner="w1", attempted=True, receipt=receipt, response="201")
    row = port.get_delivery(d.id)
    assert (row.state, row.attempts, row.remote_id, row.remote_url, row.receipt) == (
        S.DELIVERED, 1, "r1", "https://x.example/r1", receipt)
    assert (row.lease_owner, row.lease_until, row.settled_at, row.updated_at) == (None, None, NOW + 2, NOW + 2)
    ev = port.events_of(d.id)[-1]
    assert (ev.from_state, ev.to_state, ev.attempt, ev.reason, ev.response, ev.at) == (
        "sending", "delivered", 1, "sent", "201", NOW + 2)
    assert port.transition(c, S.FAILED, "late", owner="w1") is False, "a settled row is nobody's"


def test_a_retry_records_its_error_due_time_and_maybe_sent(port, clock):
    _, [d] = create(port, channels=("a",))
    c = port.claim_with_announcement(d.id, "w", 30)[0]
    long = "x" * 3000
    assert port.transition(c, S.RETRYING, "timeout " + long, owner="w", attempted=True, due_at=NOW + 7,
                           error="E" * 2500, response="R" * 1500, maybe_sent=True)
    row = port.get_delivery(d.id)
    assert (row.state, row.attempts, row.due_at, row.maybe_sent, row.settled_at) == (S.RETRYING, 1, NOW + 7, True, None)
    assert row.last_error == "E" * 2000, "kept to 2000 characters"
    ev = port.events_of(d.id)[-1]
    assert len(ev.reason) == 2000 and ev.response == "R" * 1000
    assert port.claim_with_announcement(d.id, "w", 30) is None, "not due yet"
    clock.advance(7)
    again = port.claim_with_announcement(d.id, "w", 30)[0]
    assert (again.attempts, again.maybe_sent) == (1, True)
    assert states(port, d.id)[-1] == ("retrying", "sending", 2)
    assert port.transition(again, S.UNKNOWN, "gave up", owner="w", attempted=True, maybe_sent=True)
    assert port.get_delivery(d.id).attempts == 2 and port.get_delivery(d.id).settled_at == NOW + 7


def test_an_outcome_without_an_owner_counts_from_the_row(port):
    _, [d] = create(port, channels=("a",))
    stale = port.get_delivery(d.id)
    assert port.transition(stale, S.FAILED, "by hand", attempted=True, error="boom")
    assert port.transition(stale, S.FAILED, "again", attempted=True)
    assert port.get_delivery(d.id).attempts == 2 and port.get_delivery(d.id).last_error == "boom"
    assert [e.attempt for e in port.events_of(d.id)] == [0, 1, 1], "the event counts from the delivery given"


def test_a_batch_of_outcomes_is_recorded_in_one_go_each_under_its_own_lease(port, clock):
    _, [a, b, c] = create(port, channels=("a", "b", "c"))
    la = port.claim_with_announcement(a.id, "w", 30)[0]
    lb = port.claim_with_announcement(b.id, "w", 30)[0]
    lc = port.claim_with_announcement(c.id, "someone-else", 30)[0]
    oks = port.transition_many([
        (la, S.DELIVERED, "sent", {"attempted": True, "receipt": Receipt(remote_id="ra")}),
        (lb, S.RETRYING, "503", {"attempted": True, "due_at": NOW + 5, "error": "HTTP 503"}),
        (lc, S.DELIVERED, "not mine", {"attempted": True}),
    ], owner="w")
    assert oks == [True, True, False]
    assert [port.get_delivery(x.id).state for x in (a, b, c)] == [S.DELIVERED, S.RETRYING, S.SENDING]
    assert port.get_delivery(b.id).last_error == "HTTP 503" and port.get_delivery(a.id).remote_id == "ra"
    assert port.transition_many([], owner="w") == []


# ---------------------------------------------------------------- fallbacks and the unique key


def fall_back(port, delivery_id, channels, owner="w"):
    c = port.claim_with_announcement(delivery_id, owner, 30)[0]
    rows = [{"channel": ch, "fallback_of": delivery_id, "reason": "fallback", "deadline_at": NOW + 600}
            for ch in channels]
    assert port.transition(c, S.FALLEN_BACK, "gave up", owner=owner, attempted=True, fallbacks=rows)


def test_a_fallback_is_added_once_and_never_to_a_channel_that_has_the_message(port):
    ann_id, [a, b] = create(port)
    fall_back(port, a.id, ["b", "c", "c"])
    ds = port.deliveries_of(ann_id)
    assert [d.channel for d in ds] == ["a", "b", "c"]
    c = ds[2]
    assert (c.fallback_of, c.state, c.deadline_at, c.update_id) == (a.id, S.PENDING, NOW + 600, None)
    assert states(port, c.id) == [(None, "pending", 0)] and port.events_of(c.id)[0].reason == "fallback"
    reason = port.events_of(a.id)[-1].reason
    assert reason == f"gave up; fallback b already has it ({b.id}, pending): not sent again"
    assert port.get_delivery(a.id).state == S.FALLEN_BACK
    # an operator retry moves the same row back; falling back again adds nothing and names both
    assert port.force(a.id, S.PENDING, "retry", actor="op", from_states=[S.FALLEN_BACK])
    fall_back(port, a.id, ["b", "c"])
    assert [d.channel for d in port.deliveries_of(ann_id)] == ["a", "b", "c"]
    assert port.events_of(a.id)[-1].reason == (f"gave up; fallback b already has it ({b.id}, pending): not sent "
                                                f"again; fallback c already has it ({c.id}, pending): not sent again")


def test_fallback_loops_end_at_channels_that_have_the_message(port):
    ann_id, [a] = create(port, channels=("a",))
    fall_back(port, a.id, ["b"])
    [b] = [d for d in port.deliveries_of(ann_id) if d.channel == "b"]
    fall_back(port, b.id, ["a", "c"])
    assert sorted(d.channel for d in port.deliveries_of(ann_id)) == ["a", "b", "c"]
    assert f"fallback a already has it ({a.id}, fallen_back)" in port.events_of(b.id)[-1].reason


def test_a_fallback_that_loses_its_lease_adds_nothing(port, clock):
    ann_id, [a] = create(port, channels=("a",))
    c = port.claim_with_announcement(a.id, "w", 5)[0]
    clock.advance(10)
    assert port.expire_leases() == [a.id]
    assert not port.transition(c, S.FALLEN_BACK, "late", owner="w", fallbacks=[{"channel": "b", "fallback_of": a.id}])
    assert [d.channel for d in port.deliveries_of(ann_id)] == ["a"]


def test_two_deliveries_falling_back_to_one_channel_at_once_make_one(port):
    """a and b fail at the same moment in two workers, both falling back to c: one c, and the
    other's log names it (on PostgreSQL the loser meets the unique key: ON CONFLICT DO NOTHING)."""
    ann_id, [a, b] = create(port)
    handles = others(port, 2)
    try:
        claimed = [handles[0].claim_with_announcement(a.id, "w0", 30)[0],
                   handles[1].claim_with_announcement(b.id, "w1", 30)[0]]
        barrier = threading.Barrier(2)
        errors: list[Exception] = []

        def give_up(i: int) -> None:
            try:
                barrier.wait(10)
                handles[i].transition(claimed[i], S.FALLEN_BACK, "gave up", owner=f"w{i}", attempted=True,
                                      fallbacks=[{"channel": "c", "fallback_of": claimed[i].id}])
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=give_up, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        close(handles, port)
    assert errors == []
    [c] = [d for d in port.deliveries_of(ann_id) if d.channel == "c"]
    loser = b.id if c.fallback_of == a.id else a.id
    assert f"fallback c already has it ({c.id}, pending)" in port.events_of(loser)[-1].reason


# ---------------------------------------------------------------- actions from outside the attempt


def test_force_moves_only_from_the_given_states(port, clock):
    _, [d] = create(port, channels=("a",))
    assert port.force(d.id, S.CANCELLED, "stop", actor="op", from_states=[S.FAILED]) is False
    assert states(port, d.id) == [(None, "pending", 0)]
    clock.advance(3)
    assert port.force(d.id, S.DELIVERED, "confirmed", actor="op", from_states=[S.PENDING],
                      remote_url="https://x.example/p", note="seen by hand", set_note=True, deadline_at=NOW + 99)
    row = port.get_delivery(d.id)
    assert (row.state, row.remote_url, row.last_error, row.settled_at, row.deadline_at, row.attempts) == (
        S.DELIVERED, "https://x.example/p", "seen by hand", NOW + 3, NOW + 99, 0)
    assert port.events_of(d.id)[-1].reason == "confirmed (by op)"
    assert port.force(d.id, S.RETRYING, "again", actor="op", from_states=[S.DELIVERED], due_at=NOW + 10,
                      maybe_sent=True)
    row = port.get_delivery(d.id)
    assert (row.state, row.due_at, row.maybe_sent, row.settled_at, row.last_error) == (
        S.RETRYING, NOW + 10, True, None, "seen by hand")
    assert states(port, d.id)[-1] == ("delivered", "retrying", 0)


def test_force_takes_a_lease_away(port):
    _, [d] = create(port, channels=("a",))
    c = port.claim_with_announcement(d.id, "w", 30)[0]
    assert port.force(d.id, S.CANCELLED, "retracted", actor="op", from_states=[S.SENDING])
    row = port.get_delivery(d.id)
    assert (row.lease_owner, row.lease_until) == (None, None)
    assert port.transition(c, S.DELIVERED, "sent", owner="w") is False


# ---------------------------------------------------------------- per-item progress


def test_item_marks_later_win_and_renew_only_the_holders_lease(port, clock):
    _, [d, other] = create(port)
    port.claim_with_announcement(d.id, "w", 5)
    assert port.item_states(d.id) == {}
    assert port.mark_items_and_extend(d.id, "w", [(["a@x", "b@x", "part:0"], "sending", None)]) is None
    clock.advance(4)
    renewed = port.mark_items_and_extend(d.id, "w", [(["a@x"], "done", "250 ok"),
                                                     (iter(["b@x", "c@x"]), "refused", "550"),
                                                     (["c@x"], "failed", "451")], lease=5)
    assert renewed is True and port.get_delivery(d.id).lease_until == NOW + 9
    assert port.mark_items_and_extend(d.id, "intruder", [(["a@x"], "failed", "x")], lease=500) is False
    assert port.get_delivery(d.id).lease_until == NOW + 9, "only the holder renews"
    assert port.item_states(d.id) == {"a@x": ("failed", "x"), "b@x": ("refused", "550"), "c@x": ("failed", "451"),
                                      "part:0": ("sending", None)}, "marks are written even when the lease is not"
    assert port.mark_items_and_extend(d.id, "w", [([], "done", None)]) is None
    assert port.item_states(other.id) == {}
    clock.advance(4)
    assert port.expire_leases() == [], "the renewed lease still holds"


# ---------------------------------------------------------------- the sweep


def test_an_expired_lease_becomes_a_maybe_sent_retry_due_now(port, clock):
    _, [dead, alive] = create(port)
    port.claim_with_announcement(dead.id, "dead", 5)
    port.claim_with_announcement(alive.id, "alive", 100)
    clock.advance(5)
    assert port.expire_leases() == [], "expires after its lease, not at it"
    clock.advance(5)
    assert port.expire_leases() == [dead.id]
    row = port.get_delivery(dead.id)
    assert (row.state, row.maybe_sent, row.attempts, row.due_at, row.lease_owner, row.lease_until) == (
        S.RETRYING, True, 1, NOW + 10, None, None)
    assert states(port, dead.id)[-1] == ("sending", "retrying", 1)
    assert port.events_of(dead.id)[-1].reason == "lease of dead expired: worker lost mid-send; outcome will be checked"
    assert port.get_delivery(alive.id).state == S.SENDING and port.expire_leases() == []
    assert port.transition(row, S.DELIVERED, "late", owner="dead") is False
    assert port.claim_with_announcement(dead.id, "w", 30)[0].attempts == 1


def batch_of(port, n: int, channel: str = "k") -> list[str]:
    """``n`` due deliveries of one channel, oldest first."""
    ids = []
    for _ in range(n):
        _, [d] = create(port, channels=(channel,))
        ids.append(d.id)
    return ids


def test_a_batch_claim_only_leases_and_each_send_starts_under_its_own_mark(port, clock):
    """A worker killed mid-batch: the delivery whose send had started is "maybe sent" (as after a
    killed single attempt); the ones never started go back to being due as they were."""
    ids = batch_of(port, 4)
    _, [earlier] = create(port, channels=("k",))  # an earlier attempt may have landed: maybe_sent
    c = port.claim_with_announcement(earlier.id, "w0", 30)[0]
    assert port.transition(c, S.RETRYING, "timeout", owner="w0", attempted=True, due_at=NOW, maybe_sent=True)
    got = [d for d, _ in port.claim_batch("k", "w1", 30, 5)]
    assert [d.id for d in got] == [*ids, earlier.id]
    assert port.start_send(ids[0], "w1") == (True, [])
    clock.advance(31)  # the worker died during the first send
    assert sorted(port.expire_leases()) == sorted([*ids, earlier.id])
    row = port.get_delivery(ids[0])
    assert (row.state, row.maybe_sent, row.attempts, row.lease_owner) == (S.RETRYING, True, 1, None)
    assert states(port, ids[0])[-1] == ("sending", "retrying", 1)
    for did in ids[1:]:
        row = port.get_delivery(did)
        assert (row.state, row.maybe_sent, row.attempts, row.due_at, row.lease_owner, row.lease_until) == (
            S.PENDING, False, 0, NOW + 31, None, None)
        assert states(port, did)[-1] == ("sending", "pending", 0)
        assert port.events_of(did)[-1].reason == ("lease of w1 expired before its send started: never attempted, "
                                                  "due again")
    row = port.get_delivery(earlier.id)
    assert (row.state, row.maybe_sent, row.attempts) == (S.RETRYING, True, 1), "its earlier doubt is kept"
    again = {d.id: d for d, _ in port.claim_batch("k", "w2", 30, 10)}
    assert set(again) == {*ids, earlier.id}, "all due again at once"
    assert [again[i].attempts for i in ids] == [1, 0, 0, 0]


def test_a_batch_claim_can_start_its_first_delivery_as_a_single_claim_does(port, clock):
    """The drain sends the oldest claimed first: the claim starts it in its own transaction
    (no separate start mark); killed before anything else was written, that one is "maybe
    sent" as after a single attempt, the others were never started."""
    ids = batch_of(port, 3)
    got = [d.id for d, _ in port.claim_batch("k", "w1", 30, 5, start_first=True)]
    assert got == ids
    clock.advance(31)
    assert sorted(port.expire_leases()) == sorted(ids)
    first = port.get_delivery(ids[0])
    assert (first.state, first.maybe_sent, first.attempts) == (S.RETRYING, True, 1)
    for did in ids[1:]:
        row = port.get_delivery(did)
        assert (row.state, row.maybe_sent, row.attempts) == (S.PENDING, False, 0)
    assert port.claim_batch("nothing-here", "w1", 30, 5, start_first=True) == []


def test_a_single_claim_is_its_attempts_start(port, clock):
    _, [d] = create(port, channels=("k",))
    assert port.claim_batch("k", "w1", 30, 1)
    clock.advance(31)
    assert port.expire_leases() == [d.id] and port.get_delivery(d.id).state == S.PENDING
    assert port.claim_with_announcement(d.id, "w2", 30) is not None  # clears the batch claim's mark
    clock.advance(31)
    assert port.expire_leases() == [d.id]
    row = port.get_delivery(d.id)
    assert (row.state, row.maybe_sent, row.attempts) == (S.RETRYING, True, 1)


def test_a_start_records_the_batch_so_far_in_the_same_write(port, clock):
    a, b, c = batch_of(port, 3)
    got = [d for d, _ in port.claim_batch("k", "w1", 30, 3)]
    assert port.start_send(a, "w1") == (True, [])
    clock.advance(1)
    started, oks = port.start_send(b, "w1", [(got[0], S.DELIVERED, "delivered",
                                               {"attempted": True, "receipt": Receipt(remote_id="ra")})])
    assert (started, oks) == (True, [True])
    row = port.get_delivery(a)
    assert (row.state, row.remote_id, row.attempts, row.lease_owner) == (S.DELIVERED, "ra", 1, None)
    clock.advance(30)  # killed during b's send: a stays delivered, b maybe sent, c never attempted
    assert sorted(port.expire_leases()) == sorted([b, c])
    assert [port.get_delivery(x).state for x in (a, b, c)] == [S.DELIVERED, S.RETRYING, S.PENDING]
    assert [port.get_delivery(x).maybe_sent for x in (b, c)] == [True, False]


def test_a_start_needs_the_owners_unexpired_lease(port, clock):
    a, b, c = batch_of(port, 3)
    got = [d for d, _ in port.claim_batch("k", "w1", 30, 2)]
    assert port.start_send(a, "w2") == (False, []), "not the owner"
    assert port.start_send(c, "w1") == (False, []), "not claimed"
    # an outcome rides along even when the start is refused
    assert port.start_send(c, "w1", [(got[1], S.PENDING, "rate limited", {"due_at": NOW + 5})]) == (False, [True])
    assert port.get_delivery(b).state == S.PENDING and port.get_delivery(b).lease_owner is None
    clock.advance(30.5)
    assert port.start_send(a, "w1") == (False, []), "the lease is over: the sweep may give it back"
    assert port.expire_leases() == [a] and port.get_delivery(a).state == S.PENDING
    assert port.start_send(a, "w1") == (False, []), "no longer sending"
    assert port.get_delivery(a).attempts == 0 and port.get_delivery(a).maybe_sent is False


def test_take_due_enqueues_what_is_due_once_per_requeue_interval(port, clock):
    _, [a, b] = create(port)
    _, [later] = create(port, channels=("c",), due_at=NOW + 30)
    _, [held] = create(port, channels=("d",), state=S.SCHEDULED)
    taken = port.take_due(requeue_after=10)
    assert sorted(taken) == sorted([(a.id, "a", NOW), (b.id, "b", NOW)])
    assert port.take_due(requeue_after=10) == []
    clock.advance(9)
    assert port.take_due(requeue_after=10) == []
    clock.advance(2)
    assert sorted(x[0] for x in port.take_due(requeue_after=10)) == sorted([a.id, b.id])
    clock.advance(30)
    assert port.take_due(requeue_after=100) == [(later.id, "c", NOW + 30)]
    assert held.id not in [x[0] for x in port.take_due(requeue_after=0)]
    assert port.forget_enqueued() == 3, "the broker lost its queues: every waiting one counts as never enqueued"
    assert sorted(x[0] for x in port.take_due(requeue_after=1000)) == sorted([a.id, b.id, later.id])
    clock.advance(1)
    assert len(port.take_due(requeue_after=0, limit=2)) == 2, "the limit"


def test_a_new_due_time_is_taken_again_at_once(port, clock):
    _, [d, _] = create(port)
    port.take_due(requeue_after=60)
    c = port.claim_with_announcement(d.id, "w", 30)[0]
    port.transition(c, S.RETRYING, "503", owner="w", attempted=True, due_at=NOW + 1)
    clock.advance(1)
    assert [x[0] for x in port.take_due(requeue_after=60)] == [d.id]


def test_scheduled_work_is_released_when_due_except_held_kinds(port, clock):
    _, [promo] = create(port, kind="promotion", channels=("a",), state=S.SCHEDULED, due_at=NOW + 5)
    _, [notice] = create(port, kind="notice", channels=("a",), state=S.SCHEDULED, due_at=NOW + 5)
    _, [future] = create(port, kind="notice", channels=("a",), state=S.SCHEDULED, due_at=NOW + 500)
    assert port.promote_scheduled(hold_kinds=["promotion"]) == []
    clock.advance(5)
    assert port.promote_scheduled(hold_kinds=["promotion"]) == [notice.id]
    assert port.get_delivery(promo.id).state == S.SCHEDULED
    assert states(port, notice.id)[-1] == ("scheduled", "pending", 0)
    assert port.events_of(notice.id)[-1].reason == "publish time reached"
    assert port.promote_scheduled() == [promo.id]
    assert port.get_delivery(future.id).state == S.SCHEDULED


def test_open_incidents_count_unresolved_unretracted_incidents_with_a_status(port, clock):
    assert port.open_incidents() == 0
    create(port, kind="incident", status="investigating")
    create(port, kind="incident", status="identified")
    create(port, kind="incident", status="resolved")
    set_announcement(port, create(port, kind="incident", status="monitoring")[0], resolved_at=NOW)
    set_announcement(port, create(port, kind="incident", status="monitoring")[0], retracted_at=NOW)
    create(port, kind="incident")  # no status: as SQL compares it, NULL is not "not resolved"
    create(port, kind="maintenance", status="in_progress")
    assert port.open_incidents() == 2


# ---------------------------------------------------------------- threads of posts


def test_thread_receipts_are_the_delivered_posts_on_that_channel(port, clock):
    ann_id, [a, b] = create(port)
    assert port.thread_receipts(ann_id, "a") == []
    c = port.claim_with_announcement(a.id, "w", 30)[0]
    port.transition(c, S.DELIVERED, "sent", owner="w", receipt=Receipt(remote_id="1", url="u1", extra={"k": "v"}))
    c = port.claim_with_announcement(b.id, "w", 30)[0]
    port.transition(c, S.FAILED, "no", owner="w")
    assert port.thread_receipts(ann_id, "a") == [Receipt(remote_id="1", url="u1", extra={"k": "v"})]
    assert port.thread_receipts(ann_id, "a", before=NOW - 1) == []
    assert port.thread_receipts(ann_id, "b") == []
