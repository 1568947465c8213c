"""Migration 6 adds ``alert_drafts`` to a ledger made before it (SQLite and PostgreSQL), and the
one-open-draft-per-group index holds."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from broadcaster.ledger import Ledger, current_version, engine as ledger_engine, make_engine, migrate, schema


def test_older_ledger_gains_the_drafts_table(ledger_url, monkeypatch):
    engine = make_engine(ledger_url)
    with monkeypatch.context() as m:  # a ledger as the release before drafts left it
        m.setattr(ledger_engine, "MIGRATIONS", [s for s in ledger_engine.MIGRATIONS if s[0] <= 5])
        migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alert_drafts"))
    assert current_version(engine) == 5
    assert 6 in migrate(engine)
    assert inspect(engine).has_table("alert_drafts")
    row = {"receiver": "r", "source": "alertmanager", "group_key": "g", "open_key": "r:g", "state": "draft",
           "mode": "draft", "fields": {}, "alert": {}, "seen": [], "created_at": 1.0, "updated_at": 1.0}
    with engine.begin() as conn:
        conn.execute(schema.alert_drafts.insert().values(id="drf_1", **row))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(schema.alert_drafts.insert().values(id="drf_2", **row))
    with engine.begin() as conn:  # closed groups (no open key) never collide
        conn.execute(schema.alert_drafts.insert().values(id="drf_3", **{**row, "open_key": None}))
        conn.execute(schema.alert_drafts.insert().values(id="drf_4", **{**row, "open_key": None}))
    engine.dispose()
    Ledger.open(ledger_url).close()
