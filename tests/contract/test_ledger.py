"""The ledger's contract, run on SQLite AND PostgreSQL (``ledger_url`` is parametrized over both):
atomic writes, idempotency, exclusive claims, lease safety, sweeps, per-item progress, listing,
and migrations."""

from __future__ import annotations

import time

import pytest

from broadcaster.errors import IdempotencyConflict, NotFound
from broadcaster.ledger import LATEST, Ledger, current_version, make_engine, migrate
from broadcaster.ledger.actions import Audited
from broadcaster.models import DeliveryState as S, Receipt
from tests.support.ledger import audit_entries, claim, set_announcement
from tests.support.runtime import NOW, Clock


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ledger(ledger_url, clock):
    lg = Ledger.open(ledger_url, clock=clock)
    yield lg
    lg.close()


def fields(kind="incident", title="API errors", **kw):
    return {"kind": kind, "title": title, "body": "b", "channels": ["a", "b"], "status": None, **kw}


def create(ledger, kind="incident", channels=("a", "b"), state=S.PENDING, due_at=None, **kw):
    rows = [{"channel": c, "state": state, **({"due_at": due_at} if due_at is not None else {})} for c in channels]
    ann_id, created = ledger.create_announcement(fields(kind, **kw), rows, actor="tester")
    assert created
    return ann_id, ledger.deliveries_of(ann_id)


# ---------------------------------------------------------------- accepted means durable


def test_create_announcement_writes_everything_in_one_go(ledger):
    ann_id, ds = create(ledger)
    ann = ledger.get_announcement(ann_id)
    assert ann.title == "API errors" and ann.created_at == NOW and ann.author == "tester"
    assert [(d.channel, d.state, d.attempts, d.due_at, d.maybe_sent) for d in ds] == [
        ("a", S.PENDING, 0, NOW, False), ("b", S.PENDING, 0, NOW, False)]
    for d in ds:
        [ev] = ledger.events_of(d.id)
        assert (ev.from_state, ev.to_state, ev.attempt) == (None, "pending", 0)
    assert any(e["action"] == "announcement.create" and e["target"] == ann_id for e in audit_entries(ledger))


def test_accept_returns_exactly_what_a_read_gives(ledger):
    """The intake answers from what it wrote instead of reading it back: it must be the same."""
    rows = [{"channel": "a", "reason": "accepted"},
            {"channel": "b", "state": S.SCHEDULED, "due_at": NOW + 60, "deadline_at": NOW + 3600, "reason": "held"}]
    extra = {"components": ["api"], "variants": {"a": {"text": "short"}}, "tags": ["x"], "severity": "major",
             "url": "https://example.com/i/1", "publish_at": NOW + 60}
    res = ledger.accept(fields(**extra), rows, actor="tester", idempotency=("s", "k1", "h"))
    assert res.created
    ann, updates, dels, events = ledger.snapshot(res.announcement.id)
    assert res.announcement == ann and res.deliveries == dels and res.events == events and updates == []
    again = ledger.accept(fields(**extra), rows, actor="tester", idempotency=("s", "k1", "h"))
    assert not again.created and again.announcement == ann and again.deliveries == dels


def test_create_announcement_is_atomic(ledger):
    """A delivery insert that fails leaves no announcement, no delivery, no event, no key."""
    rows = [{"channel": "a", "id": "dlv_same"}, {"channel": "b", "id": "dlv_same"}]
    with pytest.raises(Exception) as info:
        ledger.create_announcement(fields(), rows, actor="tester", idempotency=("s", "k", "h1"))
    assert not isinstance(info.value, IdempotencyConflict)
    assert ledger.list_announcements() == []
    assert ledger.count_by_state() == {}
    assert ledger.events_of("dlv_same") == []
    assert not any(e["action"] == "announcement.create" for e in audit_entries(ledger))
    # the key was not kept either: the same request can be made again, successfully
    ann_id, created = ledger.create_announcement(fields(), [{"channel": "a"}], actor="tester",
                                                 idempotency=("s", "k", "h1"))
    assert created and len(ledger.deliveries_of(ann_id)) == 1


def test_idempotency_replay_and_conflict(ledger):
    first, created = ledger.create_announcement(fields(), [{"channel": "a"}], actor="t", idempotency=("ci", "k", "h"))
    assert created
    again, created = ledger.create_announcement(fields(), [{"channel": "a"}], actor="t", idempotency=("ci", "k", "h"))
    assert (again, created) == (first, False)
    with pytest.raises(IdempotencyConflict):
        ledger.create_announcement(fields(title="Other"), [{"channel": "a"}], actor="t",
                                   idempotency=("ci", "k", "other-hash"))
    other, created = ledger.create_announcement(fields(), [{"channel": "a"}], actor="t",
                                                idempotency=("someone-else", "k", "h"))
    assert created and other != first
    assert len(ledger.list_announcements()) == 2
    assert ledger.idempotency.recall("ci", "k", "h").target_id == first
    assert ledger.idempotency.recall("ci", "unused", "h") is None


def test_one_idempotency_store_keeps_an_actions_answer(ledger):
    """Actions (retract, retry…) remember the answer they gave; a second writer of the same key
    loses quietly and reads the first answer; another request with the key is a conflict."""
    store = ledger.idempotency
    assert store.remember("ops", "retract:ann_1:k", "h1", target_id="ann_1", response={"cancelled": 2})
    assert not store.remember("ops", "retract:ann_1:k", "h1", target_id="ann_1", response={"cancelled": 0})
    assert store.recall("ops", "retract:ann_1:k", "h1").response == {"cancelled": 2}
    with pytest.raises(IdempotencyConflict):
        store.recall("ops", "retract:ann_1:k", "h2")
    assert store.recall("ci", "retract:ann_1:k", "h2") is None, "keys are scoped by token"


def test_idempotency_keys_are_pruned_by_age(ledger, clock):
    ledger.create_announcement(fields(), [{"channel": "a"}], actor="t", idempotency=("ci", "old", "h"))
    clock.advance(100)
    ledger.create_announcement(fields(), [{"channel": "a"}], actor="t", idempotency=("ci", "new", "h"))
    assert ledger.idempotency.prune(NOW + 50) == 1
    assert ledger.idempotency.recall("ci", "old", "h") is None
    assert ledger.idempotency.recall("ci", "new", "h") is not None


def test_create_announcement_accepts_a_chosen_id(ledger):
    ann_id, _ = ledger.create_announcement(fields(id="ann_chosen"), [{"channel": "a"}], actor="t")
    assert ann_id == "ann_chosen"


# ---------------------------------------------------------------- claims


def test_claim_marks_sending_with_a_lease_and_logs_it(ledger):
    _, [d, _] = create(ledger)
    c = claim(ledger, d.id, "w1", 30)
    assert c.state == S.SENDING and c.lease_owner == "w1" and c.lease_until == NOW + 30
    assert ledger.events_of(d.id)[-1].reason == "claimed by w1"
    assert claim(ledger, d.id, "w2", 30) is None


def test_transition_with_a_stale_owner_is_refused(ledger):
    _, [d, _] = create(ledger)
    c = claim(ledger, d.id, "w1", 30)
    assert ledger.transition(c, S.DELIVERED, "not mine", owner="w2", attempted=True) is False
    row = ledger.get_delivery(d.id)
    assert row.state == S.SENDING and row.attempts == 0
    assert ledger.transition(c, S.DELIVERED, "sent", owner="w1", attempted=True,
                             receipt=Receipt(remote_id="r1", url="https://x.example/r1")) is True
    row = ledger.get_delivery(d.id)
    assert (row.state, row.attempts, row.remote_id, row.remote_url) == (S.DELIVERED, 1, "r1", "https://x.example/r1")
    assert row.lease_owner is None and row.settled_at == NOW
    assert ledger.transition(c, S.FAILED, "late", owner="w1") is False, "settled rows are not owned by anyone"


def test_transition_records_error_due_and_fallbacks(ledger, clock):
    ann_id, [d, _] = create(ledger)
    c = claim(ledger, d.id, "w", 30)
    assert ledger.transition(c, S.FALLEN_BACK, "400", owner="w", attempted=True, error="HTTP 400",
                             response="HTTP 400 bad", fallbacks=[{"channel": "c", "fallback_of": d.id}])
    row = ledger.get_delivery(d.id)
    assert row.last_error == "HTTP 400"
    ev = ledger.events_of(d.id)[-1]
    assert (ev.from_state, ev.to_state, ev.attempt, ev.response) == ("sending", "fallen_back", 1, "HTTP 400 bad")
    [fb] = [x for x in ledger.deliveries_of(ann_id) if x.channel == "c"]
    assert fb.fallback_of == d.id and fb.state == S.PENDING and fb.update_id is None


# ---------------------------------------------------------------- at most one delivery per (message, channel)


def _fall_back(ledger, delivery_id, fallbacks, owner="w"):
    c = claim(ledger, delivery_id, owner, 30)
    assert c is not None
    rows = [{"channel": ch, "fallback_of": delivery_id, "reason": "fallback"} for ch in fallbacks]
    assert ledger.transition(c, S.FALLEN_BACK, "gave up", owner=owner, attempted=True, fallbacks=rows)


def test_a_fallback_to_a_channel_that_already_has_the_message_adds_nothing_and_says_so(ledger):
    """x is routed to a and b; a falls back to [b, c]: b already has it, so only c is added, and
    a's event names b's delivery. A second fall-back of a (after an operator retry) adds nothing."""
    ann_id, [a, b] = create(ledger)
    _fall_back(ledger, a.id, ["b", "c"])
    ds = ledger.deliveries_of(ann_id)
    assert sorted(d.channel for d in ds) == ["a", "b", "c"]
    [c] = [d for d in ds if d.channel == "c"]
    assert c.fallback_of == a.id
    reason = ledger.events_of(a.id)[-1].reason
    assert f"fallback b already has it ({b.id}, pending)" in reason and "fallback c" not in reason
    # an operator retry moves the same row back (no new delivery), and it falls back again
    assert ledger.force(a.id, S.PENDING, "operator retry", actor="op", from_states=[S.FALLEN_BACK])
    _fall_back(ledger, a.id, ["b", "c", "c"])
    assert sorted(d.channel for d in ledger.deliveries_of(ann_id)) == ["a", "b", "c"]
    reason = ledger.events_of(a.id)[-1].reason
    assert b.id in reason and c.id in reason


def test_fallback_chains_and_loops_end_at_channels_that_have_the_message(ledger):
    ann_id, [a] = create(ledger, channels=("a",))
    _fall_back(ledger, a.id, ["b"])
    [b] = [d for d in ledger.deliveries_of(ann_id) if d.channel == "b"]
    _fall_back(ledger, b.id, ["a", "c"])  # b's own fallbacks lead back to a: a already has it
    assert sorted(d.channel for d in ledger.deliveries_of(ann_id)) == ["a", "b", "c"]


def test_no_ledger_method_inserts_a_second_delivery_for_a_message_and_channel(ledger):
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from broadcaster.ledger import schema as t

    with pytest.raises(ValueError, match="named twice: a"):
        ledger.accept(fields(), [{"channel": "a"}, {"channel": "a"}], actor="t")
    assert ledger.list_announcements() == []
    ann_id, _ = create(ledger)
    with pytest.raises(ValueError, match="named twice: b"):
        ledger.add_update(ann_id, {"status": "identified", "body": "x"}, [{"channel": "b"}, {"channel": "b"}],
                          actor="t")
    # an update is another message: it gets its own delivery on each channel, once
    upd_id, _ = ledger.add_update(ann_id, {"status": "identified", "body": "x"}, [{"channel": "a"}], actor="t")
    [ua] = [d for d in ledger.deliveries_of(ann_id) if d.update_id == upd_id]
    _fall_back(ledger, ua.id, ["a", "b"])  # the update falls back to b (new for this update), not to a
    assert sorted(d.channel for d in ledger.deliveries_of(ann_id) if d.update_id == upd_id) == ["a", "b"]
    # and even a raw insert that names no key meets the unique index (the key is filled in)
    for update_id in (None, upd_id):
        with pytest.raises(IntegrityError), ledger.tx() as conn:
            conn.execute(insert(t.deliveries).values(
                id=f"dlv_raw_{update_id}", announcement_id=ann_id, update_id=update_id, channel="a", state="pending",
                attempts=0, maybe_sent=False, created_at=NOW, updated_at=NOW))
    assert len(ledger.deliveries_of(ann_id)) == 4


def test_upgrading_a_ledger_with_earlier_double_posts_keeps_them_and_adds_the_key(ledger_url, monkeypatch):
    """A ledger from before the key may already hold repeats (the double posts this key ends):
    the upgrade keeps them as history, then refuses any new repeat."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from broadcaster.ledger import engine as ledger_engine

    lg = Ledger.open(ledger_url)
    ann_id, _ = lg.create_announcement(fields(), [{"channel": "a"}, {"channel": "b"}], actor="t")
    lg.close()
    # back to version 1 as an older release left it: no key, no index, a repeated (message, channel)
    engine = make_engine(ledger_url)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ux_deliveries_once"))
        conn.execute(text("ALTER TABLE deliveries DROP COLUMN once_key"))
        conn.execute(text("DELETE FROM schema_version WHERE version >= 2"))
        conn.execute(text("INSERT INTO deliveries (id, announcement_id, channel, state, attempts, maybe_sent, "
                          "fallback_of, created_at, updated_at) VALUES ('dlv_zz_repeat', :a, 'b', 'delivered', 1, "
                          "false, NULL, :t, :t)"), {"a": ann_id, "t": NOW + 5})
    monkeypatch.setattr(ledger_engine, "MIGRATIONS", [m for m in ledger_engine.MIGRATIONS if m[0] <= 2])
    try:
        assert current_version(engine) == 1
        assert migrate(engine) == [2]
    finally:
        engine.dispose()
    assert "ux_deliveries_once" in _indexes(ledger_url, "deliveries")
    monkeypatch.undo()
    lg = Ledger.open(ledger_url)
    try:
        ds = lg.deliveries_of(ann_id)
        assert sorted(d.channel for d in ds) == ["a", "b", "b"], "history is kept"
        with pytest.raises(IntegrityError), lg.tx() as conn:
            conn.execute(text("INSERT INTO deliveries (id, announcement_id, channel, state, attempts, maybe_sent, "
                              "created_at, updated_at, once_key) VALUES ('dlv_new', :a, 'a', 'pending', 0, false, "
                              ":t, :t, :k)"), {"a": ann_id, "t": NOW, "k": f"{ann_id}/-/a"})
        first_a = next(d for d in ds if d.channel == "a")
        _fall_back(lg, first_a.id, ["b", "c"])
        assert sorted(d.channel for d in lg.deliveries_of(ann_id)) == ["a", "b", "b", "c"]
    finally:
        lg.close()


def test_expire_leases_turns_dead_workers_rows_into_maybe_sent_retries(ledger, clock):
    _, [dead, alive] = create(ledger)
    claim(ledger, dead.id, "dead", 5)
    claim(ledger, alive.id, "alive", 100)
    clock.advance(10)
    assert ledger.expire_leases() == [dead.id]
    row = ledger.get_delivery(dead.id)
    assert row.state == S.RETRYING and row.maybe_sent is True and row.attempts == 1
    assert row.due_at == NOW + 10 and row.lease_owner is None
    ev = ledger.events_of(dead.id)[-1]
    assert (ev.from_state, ev.to_state) == ("sending", "retrying") and "expired" in ev.reason
    assert ledger.get_delivery(alive.id).state == S.SENDING
    assert ledger.expire_leases() == []
    # the dead worker, should it wake up, cannot record anything over the sweep's verdict
    stale = ledger.get_delivery(dead.id)
    assert ledger.transition(stale, S.DELIVERED, "late", owner="dead") is False


def test_a_lease_is_renewed_only_for_its_owner(ledger, clock):
    _, [d, _] = create(ledger)
    claim(ledger, d.id, "w", 5)
    clock.advance(4)
    assert ledger.mark_items_and_extend(d.id, "w", [], 5) is True
    assert ledger.mark_items_and_extend(d.id, "other", [(["x@example.test"], "sent", None)], 500) is False
    clock.advance(4)
    assert ledger.expire_leases() == [], "the renewed lease still holds"
    assert ledger.get_delivery(d.id).lease_until == NOW + 9


def test_item_marks_and_the_lease_are_written_in_one_transaction(ledger, clock):
    """What the e-mail adapter's progress writes: marks (later ones win) and, for the lease
    holder only, a renewed lease — together."""
    ann, _ = ledger.create_announcement({"kind": "incident", "title": "t", "body": "b"},
                                        [{"channel": "mail", "state": "pending"}], actor="test")
    [d] = ledger.deliveries_of(ann)
    assert claim(ledger, d.id, "w", 5) is not None
    assert ledger.mark_items_and_extend(d.id, "w", [(["a@x"], "sending", None)]) is None
    clock.advance(4)
    renewed = ledger.mark_items_and_extend(
        d.id, "w", [(["a@x"], "done", "250 ok"), (["b@x"], "sending", None), (["c@x", "c@x"], "failed", "450")], 5)
    assert renewed is True and ledger.get_delivery(d.id).lease_until == NOW + 9
    assert ledger.mark_items_and_extend(d.id, "other", [], 500) is False
    assert ledger.get_delivery(d.id).lease_until == NOW + 9
    # later marks of an item win, as if written one after the other
    assert ledger.mark_items_and_extend(d.id, "w", [(["b@x"], "done", "250"), (["b@x"], "refused", "550")]) is None
    assert ledger.item_states(d.id) == {"a@x": ("done", "250 ok"), "b@x": ("refused", "550"),
                                        "c@x": ("failed", "450")}
    assert ledger.mark_items_and_extend(d.id, "w", []) is None


def test_force_moves_only_from_the_given_states_and_missing_rows_are_not_found(ledger):
    _, [d, _] = create(ledger)
    assert ledger.force(d.id, S.CANCELLED, "stop", actor="op", from_states=[S.FAILED]) is False
    assert ledger.force(d.id, S.CANCELLED, "stop", actor="op", from_states=[S.PENDING]) is True
    assert ledger.get_delivery(d.id).state == S.CANCELLED
    assert ledger.events_of(d.id)[-1].reason == "stop (by op)"
    with pytest.raises(NotFound):
        ledger.force("dlv_missing", S.CANCELLED, "x", actor="op", from_states=[S.PENDING])
    with pytest.raises(NotFound):
        ledger.get_announcement("ann_missing")
    with pytest.raises(NotFound):
        ledger.get_delivery("dlv_missing")
    with pytest.raises(NotFound):
        ledger.get_update("upd_missing")


def test_an_action_writes_its_audit_entry_only_with_its_change(ledger):
    _, [d, _] = create(ledger)
    note = Audited("delivery.retry", d.id, {"from": "pending"})
    assert ledger.force(d.id, S.CANCELLED, "stop", actor="op", from_states=[S.FAILED], audited=note) is False
    assert not [e for e in audit_entries(ledger) if e["action"] == "delivery.retry"]
    assert ledger.force(d.id, S.CANCELLED, "stop", actor="op", from_states=[S.PENDING], audited=note) is True
    [entry] = [e for e in audit_entries(ledger) if e["action"] == "delivery.retry"]
    assert (entry["actor"], entry["target"], entry["details"]) == ("op", d.id, {"from": "pending"})


def test_retract_marks_cancels_and_audits_in_one_go(ledger, clock):
    ann_id, [sent, unsent, failed, held, busy] = create(ledger, channels=("a", "b", "c", "d", "e"))
    ledger.transition(claim(ledger, sent.id, "w", 30), S.DELIVERED, "ok", owner="w", attempted=True)
    ledger.transition(claim(ledger, failed.id, "w", 30), S.FAILED, "no", owner="w", attempted=True)
    ledger.force(held.id, S.SCHEDULED, "held", actor="op", from_states=[S.PENDING])
    claim(ledger, busy.id, "w", 30)
    clock.advance(1)
    done = ledger.retract(ann_id, actor="op", reason="wrong service")
    assert (done.cancelled, [d.id for d in done.live], done.already) == (2, [sent.id], 2)
    assert ledger.get_announcement(ann_id).retracted_at == NOW + 1
    assert [ledger.get_delivery(x.id).state for x in (unsent, held, busy)] == [S.CANCELLED, S.CANCELLED, S.SENDING]
    assert ledger.events_of(unsent.id)[-1].reason == "cancelled: announcement retracted (by op)"
    [entry] = [e for e in audit_entries(ledger) if e["action"] == "announcement.retract"]
    assert (entry["target"], entry["details"]) == (ann_id, {"reason": "wrong service"})
    again = ledger.retract(ann_id, actor="op", reason="twice")
    assert (again.cancelled, [d.id for d in again.live], again.already) == (0, [sent.id], 4)
    assert len([e for e in audit_entries(ledger) if e["action"] == "announcement.retract"]) == 1
    assert ledger.get_announcement(ann_id).retracted_at == NOW + 1, "the first retraction's time stays"


def test_cancel_scheduled_cancels_only_what_waits_and_says_how_many(ledger):
    ann_id, [a, b, c] = create(ledger, channels=("a", "b", "c"), state=S.SCHEDULED, due_at=NOW + 60)
    ledger.force(c.id, S.PENDING, "released", actor="op", from_states=[S.SCHEDULED])
    assert ledger.cancel_scheduled(ann_id, actor="op") == 2
    assert [ledger.get_delivery(x.id).state for x in (a, b, c)] == [S.CANCELLED, S.CANCELLED, S.PENDING]
    assert ledger.events_of(a.id)[-1].reason == "cancelled before publish time (by op)"
    [entry] = [e for e in audit_entries(ledger) if e["action"] == "announcement.cancel"]
    assert (entry["actor"], entry["target"], entry["details"]) == ("op", ann_id, {"cancelled": 2})
    assert ledger.cancel_scheduled(ann_id, actor="op") == 0


# ---------------------------------------------------------------- sweeps


def test_take_due_respects_requeue_after(ledger, clock):
    _, [a, b] = create(ledger)
    _, [later] = create(ledger, channels=("c",), due_at=NOW + 30)
    _, [held] = create(ledger, channels=("d",), state=S.SCHEDULED)
    taken = ledger.take_due(requeue_after=10)
    assert sorted(x[0] for x in taken) == sorted([a.id, b.id])
    assert all(due == NOW for _, _, due in taken)
    assert ledger.take_due(requeue_after=10) == [], "just enqueued: not again yet"
    clock.advance(9)
    assert ledger.take_due(requeue_after=10) == []
    clock.advance(2)
    assert sorted(x[0] for x in ledger.take_due(requeue_after=10)) == sorted([a.id, b.id])
    clock.advance(30)
    assert [x[0] for x in ledger.take_due(requeue_after=100)] == [later.id], "due now; the others were just sent"
    assert held.id not in [x[0] for x in ledger.take_due(requeue_after=0)]


def test_a_retry_with_a_new_due_time_is_taken_again_at_once(ledger, clock):
    _, [d, _] = create(ledger)
    ledger.take_due(requeue_after=60)
    c = claim(ledger, d.id, "w", 30)
    ledger.transition(c, S.RETRYING, "503", owner="w", attempted=True, due_at=NOW + 1)
    clock.advance(1)
    assert [x[0] for x in ledger.take_due(requeue_after=60)] == [d.id]


def test_take_due_limit(ledger):
    create(ledger, channels=("a", "b", "c", "d"))
    assert len(ledger.take_due(requeue_after=10, limit=3)) == 3
    assert len(ledger.take_due(requeue_after=10, limit=3)) == 1


def test_promote_scheduled_respects_hold_kinds(ledger, clock):
    _, [promo] = create(ledger, kind="promotion", channels=("a",), state=S.SCHEDULED, due_at=NOW + 5)
    _, [notice] = create(ledger, kind="notice", channels=("a",), state=S.SCHEDULED, due_at=NOW + 5)
    _, [future] = create(ledger, kind="notice", channels=("a",), state=S.SCHEDULED, due_at=NOW + 500)
    assert ledger.promote_scheduled(hold_kinds=["promotion"]) == [], "nothing is due yet"
    clock.advance(5)
    assert ledger.promote_scheduled(hold_kinds=["promotion"]) == [notice.id]
    assert ledger.get_delivery(promo.id).state == S.SCHEDULED
    assert ledger.get_delivery(notice.id).state == S.PENDING
    assert ledger.events_of(notice.id)[-1].reason == "publish time reached"
    assert ledger.promote_scheduled(hold_kinds=()) == [promo.id]
    assert ledger.get_delivery(future.id).state == S.SCHEDULED


def test_open_incidents(ledger, clock):
    assert ledger.open_incidents() == 0
    a, _ = create(ledger, kind="incident", status="investigating")
    b, _ = create(ledger, kind="incident", status="identified")
    create(ledger, kind="promotion")
    assert ledger.open_incidents() == 2
    set_announcement(ledger, a, resolved_at=clock())
    set_announcement(ledger, b, retracted_at=clock())
    assert ledger.open_incidents() == 0


# ---------------------------------------------------------------- per-item progress


def test_mark_items_and_item_states_round_trip(ledger):
    _, [d, other] = create(ledger)
    assert ledger.item_states(d.id) == {}
    ledger.mark_items(d.id, ["a@example.com", "b@example.com", "part:0"], "sending")
    ledger.mark_items(d.id, ["a@example.com"], "done", "250 2.0.0 queued as 123")
    ledger.mark_items(d.id, ["b@example.com", "c@example.com"], "refused", "550 no such user")
    ledger.mark_items(d.id, [], "done")  # no-op
    assert ledger.item_states(d.id) == {
        "a@example.com": ("done", "250 2.0.0 queued as 123"),
        "b@example.com": ("refused", "550 no such user"),
        "c@example.com": ("refused", "550 no such user"),
        "part:0": ("sending", None),
    }
    assert ledger.item_states(other.id) == {}, "items belong to one delivery"
    ledger.mark_items(d.id, iter(["ünïcödé@example.com"]), "done")
    assert ledger.item_states(d.id)["ünïcödé@example.com"] == ("done", None)


# ---------------------------------------------------------------- listing


def make_many(ledger, clock, n=5):
    ids = []
    for i in range(n):
        kind = "incident" if i % 2 == 0 else "notice"
        ann_id, _ = create(ledger, kind=kind, title=f"n{i}", status="investigating" if kind == "incident" else None)
        ids.append(ann_id)
        clock.advance(10)
        time.sleep(0.002)  # ids carry wall-clock milliseconds: keep them in creation order
    return ids


def test_list_is_newest_first_with_before_paging(ledger, clock):
    ids = make_many(ledger, clock, 7)
    seen, before = [], None
    while True:
        page = ledger.list_announcements(limit=3, before=before)
        if not page:
            break
        seen += [a.id for a in page]
        before = page[-1].id
    assert seen == list(reversed(ids)), "every announcement exactly once, newest first"


def test_list_filters(ledger, clock):
    ids = make_many(ledger, clock, 5)
    assert [a.id for a in ledger.list_announcements(kind="notice")] == [ids[3], ids[1]]
    assert [a.id for a in ledger.list_announcements(status="investigating")] == [ids[4], ids[2], ids[0]]
    assert [a.id for a in ledger.list_announcements(since=NOW + 10, until=NOW + 30)] == [ids[2], ids[1]]
    set_announcement(ledger, ids[4], resolved_at=clock())
    assert ids[4] not in [a.id for a in ledger.list_announcements(open_only=True)]
    d = ledger.deliveries_of(ids[1])[0]
    ledger.force(d.id, S.CANCELLED, "x", actor="t", from_states=[S.PENDING])
    assert [a.id for a in ledger.list_announcements(state="cancelled")] == [ids[1]]
    assert ledger.list_announcements(kind="maintenance") == []


def test_before_paging_follows_the_list_order_even_when_ids_disagree(ledger, clock):
    first, _ = create(ledger, title="on a server whose clock runs ahead")
    time.sleep(0.002)
    clock.t = NOW - 60  # a second API server, one minute behind
    second, _ = create(ledger, title="on the other server")
    page1 = ledger.list_announcements(limit=1)
    assert [a.id for a in page1] == [first]
    page2 = ledger.list_announcements(limit=1, before=page1[-1].id)
    assert [a.id for a in page2] == [second]


# ---------------------------------------------------------------- migrations


def test_migrations_are_idempotent_and_reach_latest(ledger_url):
    engine = make_engine(ledger_url)
    try:
        assert current_version(engine) == 0
        first = migrate(engine)
        assert first == list(range(1, LATEST + 1))
        assert migrate(engine) == [], "a second run changes nothing"
        assert current_version(engine) == LATEST
    finally:
        engine.dispose()
    # and opening a ledger on a migrated database keeps the data
    lg = Ledger.open(ledger_url)
    try:
        ann, _ = lg.create_announcement(fields(), [{"channel": "a"}], actor="t")
        lg2 = Ledger.open(ledger_url)
        assert lg2.get_announcement(ann).title == "API errors"
        lg2.close()
    finally:
        lg.close()



def _add_step(monkeypatch, step):
    """The next release's migration, appended as a release would append it."""
    from broadcaster.ledger import engine as ledger_engine

    monkeypatch.setattr(ledger_engine, "MIGRATIONS", [*ledger_engine.MIGRATIONS, (LATEST + 1, "next release", step)])


def _indexes(ledger_url, table):
    from sqlalchemy import inspect

    engine = make_engine(ledger_url)
    try:
        return {ix["name"] for ix in inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def test_upgrade_from_the_previous_schema_applies_only_the_new_step_and_keeps_the_data(ledger_url, monkeypatch):
    from sqlalchemy import text

    lg = Ledger.open(ledger_url)  # a ledger at today's schema, in use
    ann, _ = lg.create_announcement(fields(), [{"channel": "a"}], actor="t")
    lg.close()
    ran = []

    def step(conn):
        ran.append(LATEST + 1)
        conn.execute(text("CREATE INDEX ix_next_release ON deliveries (channel, updated_at)"))

    _add_step(monkeypatch, step)
    engine = make_engine(ledger_url)
    try:
        assert current_version(engine) == LATEST
        assert migrate(engine) == [LATEST + 1] and ran == [LATEST + 1]
        assert migrate(engine) == [] and ran == [LATEST + 1], "an upgraded ledger is not upgraded twice"
        assert current_version(engine) == LATEST + 1
    finally:
        engine.dispose()
    assert "ix_next_release" in _indexes(ledger_url, "deliveries")
    lg = Ledger.open(ledger_url)
    try:
        assert lg.get_announcement(ann).title == "API errors" and len(lg.deliveries_of(ann)) == 1
    finally:
        lg.close()


def test_a_failing_upgrade_step_leaves_the_previous_schema_as_it_was(ledger_url, monkeypatch):
    from sqlalchemy import text

    Ledger.open(ledger_url).close()

    def step(conn):
        conn.execute(text("CREATE INDEX ix_half_done ON deliveries (channel, updated_at)"))
        raise RuntimeError("the step failed half-way")

    _add_step(monkeypatch, step)
    engine = make_engine(ledger_url)
    try:
        with pytest.raises(RuntimeError):
            migrate(engine)
        assert current_version(engine) == LATEST
    finally:
        engine.dispose()
    assert "ix_half_done" not in _indexes(ledger_url, "deliveries"), "DDL and version row commit together or not at all"


def test_the_sqlite_ledger_and_its_wal_files_are_readable_by_their_owner_only(tmp_path):
    """It holds subscriber addresses: 0600 whatever the umask, -wal and -shm included; a file an
    older release left open to every user is narrowed when opened."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        db = tmp_path / "var" / "ledger.db"
        lg = Ledger.open(f"sqlite:///{db}")
        try:
            lg.create_announcement(fields(), [{"channel": "a"}], actor="t")  # the -wal and -shm exist now
            for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
                assert stat.S_IMODE((db.parent / name).stat().st_mode) == 0o600, name
        finally:
            lg.close()
        os.chmod(db, 0o644)
        Ledger.open(f"sqlite:///{db}").close()
        assert stat.S_IMODE(db.stat().st_mode) == 0o640, "others lose read; group rights stay"
    finally:
        os.umask(old)
