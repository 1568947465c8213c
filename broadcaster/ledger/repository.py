"""The ledger: the only source of truth for announcements and deliveries.

Every write that changes a delivery's state goes through :meth:`Ledger.transition` or one of
the sweeps, and records a ``delivery_events`` row in the same transaction. Claims are single
conditional UPDATEs, so two workers can never both own a delivery.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.sql.expression import Executable

from ..errors import Conflict, LedgerUnavailable, NotFound
from ..models import (
    CLAIMABLE,
    Announcement,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Receipt,
    Update,
    Window,
)
from . import schema as t
from .archive import LedgerArchive
from .engine import make_engine, migrate
from .idempotency import IdempotencyStore
from .retention import RetentionStore
from .sessions import SessionStore
from .stats import DeliveryStats
from .tokens import TokenRecords
from .windows import WindowStore

S = DeliveryState


_id_lock = threading.Lock()
_id_last = [0, 0]  # (millisecond, sequence within it) of the last id made in this process


def new_id(prefix: str) -> str:
    """Short, time-sortable ids: ``dlv_18c2f0a1b2c0001a3f9c2e1``. Within one process they are
    strictly increasing, so rows written together (an announcement's deliveries, in route
    order) list in the order they were made; the random tail keeps processes apart."""
    ms = int(time.time() * 1000)
    with _id_lock:
        if ms <= _id_last[0]:
            ms, seq = _id_last[0], _id_last[1] + 1
            if seq > 0xFFFF:  # 65,536 ids in one millisecond: borrow the next one
                ms, seq = ms + 1, 0
        else:
            seq = 0
        _id_last[:] = [ms, seq]
    return f"{prefix}_{ms:x}{seq:04x}{secrets.token_hex(4)}"


def _announcement(row: Row) -> Announcement:
    return _announcement_from(row._mapping)


def _announcement_from(m) -> Announcement:
    window = None
    if m["window_starts_at"] is not None and m["window_ends_at"] is not None:
        window = Window(m["window_starts_at"], m["window_ends_at"])
    return Announcement(
        id=m["id"], kind=m["kind"], title=m["title"], body=m["body"] or "", url=m["url"], severity=m["severity"],
        components=tuple(m["components"] or ()), publish_at=m["publish_at"], window=window,
        channels=tuple(m["channels"] or ()), variants=dict(m["variants"] or {}), tags=tuple(m["tags"] or ()),
        status=m["status"], author=m["author"], created_at=m["created_at"], retracted_at=m["retracted_at"],
        allowed_channels=None if m["allowed_channels"] is None else tuple(m["allowed_channels"]),
        component_states=dict(m["component_states"] or {}),
    )


def _update(row: Row) -> Update:
    m = row._mapping
    return Update(id=m["id"], announcement_id=m["announcement_id"], status=m["status"], body=m["body"] or "",
                  title=m["title"], author=m["author"], created_at=m["created_at"])


def _delivery(row: Row) -> Delivery:
    return _delivery_from(row._mapping)


def _delivery_from(m) -> Delivery:
    return Delivery(
        id=m["id"], announcement_id=m["announcement_id"], channel=m["channel"], state=S(m["state"]),
        update_id=m["update_id"], attempts=m["attempts"], due_at=m["due_at"], deadline_at=m["deadline_at"],
        lease_until=m["lease_until"], lease_owner=m["lease_owner"], maybe_sent=bool(m["maybe_sent"]),
        remote_id=m["remote_id"], remote_url=m["remote_url"], receipt=Receipt.from_dict(m["receipt"]),
        last_error=m["last_error"], fallback_of=m["fallback_of"], created_at=m["created_at"],
        updated_at=m["updated_at"], settled_at=m["settled_at"],
    )


# The worker's hot path runs these for every delivery: built once, with the values passed at
# execution (building a statement costs more Python than running it on SQLite).
_D = t.deliveries
_PEEK = select(_D.c.state, _D.c.due_at, _D.c.announcement_id).where(_D.c.id == bindparam("b_id"))
_ANNOUNCEMENT = select(t.announcements).where(t.announcements.c.id == bindparam("b_id"))
_CLAIM = update(_D).where(
    _D.c.id == bindparam("b_id"), _D.c.state == bindparam("b_state"),
    or_(_D.c.due_at.is_(None), _D.c.due_at <= bindparam("b_due")),
).returning(*_D.c)
_SETTLE_LEASED = update(_D).where(_D.c.id == bindparam("b_id"), _D.c.lease_owner == bindparam("b_owner"),
                                  _D.c.state == str(S.SENDING))
_INSERT_EVENT = insert(t.delivery_events)
# a drain's batch claim (Ledger.claim_batch): the due rows of one channel, oldest first
_CLAIMABLE_NAMES = [str(s) for s in CLAIMABLE]
_DUE_OF_CHANNEL = select(_D.c.id, _D.c.state, _D.c.announcement_id).where(
    _D.c.channel == bindparam("b_channel"), _D.c.state.in_(_CLAIMABLE_NAMES),
    or_(_D.c.due_at.is_(None), _D.c.due_at <= bindparam("b_due")),
).order_by(_D.c.due_at, _D.c.id).limit(bindparam("b_limit"))
_CLAIM_IDS = update(_D).where(_D.c.id.in_(bindparam("b_ids", expanding=True)), _D.c.state == bindparam("b_state"),
                              or_(_D.c.due_at.is_(None), _D.c.due_at <= bindparam("b_due"))).returning(*_D.c)
_PICKED = _DUE_OF_CHANNEL.with_for_update(skip_locked=True).cte("picked")
_CLAIM_BATCH_PG = (update(_D).where(_D.c.id == _PICKED.c.id, _D.c.state.in_(_CLAIMABLE_NAMES))
                   .returning(*_D.c, _PICKED.c.state.label("b_prev_state")))
_ANNOUNCEMENTS = select(t.announcements).where(t.announcements.c.id.in_(bindparam("b_ids", expanding=True)))


class Accepted(NamedTuple):
    """What :meth:`Ledger.accept` wrote (or found, for a replayed Idempotency-Key)."""

    created: bool
    announcement: Announcement
    deliveries: list[Delivery]
    events: dict[str, list[DeliveryEvent]]
    updates: tuple[Update, ...] | list[Update] = ()


class Ledger:
    def __init__(self, engine: Engine, *, clock=time.time):
        self.engine = engine
        # Readers: on SQLite a deferred BEGIN (no write lock); on PostgreSQL autocommit, which
        # saves the BEGIN and ROLLBACK round trips and loses nothing — under READ COMMITTED
        # every statement takes its own snapshot, inside a transaction or not.
        opts: dict[str, Any] = {"bc_readonly": True}
        if engine.dialect.name == "postgresql":
            opts["isolation_level"] = "AUTOCOMMIT"
        self._reader = engine.execution_options(**opts)
        self.clock = clock
        #: client idempotency keys of every POST (one store; see ledger/idempotency.py)
        self.idempotency = IdempotencyStore(self)
        #: forgetting old history (see ledger/retention.py)
        self.retention = RetentionStore(self)
        #: maintenance windows' due steps and quiet status moves (see ledger/windows.py)
        self.windows = WindowStore(self)
        #: aggregates for /metrics (see ledger/stats.py)
        self.stats = DeliveryStats(self)
        #: API tokens' rows, hashes only (see ledger/tokens.py)
        self.tokens = TokenRecords(self)
        #: the web page's signed-in browsers (see ledger/sessions.py)
        self.sessions = SessionStore(self)
        #: every row as records, and a restore into an empty ledger (see ledger/archive.py)
        self.archive = LedgerArchive(self)

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, clock=time.time) -> Ledger:
        engine = make_engine(url)
        ledger = cls(engine, clock=clock)
        if migrate_schema:
            with ledger._unavailable_as_error():
                migrate(engine)
        return ledger

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _unavailable_as_error(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, IntegrityError):
                raise
            if getattr(exc, "connection_invalidated", False) or isinstance(exc, OperationalError):
                raise LedgerUnavailable(f"the ledger database is unavailable ({type(exc.orig).__name__})") from exc
            raise

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self._unavailable_as_error(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._unavailable_as_error(), self._reader.connect() as conn:
            yield conn

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(select(1))

    # ------------------------------------------------------------ events and audit

    def _event(self, conn: Connection, delivery_id: str, frm: str | None, to: str, attempt: int, reason: str,
               response: str | None = None, at: float | None = None) -> None:
        conn.execute(_INSERT_EVENT, {
            "delivery_id": delivery_id, "at": self.clock() if at is None else at, "from_state": frm, "to_state": to,
            "attempt": attempt, "reason": reason[:2000], "response": (response or None) and response[:1000]})

    def audit(self, actor: str, action: str, target: str | None = None, details: dict | None = None,
              conn: Connection | None = None) -> None:
        stmt = insert(t.audit_log).values(at=self.clock(), actor=actor, action=action, target=target, details=details or {})
        if conn is not None:
            conn.execute(stmt)
        else:
            with self.tx() as c:
                c.execute(stmt)

    def audit_entries(self, *, limit: int = 100, since_id: int = 0) -> list[dict]:
        with self.read() as conn:
            rows = conn.execute(select(t.audit_log).where(t.audit_log.c.id > since_id).order_by(t.audit_log.c.id).limit(limit))
            return [dict(r._mapping) for r in rows]

    # ------------------------------------------------------------ announcements

    def create_announcement(
        self,
        fields: dict[str, Any],
        deliveries: list[dict[str, Any]],
        *,
        actor: str,
        idempotency: tuple[str, str, str] | None = None,
    ) -> tuple[str, bool]:
        """:meth:`accept`, for callers that need only ``(id, created)``."""
        res = self.accept(fields, deliveries, actor=actor, idempotency=idempotency)
        return res.announcement.id, res.created

    def accept(
        self,
        fields: dict[str, Any],
        deliveries: list[dict[str, Any]],
        *,
        actor: str,
        idempotency: tuple[str, str, str] | None = None,
    ) -> Accepted:
        """Write an announcement and its deliveries in one transaction, and return what was
        written without reading it back (the intake answers from this).

        ``idempotency`` is ``(scope, key, request_hash)``; a replay of the same key and body
        returns the first announcement as it is now, with ``created=False``.
        """
        now = self.clock()
        if idempotency:
            existing = self._replay(*idempotency)
            if existing:
                return self._accepted_before(existing)
        values = {c.name: None for c in t.announcements.c} | dict(fields)
        ann_id = values["id"] = values.get("id") or new_id("ann")
        values.update(created_at=now, updated_at=now, author=actor)
        try:
            with self.tx() as conn:
                if idempotency:
                    scope, key, digest = idempotency
                    self.idempotency.remember(scope, key, digest, target_id=ann_id, conn=conn)
                conn.execute(insert(t.announcements).values(**{k: v for k, v in values.items() if v is not None}))
                rows, events = self._insert_deliveries(conn, ann_id, None, deliveries, now)
                self.audit(actor, "announcement.create", ann_id, {"kind": fields.get("kind"),
                                                                  "channels": [d["channel"] for d in deliveries]}, conn)
        except IntegrityError:
            if idempotency:
                existing = self._replay(*idempotency)
                if existing:
                    return self._accepted_before(existing)
            raise
        blank = {c.name: None for c in t.deliveries.c}
        dels = [_delivery_from(blank | r) for r in rows]
        return Accepted(True, _announcement_from(values), dels,
                        {d.id: [DeliveryEvent(**e)] for d, e in zip(dels, events, strict=False)})

    def _accepted_before(self, ann_id: str) -> Accepted:
        ann, updates, dels, events = self.snapshot(ann_id)
        return Accepted(False, ann, dels, events, updates)

    def _replay(self, scope: str, key: str, digest: str) -> str | None:
        """The id an earlier request with this key created, None for a new key."""
        found = self.idempotency.recall(scope, key, digest)
        return found.target_id if found else None

    def _insert_deliveries(self, conn: Connection, ann_id: str, update_id: str | None, deliveries: list[dict],
                           now: float) -> tuple[list[dict], list[dict]]:
        """Two statements whatever the number of channels (rows, then their first events);
        returns both as inserted. For a message that has no deliveries yet (a new announcement
        or update): a channel named twice is a caller's bug, refused before the database's
        unique key would refuse it less clearly."""
        if not deliveries:
            return [], []
        channels = [d["channel"] for d in deliveries]
        if len(set(channels)) != len(channels):
            twice = sorted({c for c in channels if channels.count(c) > 1})
            raise ValueError(f"a message gets at most one delivery per channel; named twice: {', '.join(twice)}")
        rows, events = [], []
        for d in deliveries:
            row, event = self._delivery_row(ann_id, update_id, d, now)
            rows.append(row)
            events.append(event)
        conn.execute(insert(t.deliveries), rows)
        conn.execute(insert(t.delivery_events), events)
        return rows, events

    @staticmethod
    def _delivery_row(ann_id: str, update_id: str | None, d: dict, now: float) -> tuple[dict, dict]:
        did = d.get("id") or new_id("dlv")
        state = str(d.get("state", S.PENDING))
        row = {"id": did, "announcement_id": ann_id, "update_id": update_id, "channel": d["channel"],
               "state": state, "attempts": 0, "due_at": d.get("due_at", now), "deadline_at": d.get("deadline_at"),
               "maybe_sent": False, "fallback_of": d.get("fallback_of"), "created_at": now, "updated_at": now,
               "once_key": t.once_key(ann_id, update_id, d["channel"])}
        event = {"delivery_id": did, "at": now, "from_state": None, "to_state": state, "attempt": 0,
                 "reason": d.get("reason", "accepted")[:2000], "response": None}
        return row, event

    def _insert_fallbacks(self, conn: Connection, ann_id: str, update_id: str | None, fallbacks: list[dict],
                          now: float) -> dict[str, Delivery]:
        """Add fallback deliveries for a message, except on channels that already have one (routed
        there directly, or an earlier fallback): the unique key decides, so a racing writer on
        PostgreSQL loses quietly too (``ON CONFLICT DO NOTHING``). Returns the channels skipped,
        each with the delivery that already carries the message there."""
        d = t.deliveries

        def holders(channels: list[str]) -> dict[str, Delivery]:
            keys = [t.once_key(ann_id, update_id, ch) for ch in channels]
            return {r.channel: _delivery(r) for r in conn.execute(select(d).where(d.c.once_key.in_(keys)))}

        already = holders(list(dict.fromkeys(f["channel"] for f in fallbacks)))
        made: set[str] = set()
        insert_once = self._insert_once_statement()
        for f in fallbacks:
            if f["channel"] in already or f["channel"] in made:
                continue
            row, event = self._delivery_row(ann_id, update_id, f, now)
            if conn.execute(insert_once, row).first() is None:  # a concurrent writer made it meanwhile
                already.update(holders([f["channel"]]))
                continue
            made.add(f["channel"])
            conn.execute(_INSERT_EVENT, event)
        return already

    def _insert_once_statement(self) -> Executable:
        """``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (the same words on SQLite and
        PostgreSQL), built once per ledger."""
        stmt: Executable | None = self.__dict__.get("_insert_once")
        if stmt is None:
            from sqlalchemy.dialects import postgresql, sqlite

            if self.engine.dialect.name == "postgresql":
                stmt = postgresql.insert(t.deliveries).on_conflict_do_nothing().returning(t.deliveries.c.id)
            else:
                stmt = sqlite.insert(t.deliveries).on_conflict_do_nothing().returning(t.deliveries.c.id)
            self._insert_once = stmt
        return stmt

    def get_announcement(self, ann_id: str) -> Announcement:
        with self.read() as conn:
            row = conn.execute(select(t.announcements).where(t.announcements.c.id == ann_id)).first()
        if row is None:
            raise NotFound(f"no announcement {ann_id!r}")
        return _announcement(row)

    def list_announcements(self, *, kind: str | None = None, status: str | None = None, state: str | None = None,
                           since: float | None = None, until: float | None = None, before: str | None = None,
                           open_only: bool = False, limit: int = 50) -> list[Announcement]:
        a = t.announcements
        q = select(a).order_by(a.c.created_at.desc(), a.c.id.desc()).limit(limit)
        if kind:
            q = q.where(a.c.kind == kind)
        if status:
            q = q.where(a.c.status == status)
        if since is not None:
            q = q.where(a.c.created_at >= since)
        if until is not None:
            q = q.where(a.c.created_at < until)
        if open_only:
            q = q.where(a.c.resolved_at.is_(None), a.c.retracted_at.is_(None))
        if before:
            with self.read() as conn:
                cursor = conn.execute(select(a.c.created_at).where(a.c.id == before)).scalar()
            if cursor is None:
                q = q.where(a.c.id < before)
            else:  # the same order as the listing: (created_at, id) descending
                q = q.where(or_(a.c.created_at < cursor, and_(a.c.created_at == cursor, a.c.id < before)))
        if state:
            q = q.where(a.c.id.in_(select(t.deliveries.c.announcement_id).where(t.deliveries.c.state == state)))
        with self.read() as conn:
            return [_announcement(r) for r in conn.execute(q)]

    def set_announcement(self, ann_id: str, conn: Connection | None = None, **values: Any) -> None:
        stmt = update(t.announcements).where(t.announcements.c.id == ann_id).values(updated_at=self.clock(), **values)
        if conn is not None:
            conn.execute(stmt)
        else:
            with self.tx() as c:
                c.execute(stmt)

    def add_update(self, ann_id: str, fields: dict[str, Any], deliveries: list[dict], *, actor: str,
                   announcement_values: dict | None = None,
                   idempotency: tuple[str, str, str] | None = None) -> tuple[str, bool]:
        if idempotency:
            existing = self._replay(*idempotency)
            if existing:
                return existing, False
        now = self.clock()
        upd_id = new_id("upd")
        try:
            with self.tx() as conn:
                if idempotency:
                    scope, key, digest = idempotency
                    self.idempotency.remember(scope, key, digest, target_id=upd_id, conn=conn)
                conn.execute(insert(t.updates).values(id=upd_id, announcement_id=ann_id, created_at=now,
                                                      author=actor, **fields))
                if announcement_values:
                    self.set_announcement(ann_id, conn, **announcement_values)
                self._insert_deliveries(conn, ann_id, upd_id, deliveries, now)
                self.audit(actor, "announcement.update", ann_id, {"update": upd_id, "status": fields.get("status")},
                           conn)
        except IntegrityError:
            # a concurrent request with the same key committed first: answer as it did
            existing = self._replay(*idempotency) if idempotency else None
            if existing:
                return existing, False
            raise Conflict(f"announcement {ann_id} changed while this update was being written; try again") from None
        return upd_id, True

    def updates_of(self, ann_id: str) -> list[Update]:
        with self.read() as conn:
            rows = conn.execute(select(t.updates).where(t.updates.c.announcement_id == ann_id).order_by(t.updates.c.created_at, t.updates.c.id))
            return [_update(r) for r in rows]

    def get_update(self, upd_id: str) -> Update:
        with self.read() as conn:
            row = conn.execute(select(t.updates).where(t.updates.c.id == upd_id)).first()
        if row is None:
            raise NotFound(f"no update {upd_id!r}")
        return _update(row)

    # ------------------------------------------------------------ deliveries: reading

    def get_delivery(self, delivery_id: str) -> Delivery:
        with self.read() as conn:
            row = conn.execute(select(t.deliveries).where(t.deliveries.c.id == delivery_id)).first()
        if row is None:
            raise NotFound(f"no delivery {delivery_id!r}")
        return _delivery(row)

    def deliveries_of(self, ann_id: str) -> list[Delivery]:
        with self.read() as conn:
            rows = conn.execute(select(t.deliveries).where(t.deliveries.c.announcement_id == ann_id)
                                .order_by(t.deliveries.c.created_at, t.deliveries.c.id))
            return [_delivery(r) for r in rows]

    def deliveries_for(self, ann_ids: list[str]) -> dict[str, list[Delivery]]:
        out: dict[str, list[Delivery]] = {a: [] for a in ann_ids}
        if not ann_ids:
            return out
        with self.read() as conn:
            rows = conn.execute(select(t.deliveries).where(t.deliveries.c.announcement_id.in_(ann_ids))
                                .order_by(t.deliveries.c.created_at, t.deliveries.c.id))
            for r in rows:
                out[r.announcement_id].append(_delivery(r))
        return out

    def events_of(self, delivery_id: str) -> list[DeliveryEvent]:
        with self.read() as conn:
            rows = conn.execute(select(t.delivery_events).where(t.delivery_events.c.delivery_id == delivery_id)
                                .order_by(t.delivery_events.c.id))
            return [DeliveryEvent(r.delivery_id, r.at, r.from_state, r.to_state, r.attempt, r.reason, r.response) for r in rows]

    def snapshot(self, ann_id: str) -> tuple[Announcement, list[Update], list[Delivery], dict[str, list[DeliveryEvent]]]:
        """An announcement with its updates, deliveries and their events: one connection, four
        queries, whatever the number of channels (what the API, CLI and web page show)."""
        d, e = t.deliveries, t.delivery_events
        with self.read() as conn:
            row = conn.execute(select(t.announcements).where(t.announcements.c.id == ann_id)).first()
            if row is None:
                raise NotFound(f"no announcement {ann_id!r}")
            upds = [_update(r) for r in conn.execute(select(t.updates).where(t.updates.c.announcement_id == ann_id)
                                                     .order_by(t.updates.c.created_at, t.updates.c.id))]
            dels = [_delivery(r) for r in conn.execute(select(d).where(d.c.announcement_id == ann_id)
                                                       .order_by(d.c.created_at, d.c.id))]
            events: dict[str, list[DeliveryEvent]] = {x.id: [] for x in dels}
            if dels:
                q = select(e).where(e.c.delivery_id.in_(select(d.c.id).where(d.c.announcement_id == ann_id))).order_by(e.c.id)
                for r in conn.execute(q):
                    events.setdefault(r.delivery_id, []).append(
                        DeliveryEvent(r.delivery_id, r.at, r.from_state, r.to_state, r.attempt, r.reason, r.response))
        return _announcement(row), upds, dels, events

    def thread_receipts(self, ann_id: str, channel: str, before: float | None = None) -> list[Receipt]:
        """Receipts of delivered posts of this announcement on this channel, oldest first."""
        d = t.deliveries
        q = select(d.c.receipt, d.c.remote_id, d.c.remote_url).where(
            d.c.announcement_id == ann_id, d.c.channel == channel, d.c.state == str(S.DELIVERED)
        ).order_by(d.c.created_at, d.c.id)
        if before is not None:
            q = q.where(d.c.created_at <= before)
        with self.read() as conn:
            out = []
            for r in conn.execute(q):
                rec = Receipt.from_dict(r.receipt) or Receipt(remote_id=r.remote_id, url=r.remote_url)
                out.append(rec)
            return out

    def channel_stats(self) -> dict[str, dict[str, Any]]:
        """Per channel: backlog (active deliveries), last success, counts by state."""
        d = t.deliveries
        stats: dict[str, dict[str, Any]] = {}
        with self.read() as conn:
            for r in conn.execute(select(d.c.channel, d.c.state, func.count()).group_by(d.c.channel, d.c.state)):
                s = stats.setdefault(r[0], {"states": {}, "backlog": 0, "last_success": None, "oldest_due": None})
                s["states"][r[1]] = r[2]
                if r[1] in ("pending", "retrying", "sending"):
                    s["backlog"] += r[2]
            for r in conn.execute(select(d.c.channel, func.max(d.c.settled_at)).where(d.c.state == "delivered").group_by(d.c.channel)):
                stats.setdefault(r[0], {"states": {}, "backlog": 0, "last_success": None, "oldest_due": None})["last_success"] = r[1]
            for r in conn.execute(select(d.c.channel, func.min(d.c.due_at)).where(d.c.state.in_(["pending", "retrying"])).group_by(d.c.channel)):
                stats.setdefault(r[0], {"states": {}, "backlog": 0, "last_success": None, "oldest_due": None})["oldest_due"] = r[1]
        return stats

    def count_by_state(self) -> dict[str, int]:
        with self.read() as conn:
            return {r[0]: r[1] for r in conn.execute(select(t.deliveries.c.state, func.count()).group_by(t.deliveries.c.state))}

    # ------------------------------------------------------------ deliveries: the worker's writes

    def claim(self, delivery_id: str, owner: str, lease: float) -> Delivery | None:
        """pending/retrying and due → sending, leased to ``owner``. None if someone else has it,
        it is settled, or it is not yet due."""
        got = self.claim_with_announcement(delivery_id, owner, lease)
        return got and got[0]

    def claim_with_announcement(self, delivery_id: str, owner: str,
                                lease: float) -> tuple[Delivery, Announcement] | None:
        """:meth:`claim`, also returning the announcement as read just before the claim.

        One read (the row's state, and its announcement, without the write lock: duplicate and
        late tasks stop here) and one write of two statements: a conditional ``UPDATE …
        RETURNING`` that only succeeds if the row is still in the state that was read, and its
        event."""
        now = self.clock()
        with self.read() as conn:
            peek = conn.execute(_PEEK, {"b_id": delivery_id}).first()
            if peek is None or S(peek.state) not in CLAIMABLE or (peek.due_at is not None and peek.due_at > now + 0.05):
                return None
            ann_row = conn.execute(_ANNOUNCEMENT, {"b_id": peek.announcement_id}).first()
        if ann_row is None:  # the foreign key forbids it; a claim without its announcement cannot proceed
            return None
        with self.tx() as conn:
            fresh = conn.execute(_CLAIM, {"b_id": delivery_id, "b_state": peek.state, "b_due": now + 0.05,
                                          "state": str(S.SENDING), "lease_owner": owner, "lease_until": now + lease,
                                          "updated_at": now}).first()
            if fresh is None:
                return None
            self._event(conn, delivery_id, peek.state, str(S.SENDING), fresh.attempts + 1, f"claimed by {owner}", at=now)
        return _delivery(fresh), _announcement(ann_row)

    def claim_batch(self, channel: str, owner: str, lease: float,
                    limit: int) -> list[tuple[Delivery, Announcement]]:
        """Claim up to ``limit`` due deliveries of ``channel`` for ``owner`` at once, each with its
        own lease (``sending``, ``lease_owner``, ``lease_until``) and its own claim event, and
        return them with their announcements — oldest due first.

        PostgreSQL: ONE conditional statement, ``WITH picked AS (SELECT … FOR UPDATE SKIP
        LOCKED LIMIT n) UPDATE … FROM picked … RETURNING``: rows another worker is claiming
        are skipped, never waited for nor taken twice. SQLite: a lock-free read of the due rows,
        then, under its one writer (``BEGIN IMMEDIATE``), ``UPDATE … WHERE id IN (…) AND state =
        <the state read> AND due … RETURNING`` — a row another worker took meanwhile is simply
        not returned. Either way a row is claimed by one owner only, and everything after the
        claim is per delivery, exactly as for :meth:`claim`."""
        if limit < 1:
            return []
        now = self.clock()
        params = {"b_channel": channel, "b_due": now + 0.05, "b_limit": limit, "state": str(S.SENDING),
                  "lease_owner": owner, "lease_until": now + lease, "updated_at": now}
        if self.engine.dialect.name == "postgresql":
            with self.tx() as conn:
                picked = [(r, r.b_prev_state) for r in conn.execute(_CLAIM_BATCH_PG, params).all()]
                return self._claimed(conn, picked, owner, now)
        # SQLite: as claim_with_announcement, one lock-free read (the due rows, their states and
        # announcements: a drain that finds nothing takes no write lock), then per state read one
        # conditional UPDATE … WHERE id IN (…) AND state = <read> AND due, under the one writer
        with self.read() as conn:
            due = conn.execute(_DUE_OF_CHANNEL, params).all()
            if not due:
                return []
            anns = self._announcements_of(conn, {r.announcement_id for r in due})
        with self.tx() as conn:
            rows: list[tuple[Row, str]] = []
            for state in sorted({r.state for r in due}):
                ids = [r.id for r in due if r.state == state]
                rows += [(r, state) for r in conn.execute(_CLAIM_IDS, {**params, "b_ids": ids, "b_state": state})]
            return self._claimed(conn, rows, owner, now, anns)

    @staticmethod
    def _announcements_of(conn: Connection, ids: Iterable[str]) -> dict[str, Announcement]:
        return {a.id: _announcement(a) for a in conn.execute(_ANNOUNCEMENTS, {"b_ids": list(ids)}).all()}

    def _claimed(self, conn: Connection, rows: list[tuple[Row, str]], owner: str, now: float,
                 anns: dict[str, Announcement] | None = None) -> list[tuple[Delivery, Announcement]]:
        """The claim events of a batch (one executemany) and the claimed rows with their
        announcements, oldest due first."""
        if not rows:
            return []
        conn.execute(_INSERT_EVENT, [
            {"delivery_id": r.id, "at": now, "from_state": prev, "to_state": str(S.SENDING),
             "attempt": r.attempts + 1, "reason": f"claimed by {owner} (batch of {len(rows)})", "response": None}
            for r, prev in rows])
        if anns is None:
            anns = self._announcements_of(conn, {r.announcement_id for r, _ in rows})
        out = [(_delivery_from(r._mapping), anns[r.announcement_id]) for r, _ in rows]
        out.sort(key=lambda x: (x[0].due_at or 0.0, x[0].id))
        return out

    def extend_lease(self, delivery_id: str, owner: str, lease: float) -> bool:
        now = self.clock()
        d = t.deliveries
        with self.tx() as conn:
            res = conn.execute(update(d).where(d.c.id == delivery_id, d.c.lease_owner == owner, d.c.state == str(S.SENDING))
                               .values(lease_until=now + lease))
            return res.rowcount == 1

    def transition(
        self,
        delivery: Delivery,
        to: DeliveryState,
        reason: str,
        *,
        owner: str | None = None,
        attempted: bool = False,
        due_at: float | None = None,
        receipt: Receipt | None = None,
        response: str | None = None,
        error: str | None = None,
        maybe_sent: bool | None = None,
        fallbacks: list[dict] | None = None,
    ) -> bool:
        """Move ``delivery`` to ``to`` and log it. With ``owner``, only if that worker still holds
        the lease (a worker whose lease expired must not overwrite a newer outcome).

        ``fallbacks`` become new deliveries of the same message in the same transaction — except
        on a channel that already has this message, which the event's reason then names (with
        the delivery that carries it) instead of posting it twice."""
        with self.tx() as conn:
            return self._record(conn, delivery, to, reason, self.clock(), owner=owner, attempted=attempted,
                                due_at=due_at, receipt=receipt, response=response, error=error,
                                maybe_sent=maybe_sent, fallbacks=fallbacks)

    def transition_many(self, outcomes: list[tuple[Delivery, DeliveryState, str, dict[str, Any]]], *,
                        owner: str) -> list[bool]:
        """Record several outcomes of one worker's batch in ONE transaction: each
        ``(delivery, to, reason, options)`` exactly as :meth:`transition` with ``owner`` would
        (``options`` are its keyword arguments), each conditional on this owner still holding
        that delivery's lease. Returns, per outcome, whether it was recorded."""
        if not outcomes:
            return []
        now = self.clock()
        with self.tx() as conn:
            return [self._record(conn, d, to, reason, now, owner=owner, **opts) for d, to, reason, opts in outcomes]

    def _record(self, conn: Connection, delivery: Delivery, to: DeliveryState, reason: str, now: float, *,
                owner: str | None = None, attempted: bool = False, due_at: float | None = None,
                receipt: Receipt | None = None, response: str | None = None, error: str | None = None,
                maybe_sent: bool | None = None, fallbacks: list[dict] | None = None) -> bool:
        d = t.deliveries
        values: dict[str, Any] = {"state": str(to), "updated_at": now, "lease_owner": None, "lease_until": None}
        if attempted:
            # under our lease nobody else changes the row, so the count is known here
            values["attempts"] = delivery.attempts + 1 if owner is not None else d.c.attempts + 1
        if due_at is not None:
            values["due_at"] = due_at
            values["enqueued_at"] = None
        if receipt is not None:
            values.update(receipt=receipt.to_dict(), remote_id=receipt.remote_id, remote_url=receipt.url)
        if error is not None:
            values["last_error"] = error[:2000]
        if maybe_sent is not None:
            values["maybe_sent"] = maybe_sent
        if to in (S.DELIVERED, S.FAILED, S.FALLEN_BACK, S.UNKNOWN, S.CANCELLED, S.RETRACTED):
            values["settled_at"] = now
        if owner is not None:
            res = conn.execute(_SETTLE_LEASED, {"b_id": delivery.id, "b_owner": owner, **values})
        else:
            res = conn.execute(update(d).where(d.c.id == delivery.id).values(**values))
        if res.rowcount != 1:
            return False
        attempt = delivery.attempts + (1 if attempted else 0)
        if fallbacks:
            already = self._insert_fallbacks(conn, delivery.announcement_id, delivery.update_id, fallbacks, now)
            reason += "".join(f"; fallback {ch} already has it ({x.id}, {x.state}): not sent again"
                              for ch, x in already.items())
        self._event(conn, delivery.id, str(delivery.state), str(to), attempt, reason, response, at=now)
        return True

    def force(self, delivery_id: str, to: DeliveryState, reason: str, *, actor: str, from_states: Iterable[DeliveryState],
              due_at: float | None = None, maybe_sent: bool | None = None, deadline_at: float | None = None,
              remote_url: str | None = None, note: str | None = None, set_note: bool = False) -> bool:
        """Operator actions (retry, cancel, retract-mark, confirm): move only from ``from_states``.
        It changes the one row in place: no operator action ever adds a delivery. With
        ``set_note`` the row's ``last_error`` becomes ``note`` (None clears it): a retraction says
        there whether the post is still visible."""
        now = self.clock()
        d = t.deliveries
        values: dict[str, Any] = {"state": str(to), "updated_at": now, "lease_owner": None, "lease_until": None}
        if due_at is not None:
            values.update(due_at=due_at, enqueued_at=None)
        if maybe_sent is not None:
            values["maybe_sent"] = maybe_sent
        if deadline_at is not None:
            values["deadline_at"] = deadline_at
        if remote_url is not None:
            values["remote_url"] = remote_url
        if set_note:
            values["last_error"] = note
        if to in (S.CANCELLED, S.RETRACTED, S.DELIVERED):
            values["settled_at"] = now
        elif to in (S.PENDING, S.RETRYING):
            values["settled_at"] = None
        with self.tx() as conn:
            row = conn.execute(select(d.c.state, d.c.attempts).where(d.c.id == delivery_id)).first()
            if row is None:
                raise NotFound(f"no delivery {delivery_id!r}")
            res = conn.execute(update(d).where(d.c.id == delivery_id, d.c.state.in_([str(s) for s in from_states])).values(**values))
            if res.rowcount != 1:
                return False
            self._event(conn, delivery_id, row.state, str(to), row.attempts, f"{reason} (by {actor})", at=now)
        return True

    def release(self, delivery: Delivery, owner: str, to: DeliveryState, due_at: float, reason: str) -> bool:
        """Give a claimed delivery back without an attempt (rate limit, breaker open)."""
        return self.transition(delivery, to, reason, owner=owner, due_at=due_at)

    # ------------------------------------------------------------ sweeps (the scheduler's writes)

    def take_due(self, requeue_after: float, limit: int = 500) -> list[tuple[str, str, float]]:
        """Claimable deliveries that are due and not recently enqueued; marks them enqueued.
        Returns ``(delivery_id, channel, due_at)``."""
        now = self.clock()
        d = t.deliveries
        with self.tx() as conn:
            rows = conn.execute(select(d.c.id, d.c.channel, d.c.due_at).where(
                d.c.state.in_([str(s) for s in CLAIMABLE]),
                or_(d.c.due_at.is_(None), d.c.due_at <= now),
                or_(d.c.enqueued_at.is_(None), d.c.enqueued_at < now - requeue_after),
            ).order_by(d.c.due_at).limit(limit)).all()
            if rows:
                conn.execute(update(d).where(d.c.id.in_([r.id for r in rows])).values(enqueued_at=now))
        return [(r.id, r.channel, r.due_at or now) for r in rows]

    def forget_enqueued(self) -> int:
        """The broker lost its queues (e.g. Redis restarted empty): every waiting delivery counts as
        never enqueued, so the next sweep sends it again at once."""
        d = t.deliveries
        with self.tx() as conn:
            return conn.execute(update(d).where(d.c.state.in_([str(s) for s in CLAIMABLE]), d.c.enqueued_at.is_not(None))
                                .values(enqueued_at=None)).rowcount

    def mark_enqueued(self, delivery_ids: list[str]) -> None:
        if not delivery_ids:
            return
        with self.tx() as conn:
            conn.execute(update(t.deliveries).where(t.deliveries.c.id.in_(delivery_ids)).values(enqueued_at=self.clock()))

    def expire_leases(self) -> list[str]:
        """sending past its lease → retrying with ``maybe_sent`` (the worker died mid-send)."""
        now = self.clock()
        d = t.deliveries
        with self.tx() as conn:
            rows = conn.execute(select(d.c.id, d.c.attempts, d.c.lease_owner).where(
                d.c.state == str(S.SENDING), d.c.lease_until < now)).all()
            for r in rows:
                res = conn.execute(update(d).where(d.c.id == r.id, d.c.state == str(S.SENDING), d.c.lease_until < now).values(
                    state=str(S.RETRYING), maybe_sent=True, lease_owner=None, lease_until=None, due_at=now,
                    enqueued_at=None, updated_at=now, attempts=d.c.attempts + 1))
                if res.rowcount == 1:
                    self._event(conn, r.id, str(S.SENDING), str(S.RETRYING), r.attempts + 1,
                                f"lease of {r.lease_owner} expired: worker lost mid-send; outcome will be checked", at=now)
        return [r.id for r in rows]

    def promote_scheduled(self, *, hold_kinds: Iterable[str] = (), limit: int = 500) -> list[str]:
        """scheduled and due → pending, except kinds held while an incident is open."""
        now = self.clock()
        d, a = t.deliveries, t.announcements
        with self.tx() as conn:
            q = select(d.c.id, d.c.attempts).where(d.c.state == str(S.SCHEDULED), d.c.due_at <= now).limit(limit)
            hold = list(hold_kinds)
            if hold:
                q = q.where(d.c.announcement_id.in_(select(a.c.id).where(a.c.kind.not_in(hold))))
            rows = conn.execute(q).all()
            for r in rows:
                conn.execute(update(d).where(d.c.id == r.id, d.c.state == str(S.SCHEDULED))
                             .values(state=str(S.PENDING), updated_at=now, enqueued_at=None))
                self._event(conn, r.id, str(S.SCHEDULED), str(S.PENDING), r.attempts, "publish time reached", at=now)
        return [r.id for r in rows]

    def open_incidents(self) -> int:
        a = t.announcements
        with self.read() as conn:
            return conn.execute(select(func.count()).select_from(a).where(
                a.c.kind == "incident", a.c.resolved_at.is_(None), a.c.retracted_at.is_(None),
                a.c.status != "resolved")).scalar() or 0

    # ------------------------------------------------------------ per-item progress

    def item_states(self, delivery_id: str) -> dict[str, tuple[str, str | None]]:
        with self.read() as conn:
            rows = conn.execute(select(t.delivery_items.c.item, t.delivery_items.c.state, t.delivery_items.c.detail)
                                .where(t.delivery_items.c.delivery_id == delivery_id))
            return {r.item: (r.state, r.detail) for r in rows}

    def mark_items(self, delivery_id: str, items: Iterable[str], state: str, detail: str | None = None) -> None:
        self.mark_items_and_extend(delivery_id, None, [(items, state, detail)])

    def mark_items_and_extend(self, delivery_id: str, owner: str | None,
                              marks: Iterable[tuple[Iterable[str], str, str | None]],
                              lease: float | None = None) -> bool | None:
        """Record item marks ``(items, state, detail)`` — later marks of an item win, as if written
        one after another — and, when ``lease`` is given, renew ``owner``'s lease on the delivery
        (as :meth:`extend_lease`), all in ONE transaction. Returns whether the lease was renewed,
        or None when no renewal was asked for.

        Items are upserted with one executemany of ``INSERT … ON CONFLICT (delivery_id, item) DO
        UPDATE`` — the same statement and outcome on SQLite and PostgreSQL (any other database:
        look up, then update or insert). The statements are built once per ledger: per-recipient
        progress of a large mailing calls this once per message."""
        now = self.clock()
        rows: dict[str, dict[str, Any]] = {}
        for items, state, detail in marks:
            for item in items:
                rows[item] = {"delivery_id": delivery_id, "item": item, "state": state, "detail": detail, "at": now}
        if not rows and lease is None:
            return None
        d, di = t.deliveries, t.delivery_items
        stmts = self.__dict__.get("_mark_statements")
        if stmts is None:
            from sqlalchemy.dialects import postgresql, sqlite

            upsert: Executable | None = None
            if self.engine.dialect.name == "sqlite":
                lite = sqlite.insert(di)
                upsert = lite.on_conflict_do_update(index_elements=[di.c.delivery_id, di.c.item], set_={
                    "state": lite.excluded.state, "detail": lite.excluded.detail, "at": lite.excluded.at})
            elif self.engine.dialect.name == "postgresql":
                pg = postgresql.insert(di)
                upsert = pg.on_conflict_do_update(index_elements=[di.c.delivery_id, di.c.item], set_={
                    "state": pg.excluded.state, "detail": pg.excluded.detail, "at": pg.excluded.at})
            renew = (update(d).where(d.c.id == bindparam("d_id"), d.c.lease_owner == bindparam("d_owner"),
                                     d.c.state == str(S.SENDING)).values(lease_until=bindparam("d_until")))
            stmts = self._mark_statements = (upsert, renew)
        upsert, renew = stmts
        with self.tx() as conn:
            if rows and upsert is not None:
                conn.execute(upsert, list(rows.values()))
            elif rows:
                existing = set(conn.execute(select(di.c.item).where(
                    di.c.delivery_id == delivery_id, di.c.item.in_(list(rows)))).scalars())
                for item in existing:
                    r = rows[item]
                    conn.execute(update(di).where(di.c.delivery_id == delivery_id, di.c.item == item)
                                 .values(state=r["state"], detail=r["detail"], at=now))
                new = [r for item, r in rows.items() if item not in existing]
                if new:
                    conn.execute(insert(di), new)
            if lease is None:
                return None
            res = conn.execute(renew, {"d_id": delivery_id, "d_owner": owner, "d_until": now + lease})
            return res.rowcount == 1



def default_owner() -> str:
    import socket
    import threading

    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"
