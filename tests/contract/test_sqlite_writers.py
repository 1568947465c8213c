"""Two processes writing one SQLite ledger: a writer waits for the other's transaction to end
(short polls, not SQLite's sleeping busy handler) and then goes ahead; past the wait it fails
with "database is locked", never silently."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from broadcaster.ledger import engine as ledger_engine


def test_a_writer_waits_for_another_engines_transaction_then_writes(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    first, second = ledger_engine.make_engine(url), ledger_engine.make_engine(url)  # two "processes"
    with first.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    held, released = threading.Event(), threading.Event()

    def hold() -> None:
        with first.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            held.set()
            time.sleep(0.3)
            released.set()

    th = threading.Thread(target=hold)
    th.start()
    held.wait(5)
    with second.begin() as conn:  # blocks until the first commits, then sees its row
        assert released.is_set()
        conn.execute(text("INSERT INTO t VALUES (2)"))
        assert conn.execute(text("SELECT n FROM t ORDER BY n")).scalars().all() == [1, 2]
    th.join()
    first.dispose()
    second.dispose()


def test_past_its_wait_a_writer_fails_with_database_is_locked(tmp_path):
    path = tmp_path / "l.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (n INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, isolation_level=None)
    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        ledger_engine._begin_immediate(waiter, wait=0.2)
    assert time.monotonic() - t0 >= 0.2
    holder.execute("COMMIT")
    ledger_engine._begin_immediate(waiter, wait=0.2)  # free now: at once
    waiter.execute("INSERT INTO t VALUES (1)")
    waiter.execute("COMMIT")
    assert waiter.execute("PRAGMA busy_timeout").fetchone()[0] == int(ledger_engine.WRITE_WAIT * 1000)
