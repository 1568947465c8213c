"""Opening the ledger database, and its schema migrations.

SQLite runs in WAL mode with a busy timeout and ``BEGIN IMMEDIATE`` transactions, so API,
worker threads and scheduler can share one file without "database is locked" failures.
PostgreSQL is reached through psycopg 3 with pre-ping, so a restarted server heals by itself.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigError
from . import schema


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError([("ledger", f"not a database URL: {url!r} (e.g. sqlite:///var/broadcaster.db)")]) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=10,
                                 connect_args={"connect_timeout": 5})
        except ModuleNotFoundError:
            raise ConfigError([("ledger", "PostgreSQL needs psycopg: pip install 'broadcaster[postgres]'")]) from None
    raise ConfigError([("ledger", f"unsupported database {backend!r}: use sqlite:/// or postgresql://")])


def _sqlite_engine(parsed) -> Engine:
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # A pool as large as the threads that use it (the API's thread pool, a worker's -c): SQLite
    # connections are cheap to keep, while opening one costs four PRAGMAs — with the default 5
    # (+10 overflow) a busy API opened and closed connections on most requests.
    engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False},
                           pool_size=40, max_overflow=20, pool_timeout=30)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    # Writers in one process queue on a lock instead of SQLite's busy handler (which sleeps up to
    # 100 ms between polls); readers take a deferred BEGIN and never block anyone in WAL mode.
    write_lock = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get("bc_readonly"):
            conn.exec_driver_sql("BEGIN")
            return
        if not write_lock.acquire(timeout=30):
            import sqlite3

            raise sqlite3.OperationalError("database is locked (waited 30 s for another writer in this process)")
        conn.info["bc_write_lock"] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            conn.info.pop("bc_write_lock", None)
            write_lock.release()
            raise

    def _release(conn):
        if conn.info.pop("bc_write_lock", None):
            write_lock.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)
    return engine


# ---------------------------------------------------------------- migrations


def _v1_initial(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=[t for t in schema.metadata.sorted_tables if t.name != "schema_version"])


#: (version, description, step). Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _v1_initial),
]

LATEST = MIGRATIONS[-1][0]


def current_version(engine: Engine) -> int:
    with engine.connect() as conn:
        if not inspect(conn).has_table("schema_version"):
            return 0
        v = conn.execute(select(schema.schema_version.c.version).order_by(schema.schema_version.c.version.desc())).scalar()
        return int(v or 0)


def migrate(engine: Engine, *, log: Callable[[str], None] | None = None) -> list[int]:
    """Bring the schema to :data:`LATEST`; each step commits with its version row."""
    schema.schema_version.create(engine, checkfirst=True)
    applied = []
    for version, description, step in MIGRATIONS:
        with engine.begin() as conn:
            done = conn.execute(select(schema.schema_version.c.version).where(schema.schema_version.c.version == version)).first()
            if done:
                continue
            step(conn)
            conn.execute(schema.schema_version.insert().values(version=version, applied_at=time.time()))
        applied.append(version)
        if log:
            log(f"migrated ledger to version {version}: {description}")
    return applied
