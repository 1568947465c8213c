"""Prepared statements (``ledger/prepared.py``) on SQLite and PostgreSQL: the values reach the
row exactly as ``Connection.execute`` would store them (JSON, booleans, NULLs), the statement's
own literals still bind, the row count says whether the WHERE matched, ``run_many`` writes every
row, and the driver's errors come out as SQLAlchemy's (a refused unique key is an IntegrityError)."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from broadcaster.ledger import Ledger, schema as t
from broadcaster.ledger.prepared import Prepared

_D = t.deliveries
SETTLE = Prepared(update(_D).where(_D.c.id == bindparam("b_id"), _D.c.state == "sending"))


def _one_delivery(ledger: Ledger) -> str:
    from broadcaster.ledger.inputs import NewAnnouncement, NewDelivery

    acc = ledger.accept(NewAnnouncement(kind="incident", title="t", body="b"),
                        [NewDelivery(channel="a")], actor="test")
    return acc.deliveries[0].id


def _sending(ledger: Ledger) -> str:
    """A delivery in state ``sending`` (what SETTLE's WHERE asks for)."""
    did = _one_delivery(ledger)
    with ledger.tx() as conn:
        conn.execute(update(_D).where(_D.c.id == did).values(state="sending"))
    return did


def test_prepared_values_land_as_execute_would_store_them(ledger_url):
    ledger = Ledger.open(ledger_url)
    try:
        did = _sending(ledger)
        receipt = {"remote_id": "109", "extra": {"parts": ["1", "2"], "ok": True}}
        with ledger.tx() as conn:
            assert SETTLE.run(conn, {"b_id": did, "state": "delivered", "receipt": receipt, "maybe_sent": True,
                                     "last_error": None, "settled_at": 12.5}) == 1
        with ledger.read() as conn:
            row = conn.execute(select(_D).where(_D.c.id == did)).one()
        assert (row.state, row.receipt, row.maybe_sent, row.last_error, row.settled_at) == (
            "delivered", receipt, True, None, 12.5)
        with ledger.tx() as conn:  # no longer "sending": the literal in the WHERE still binds
            assert SETTLE.run(conn, {"b_id": did, "state": "failed", "receipt": None, "maybe_sent": False,
                                     "last_error": "x", "settled_at": 13.0}) == 0
            assert SETTLE.run(conn, {"b_id": "dlv_missing", "state": "failed"}) == 0
        with ledger.read() as conn:
            assert conn.execute(select(_D.c.state).where(_D.c.id == did)).scalar() == "delivered"
    finally:
        ledger.close()


def test_a_prepared_write_rolls_back_with_its_transaction(ledger_url):
    ledger = Ledger.open(ledger_url)
    try:
        did = _sending(ledger)
        try:
            with ledger.tx() as conn:
                assert SETTLE.run(conn, {"b_id": did, "state": "delivered"}) == 1
                raise RuntimeError("after the write, before the commit")
        except RuntimeError:
            pass
        with ledger.read() as conn:
            assert conn.execute(select(_D.c.state).where(_D.c.id == did)).scalar() == "sending"
    finally:
        ledger.close()


def test_run_many_writes_every_row_and_a_refused_key_is_an_integrity_error(ledger_url):
    ledger = Ledger.open(ledger_url)
    ev = t.delivery_events
    try:
        did = _one_delivery(ledger)
        rows = [{"delivery_id": did, "at": 1.0 + i, "from_state": None, "to_state": "pending", "attempt": i,
                 "reason": f"row {i}", "response": None} for i in range(3)]
        with ledger.tx() as conn:
            Prepared(insert(ev)).run_many(conn, rows)
        with ledger.read() as conn:
            got = conn.execute(select(ev.c.reason).where(ev.c.delivery_id == did, ev.c.reason.like("row %"))
                               .order_by(ev.c.attempt)).scalars().all()
        assert got == ["row 0", "row 1", "row 2"]
        keys = Prepared(insert(t.idempotency_keys))
        key = {"scope": "s", "key": "k", "request_hash": "h", "target_id": did, "created_at": 1.0}
        with ledger.tx() as conn:
            keys.run(conn, key)
        with pytest.raises(IntegrityError), ledger.tx() as conn:
            keys.run(conn, key)
    finally:
        ledger.close()
