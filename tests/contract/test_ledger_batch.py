"""Batch claims (:meth:`Ledger.claim_batch`, :meth:`Ledger.transition_many`) on SQLite AND
PostgreSQL: a drain takes up to N due deliveries of one channel at once, yet every guarantee
stays per delivery — one owner per row even when workers drain the same channel at once, one
lease and one claim event each, and a worker killed mid-batch leaves the row whose send had
started where a killed single attempt leaves its one row (lease expiry → retrying with
``maybe_sent``) and gives the rows it never started back as never attempted."""

from __future__ import annotations

import threading

import pytest

from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S, Receipt
from tests.contract.test_ledger import Clock, create
from tests.support.ledger import claim


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(ledger_url, clock):
    lg = Ledger.open(ledger_url, clock=clock)
    yield lg
    lg.close()


@pytest.fixture
def many(ledger):
    """Twelve due deliveries on channel ``a`` (and as many on ``b``), oldest first."""
    ids = []
    for _ in range(12):
        _, ds = create(ledger, channels=("a", "b"))
        ids.append(next(d.id for d in ds if d.channel == "a"))
    return ids


def test_claim_batch_takes_up_to_n_due_rows_of_one_channel_each_with_its_own_lease(ledger, clock, many):
    got = ledger.claim_batch("a", "w1", 30, 5)
    assert [d.id for d, _ in got] == many[:5], "oldest due first"
    for d, ann in got:
        assert d.channel == "a" and d.state == S.SENDING and d.lease_owner == "w1"
        assert d.lease_until == clock() + 30 and ann.id == d.announcement_id
        events = [(e.from_state, e.to_state) for e in ledger.events_of(d.id)]
        assert events == [(None, "pending"), ("pending", "sending")]
    assert all(ledger.get_delivery(i).state == S.PENDING for i in many[5:])
    assert all(d.state == S.PENDING for d in ledger.deliveries_of(got[0][1].id) if d.channel == "b")


def test_claim_batch_skips_what_is_not_due_leased_or_settled(ledger, clock, many):
    claim(ledger, many[0], "other", 30)
    ledger.force(many[1], S.CANCELLED, "test", actor="t", from_states=[S.PENDING])
    ledger.force(many[2], S.RETRYING, "test", actor="t", from_states=[S.PENDING], due_at=clock() + 60)
    got = [d.id for d, _ in ledger.claim_batch("a", "w1", 30, 50)]
    assert got == many[3:]
    assert ledger.claim_batch("a", "w1", 30, 50) == [], "nothing left that is due"
    clock.advance(61)
    assert [d.id for d, _ in ledger.claim_batch("a", "w1", 30, 50)] == [many[2]]


def test_workers_draining_the_same_channel_never_claim_the_same_delivery(ledger_url, ledger):
    """Six workers (each with its own engine, like separate processes) drain one channel in
    batches of 4 at the same time: every due row is claimed exactly once."""
    ids = set()
    for _ in range(60):
        _, [d] = create(ledger, channels=("a",))
        ids.add(d.id)
    others = [Ledger.open(ledger_url, migrate_schema=False, clock=ledger.clock) for _ in range(6)]
    claims: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker(i: int) -> None:
        try:
            barrier.wait(10)
            while True:
                got = others[i].claim_batch("a", f"w{i}", 30, 4)
                if not got:
                    return
                claims.extend((d.id, f"w{i}") for d, _ in got)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for o in others:
            o.close()
    assert errors == [], errors
    claimed = [c for c, _ in claims]
    assert len(claimed) == len(set(claimed)), "a delivery was claimed twice"
    assert set(claimed) == ids
    for did, owner in claims:
        row = ledger.get_delivery(did)
        assert row.state == S.SENDING and row.lease_owner == owner
        assert [e.to_state for e in ledger.events_of(did)].count("sending") == 1


def test_transition_many_records_each_outcome_and_refuses_a_lost_lease(ledger, clock, many):
    got = [d for d, _ in ledger.claim_batch("a", "w1", 30, 3)]
    assert all(ledger.start_send(d.id, "w1") == (True, []) for d in got), "sent at once (batch_threads)"
    # the third row's lease expired and the sweep took it back: w1 must not overwrite that
    clock.advance(31)
    ledger.mark_items_and_extend(got[0].id, "w1", [], 30)
    ledger.mark_items_and_extend(got[1].id, "w1", [], 30)
    assert ledger.expire_leases() == [got[2].id]
    oks = ledger.transition_many([
        (got[0], S.DELIVERED, "delivered", {"receipt": Receipt(remote_id="r0"), "attempted": True,
                                            "maybe_sent": False}),
        (got[1], S.RETRYING, "HTTP 503", {"due_at": clock() + 5, "attempted": True, "error": "503"}),
        (got[2], S.DELIVERED, "delivered", {"attempted": True}),
    ], owner="w1")
    assert oks == [True, True, False]
    d0, d1, d2 = (ledger.get_delivery(d.id) for d in got)
    assert (d0.state, d0.remote_id, d0.attempts, d0.lease_owner) == (S.DELIVERED, "r0", 1, None)
    assert (d1.state, d1.due_at, d1.last_error, d1.attempts) == (S.RETRYING, clock() + 5, "503", 1)
    assert d2.state == S.RETRYING and d2.maybe_sent is True, "the sweep's outcome stands"


def test_a_worker_killed_mid_batch_leaves_only_what_it_started_maybe_sent(ledger, clock, many):
    got = [d for d, _ in ledger.claim_batch("a", "w1", 30, 4)]
    started, recorded = ledger.start_send(got[0].id, "w1")
    assert (started, recorded) == (True, [])
    started, recorded = ledger.start_send(got[1].id, "w1", [(got[0], S.DELIVERED, "delivered", {"attempted": True})])
    assert (started, recorded) == (True, [True])
    # the worker dies here, during the second send; the third and fourth were never started
    clock.advance(29)
    assert ledger.expire_leases() == [], "not before the lease ends"
    clock.advance(2)
    assert sorted(ledger.expire_leases()) == sorted(d.id for d in got[1:])
    assert ledger.get_delivery(got[0].id).state == S.DELIVERED
    row = ledger.get_delivery(got[1].id)
    assert (row.state, row.maybe_sent, row.attempts, row.lease_owner) == (S.RETRYING, True, 1, None)
    for d in got[2:]:
        row = ledger.get_delivery(d.id)
        assert (row.state, row.maybe_sent, row.attempts, row.lease_owner) == (S.PENDING, False, 0, None)
    # and the next drain takes them again, the one in flight still carrying maybe_sent for its own rule
    again = {d.id: d for d, _ in ledger.claim_batch("a", "w2", 30, 20)}
    assert {d.id for d in got[1:]} <= set(again)
    assert [again[d.id].maybe_sent for d in got[1:]] == [True, False, False]
