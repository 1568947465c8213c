"""Prepared statements (``ledger/prepared.py``) on SQLite and PostgreSQL: the values reach the
row exactly as ``Connection.execute`` would store them (JSON, booleans, NULLs), the statement's
own literals still bind, and the row count says whether the WHERE matched."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update

from broadcaster.ledger import Ledger, schema as t
from broadcaster.ledger.prepared import Prepared

_D = t.deliveries
SETTLE = Prepared(update(_D).where(_D.c.id == bindparam("b_id"), _D.c.state == "sending"))


def _one_delivery(ledger: Ledger) -> str:
    from broadcaster.ledger.inputs import NewAnnouncement, NewDelivery

    acc = ledger.accept(NewAnnouncement(kind="incident", title="t", body="b"),
                        [NewDelivery(channel="a")], actor="test")
    return acc.deliveries[0].id


def test_prepared_values_land_as_execute_would_store_them(ledger_url):
    ledger = Ledger.open(ledger_url)
    try:
        did = _one_delivery(ledger)
        with ledger.tx() as conn:
            conn.execute(update(_D).where(_D.c.id == did).values(state="sending"))
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
        did = _one_delivery(ledger)
        with ledger.tx() as conn:
            conn.execute(update(_D).where(_D.c.id == did).values(state="sending"))
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
