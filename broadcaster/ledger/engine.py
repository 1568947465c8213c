"""Opening the ledger database, and its schema migrations.

SQLite runs in WAL mode with a busy timeout and ``BEGIN IMMEDIATE`` transactions, so API,
worker threads and scheduler can share one file without "database is locked" failures.
PostgreSQL is reached through psycopg 3 with pre-ping, so a restarted server heals by itself.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, event, func, inspect, select, text, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigError
from . import schema

log = logging.getLogger(__name__)

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
        _private_file(Path(parsed.database).expanduser())
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
        cur.execute(f"PRAGMA busy_timeout={int(WRITE_WAIT * 1000)}")
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
            _begin_immediate(conn.connection.driver_connection)
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


#: how long a writer waits for another *process* to let go of the database (the busy timeout)
WRITE_WAIT = 30.0


def _begin_immediate(dbapi_conn, wait: float = WRITE_WAIT) -> None:
    """``BEGIN IMMEDIATE``, waiting for a writer in another process with short polls.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries: when the API and
    a worker both write hundreds of short transactions a second, a waiter keeps sleeping
    through locks held for well under a millisecond (measured: p99 submit → delivered over
    600 ms through the API). Here the first tries come 0.1 ms apart, growing to 2 ms, for
    ``wait`` seconds in all. Only the ``BEGIN`` polls: once it holds the write lock, nothing
    else in a WAL transaction waits for another writer, and reads keep the busy timeout."""
    import sqlite3

    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + wait
        pause = 0.0001
        while True:
            try:
                dbapi_conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(0.002, pause * 2)
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(WRITE_WAIT * 1000)}")  # what reads wait


def _private_file(path: Path) -> None:
    """The ledger holds subscriber addresses and provider receipts: only its owner may read it.
    The file is made 0600 before SQLite opens it (SQLite gives its -wal and -shm files the
    database file's mode); an existing file that every user may read, and its -wal/-shm, lose
    those rights (group rights an operator gave on purpose stay)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            try:
                mode = p.stat().st_mode & 0o777
                if mode & 0o007:
                    p.chmod(mode & 0o770)
                    log.warning("ledger: %s was open to every user of this machine; no longer", p)
            except FileNotFoundError:
                pass
            except PermissionError:
                log.warning("ledger: %s is open to every user of this machine and cannot be changed here", p)


# ---------------------------------------------------------------- migrations


def _v1_initial(conn: Connection) -> None:
    schema.metadata.create_all(conn, tables=[t for t in schema.metadata.sorted_tables if t.name != "schema_version"])


def _v2_once_per_channel(conn: Connection) -> None:
    """At most one delivery per (announcement or update, channel): ``deliveries.once_key`` and
    its UNIQUE index. A ledger created at this version already has both (``_v1_initial`` builds
    today's tables); an older one gets the column filled from its rows first.

    Rows that already repeat a (message, channel) — double posts made before this version — are
    history and stay: the earliest keeps the plain key, each later one gets ``…|dup:<its id>``,
    so the index can be built and nothing new can ever join them."""
    d = schema.deliveries
    if "once_key" not in {c["name"] for c in inspect(conn).get_columns("deliveries")}:
        if conn.dialect.name == "sqlite":  # SQLite adds a NOT NULL column only with a default
            conn.execute(text("ALTER TABLE deliveries ADD COLUMN once_key VARCHAR(200) NOT NULL DEFAULT ''"))
        else:
            conn.execute(text("ALTER TABLE deliveries ADD COLUMN once_key VARCHAR(200)"))
        conn.execute(update(d).values(
            once_key=d.c.announcement_id + "/" + func.coalesce(d.c.update_id, "-") + "/" + d.c.channel))
        if conn.dialect.name != "sqlite":
            conn.execute(text("ALTER TABLE deliveries ALTER COLUMN once_key SET NOT NULL"))
        repeated = conn.execute(select(d.c.once_key).group_by(d.c.once_key).having(func.count() > 1)).scalars().all()
        kept_apart = 0
        for key in repeated:
            later = conn.execute(select(d.c.id).where(d.c.once_key == key)
                                 .order_by(d.c.created_at, d.c.id)).scalars().all()[1:]
            for delivery_id in later:
                conn.execute(update(d).where(d.c.id == delivery_id).values(once_key=f"{key}|dup:{delivery_id}"))
            kept_apart += len(later)
        if kept_apart:
            log.warning("ledger: %d earlier deliveries repeated a (message, channel) — kept as history; "
                        "from now on the ledger refuses such repeats", kept_apart)
    if "ux_deliveries_once" not in {ix["name"] for ix in inspect(conn).get_indexes("deliveries")}:
        next(ix for ix in d.indexes if ix.name == "ux_deliveries_once").create(conn)


def _v3_subscriber_requests(conn: Connection) -> None:
    """``subscribers.requested_at`` and ``confirm_sent_at`` (see ``ledger/subscribers.py``) and an
    index on ``address``. A ledger created at this version has them already (``_v1_initial``)."""
    have = {c["name"] for c in inspect(conn).get_columns("subscribers")}
    for column in ("requested_at", "confirm_sent_at"):
        if column not in have:
            conn.execute(text(f"ALTER TABLE subscribers ADD COLUMN {column} FLOAT"))
    if "requested_at" not in have:  # links of pending rows made before it sign their created_at
        s = schema.subscribers
        conn.execute(update(s).where(s.c.state == "pending").values(requested_at=s.c.created_at))
    if "ix_subscribers_address" not in {ix["name"] for ix in inspect(conn).get_indexes("subscribers")}:
        conn.execute(text("CREATE INDEX ix_subscribers_address ON subscribers (address)"))


def _v4_sms_opt_outs(conn: Connection) -> None:
    """``sms_opt_outs``: numbers that replied STOP (``ledger/opt_outs.py``). A ledger created at
    this version has it already (``_v1_initial``)."""
    schema.sms_opt_outs.create(conn, checkfirst=True)


def _v5_announcement_reach(conn: Connection) -> None:
    """``announcements.allowed_channels``: what the author's token could post to, so a fallback
    never carries an announcement past it (NULL — every older announcement — means no limit)."""
    if "allowed_channels" not in {c["name"] for c in inspect(conn).get_columns("announcements")}:
        kind = schema.announcements.c.allowed_channels.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE announcements ADD COLUMN allowed_channels {kind}"))


def _v6_alert_drafts(conn: Connection) -> None:
    """``alert_drafts``: draft incidents made from inbound alerts (``ledger/drafts.py``)."""
    schema.alert_drafts.create(conn, checkfirst=True)


def _v7_web_sessions(conn: Connection) -> None:
    """The web page's sessions (``ledger/sessions.py``); already there in a ledger created at this version."""
    schema.web_sessions.create(conn, checkfirst=True)


def _v8_channel_readiness(conn: Connection) -> None:
    """``channel_readiness``: each channel's last readiness check (``ledger/readiness.py``)."""
    schema.channel_readiness.create(conn, checkfirst=True)


def _v9_subscriber_endpoints(conn: Connection) -> None:
    """``subscriber_endpoints``: webhooks subscribers brought (``ledger/endpoints.py``)."""
    schema.subscriber_endpoints.create(conn, checkfirst=True)


def _v10_component_states(conn: Connection) -> None:
    """``announcements.component_states``: the state an author chose per component (NULL — every
    older announcement — means each follows the severity)."""
    if "component_states" not in {c["name"] for c in inspect(conn).get_columns("announcements")}:
        kind = schema.announcements.c.component_states.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE announcements ADD COLUMN component_states {kind}"))


def _v11_next_update(conn: Connection) -> None:
    """``announcements.next_update_at`` and ``next_update_reminded``: an incident's promised next
    update and the promise a reminder was sent for (NULL in every older row: nothing promised)."""
    have = {c["name"] for c in inspect(conn).get_columns("announcements")}
    for name in ("next_update_at", "next_update_reminded"):
        if name not in have:
            kind = schema.announcements.c[name].type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE announcements ADD COLUMN {name} {kind}"))
    if "ix_announcements_next_update" not in {i["name"] for i in inspect(conn).get_indexes("announcements")}:
        conn.execute(text("CREATE INDEX ix_announcements_next_update ON announcements (next_update_at)"))


def _v12_unstarted_claims(conn: Connection) -> None:
    """``deliveries.unstarted_by``: a batch-claimed delivery whose send has not started. Rows
    claimed before this version keep NULL, which reads as "may have been sent" — the cautious
    reading, as before."""
    if "unstarted_by" not in {c["name"] for c in inspect(conn).get_columns("deliveries")}:
        conn.execute(text("ALTER TABLE deliveries ADD COLUMN unstarted_by VARCHAR(80)"))


def _v13_update_component_states(conn: Connection) -> None:
    """``updates.component_states``: the states an update set (NULL in every older row: it set
    none, as no update could before this version)."""
    if "component_states" not in {c["name"] for c in inspect(conn).get_columns("updates")}:
        kind = schema.updates.c.component_states.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE updates ADD COLUMN component_states {kind}"))


def _v14_claimable_index(conn: Connection) -> None:
    """``ix_deliveries_claimable``: the due deliveries of a channel in claim order, only those
    that can be claimed (a partial index), so a drain's claim costs its batch, not the backlog."""
    if "ix_deliveries_claimable" not in {i["name"] for i in inspect(conn).get_indexes("deliveries")}:
        conn.execute(text("CREATE INDEX ix_deliveries_claimable ON deliveries (channel, due_at, id) "
                          f"WHERE {schema.CLAIMABLE_SQL}"))


#: (version, description, step). Append only; never edit a released step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _v1_initial),
    (2, "at most one delivery per (announcement or update, channel)", _v2_once_per_channel),
    (3, "subscribers: requested_at, confirm_sent_at", _v3_subscriber_requests),
    (4, "sms_opt_outs: numbers that replied STOP", _v4_sms_opt_outs),
    (5, "announcements remember the channels their author may reach", _v5_announcement_reach),
    (6, "alert_drafts: draft incidents from inbound alerts", _v6_alert_drafts),
    (7, "web page sessions", _v7_web_sessions),
    (8, "channel_readiness: each channel's last readiness check", _v8_channel_readiness),
    (9, "subscriber_endpoints: webhooks subscribers brought", _v9_subscriber_endpoints),
    (10, "announcements: component states chosen by the author", _v10_component_states),
    (11, "announcements: the promised next update and its reminder", _v11_next_update),
    (12, "deliveries: a batch claim's send not yet started", _v12_unstarted_claims),
    (13, "updates: component states an update set", _v13_update_component_states),
    (14, "deliveries: the claimable ones in claim order (partial index)", _v14_claimable_index),
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


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite ledger file that does not exist (opening it would create an empty
    one), else None — for readers such as break-glass that must not create a ledger."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database).expanduser()
    return None if path.exists() else str(path)
