"""The claim reads only what it takes: the partial index ``ix_deliveries_claimable`` exists on
every ledger (new and migrated), names exactly the claimable states, and SQLite's planner uses
it for the drain's claim without sorting the backlog."""

from __future__ import annotations

import sqlite3

from sqlalchemy import inspect
from sqlalchemy.dialects import sqlite

from broadcaster.ledger import Ledger, schema as t
from broadcaster.ledger.claims import _DUE_OF_CHANNEL
from broadcaster.models import CLAIMABLE


def test_the_index_names_exactly_the_claimable_states():
    named = t.CLAIMABLE_SQL.partition("(")[2].rstrip(")").replace("'", "").split(", ")
    assert set(named) == {str(s) for s in CLAIMABLE}


def test_every_ledger_has_the_index(ledger_url):
    ledger = Ledger.open(ledger_url)
    try:
        with ledger.read() as conn:
            assert "ix_deliveries_claimable" in {i["name"] for i in inspect(conn).get_indexes("deliveries")}
    finally:
        ledger.close()


def test_sqlite_claims_in_index_order_without_sorting_the_backlog(tmp_path):
    ledger = Ledger.open(f"sqlite:///{tmp_path}/l.db")
    ledger.close()
    sql = str(_DUE_OF_CHANNEL.compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True}))
    with sqlite3.connect(tmp_path / "l.db") as conn:
        conn.execute("ANALYZE")
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, ("a", 1e12, 8, 0)))
    assert "ix_deliveries_claimable" in plan and "TEMP B-TREE" not in plan, plan
