"""The ledger: the only source of truth for announcements and deliveries.

``Ledger`` is one object over one database: it owns the connections (a writer and a lock-free
reader) and composes a store per aggregate, each in its own module:

- ``intake.py`` — a new announcement or update with its deliveries, in one transaction;
- ``reads.py`` — announcements, updates, deliveries and their events as the API and worker read them;
- ``claims.py`` — due deliveries become ``sending`` under a lease (one, or a channel's batch);
- ``outcomes.py`` — what an attempt ended in, with its event and fallbacks, in one transaction;
- ``actions.py`` — an operator's or a retraction's change, with its events and audit entry;
- ``sweeps.py`` — the scheduler's safety net (expired leases, scheduled work, lost wake-ups);
- ``items.py`` — per-item progress (recipients, thread parts) with the lease renewal;
- the typed stores reached as attributes: ``idempotency``, ``retention``, ``windows``,
  ``stats``, ``tokens``, ``sessions``, ``archive``.

Every write that changes a delivery's state goes through an outcome, a claim or a sweep, and
records a ``delivery_events`` row in the same transaction. Claims are conditional UPDATEs, so
two workers can never both own a delivery. The methods below keep the names the rest of the
code calls; what they do is in the store each one names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from ..errors import LedgerUnavailable
from ..models import Announcement, Delivery, DeliveryEvent, DeliveryState, Receipt, Update
from .actions import Actions, Audited, Retraction
from .archive import LedgerArchive
from .claims import Claims
from .engine import make_engine, migrate
from .history import write_audit
from .idempotency import IdempotencyStore
from .ids import default_owner, new_id
from .inputs import AnnouncementChange, NewAnnouncement, NewDelivery, NewUpdate
from .intake import Accepted, Intake, Keyed
from .items import ItemMark, Items
from .outcomes import Outcome, Outcomes
from .reads import Reads, Snapshot
from .retention import RetentionStore
from .sessions import SessionStore
from .stats import DeliveryStats
from .sweeps import Sweeps
from .tokens import TokenRecords
from .windows import WindowStore

__all__ = ["Accepted", "Ledger", "default_owner", "new_id"]


class Ledger:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time):
        self.engine = engine
        # Readers: on SQLite a deferred BEGIN (no write lock); on PostgreSQL autocommit, which
        # saves the BEGIN and ROLLBACK round trips and loses nothing — under READ COMMITTED
        # every statement takes its own snapshot, inside a transaction or not.
        opts: dict[str, Any] = {"bc_readonly": True}
        if engine.dialect.name == "postgresql":
            opts["isolation_level"] = "AUTOCOMMIT"
        self._reader = engine.execution_options(**opts)
        self.clock = clock
        #: per thread, the connection its write transactions share while pinned (see pinned())
        self._pins = threading.local()
        self._intake = Intake(self)
        self._reads = Reads(self)
        self._claims = Claims(self)
        self._outcomes = Outcomes(self)
        self._actions = Actions(self)
        self._sweeps = Sweeps(self)
        self._items = Items(self)
        #: client idempotency keys of every POST (one store; see ledger/idempotency.py)
        self.idempotency = IdempotencyStore(self)
        #: forgetting old history (see ledger/retention.py)
        self.retention = RetentionStore(self)
        #: maintenance windows' due steps and quiet status moves (see ledger/windows.py)
        self.windows = WindowStore(self)
        #: aggregates for /metrics and the channels page (see ledger/stats.py)
        self.stats = DeliveryStats(self)
        #: API tokens' rows, hashes only (see ledger/tokens.py)
        self.tokens = TokenRecords(self)
        #: the web page's signed-in browsers (see ledger/sessions.py)
        self.sessions = SessionStore(self)
        #: every row as records, and a restore into an empty ledger (see ledger/archive.py)
        self.archive = LedgerArchive(self)

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, clock: Callable[[], float] = time.time) -> Ledger:
        engine = make_engine(url)
        ledger = cls(engine, clock=clock)
        if migrate_schema:
            with ledger._unavailable_as_error():
                migrate(engine)
        return ledger

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ connections

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
        """One write transaction (on SQLite ``BEGIN IMMEDIATE``: the one writer), on this
        thread's pinned connection when it has one (:meth:`pinned`)."""
        held: Connection | None = getattr(self._pins, "conn", None)
        if held is None or held.closed or held.invalidated or held.in_transaction():  # nested: its own
            with self._unavailable_as_error(), self.engine.begin() as conn:
                yield conn
            return
        try:
            with self._unavailable_as_error(), held.begin():
                yield held
        except BaseException:
            # whatever state the failure left it in, the pin's later writes check out afresh
            self._pins.conn = None
            _close_quietly(held)
            raise

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Meanwhile, this thread's write transactions share one checked-out connection.

        A drain writes its claim, a start mark per send and the outcomes — a dozen short
        transactions a batch; checking a connection out of the pool and back (with the pool's
        reset) cost about as much as a SQLite transaction itself (measured 130 µs against 35 µs
        for an empty one). Each write is still its own transaction, committed before the next
        send; a failed one drops the pin. Nested pins share the outer one."""
        if getattr(self._pins, "conn", None) is not None:
            yield
            return
        with self._unavailable_as_error():
            conn = self.engine.connect()
        self._pins.conn = conn
        try:
            yield
        finally:
            self._pins.conn = None
            _close_quietly(conn)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._unavailable_as_error(), self._reader.connect() as conn:
            yield conn

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(select(1))

    def audit(self, actor: str, action: str, target: str | None = None, details: Mapping[str, Any] | None = None,
              conn: Connection | None = None) -> None:
        """An audit entry, in the caller's transaction when ``conn`` is given."""
        if conn is not None:
            write_audit(conn, at=self.clock(), actor=actor, action=action, target=target, details=details)
        else:
            with self.tx() as own:
                write_audit(own, at=self.clock(), actor=actor, action=action, target=target, details=details)

    # ------------------------------------------------------------ writing a message (intake.py)

    def accept(self, fields: NewAnnouncement | Mapping[str, Any], deliveries: Sequence[NewDelivery | Mapping[str, Any]],
               *, actor: str, idempotency: Keyed | None = None) -> Accepted:
        """Write an announcement and its deliveries in one transaction and return what was written
        (``idempotency`` is ``(scope, key, request_hash)``: a replay returns the first one as it
        is now, with ``created=False``)."""
        return self._intake.accept(NewAnnouncement.of(fields), [NewDelivery.of(d) for d in deliveries],
                                   actor=actor, idempotency=idempotency)

    def create_announcement(self, fields: NewAnnouncement | Mapping[str, Any],
                            deliveries: Sequence[NewDelivery | Mapping[str, Any]], *, actor: str,
                            idempotency: Keyed | None = None) -> tuple[str, bool]:
        """:meth:`accept`, for callers that need only ``(id, created)``."""
        res = self.accept(fields, deliveries, actor=actor, idempotency=idempotency)
        return res.announcement.id, res.created

    def add_update(self, ann_id: str, fields: NewUpdate | Mapping[str, Any],
                   deliveries: Sequence[NewDelivery | Mapping[str, Any]], *, actor: str,
                   announcement_values: AnnouncementChange | Mapping[str, Any] | None = None,
                   idempotency: Keyed | None = None) -> tuple[str, bool]:
        """An update, its deliveries and the announcement's new values in one transaction."""
        change = AnnouncementChange.of(announcement_values) if announcement_values else None
        return self._intake.add_update(ann_id, NewUpdate.of(fields), [NewDelivery.of(d) for d in deliveries],
                                       actor=actor, change=change, idempotency=idempotency)

    # ------------------------------------------------------------ reading (reads.py, stats.py)

    def get_announcement(self, ann_id: str) -> Announcement:
        return self._reads.get_announcement(ann_id)

    def list_announcements(self, *, kind: str | None = None, status: str | None = None, state: str | None = None,
                           since: float | None = None, until: float | None = None, before: str | None = None,
                           open_only: bool = False, limit: int = 50) -> list[Announcement]:
        return self._reads.list_announcements(kind=kind, status=status, state=state, since=since, until=until,
                                              before=before, open_only=open_only, limit=limit)

    def get_update(self, upd_id: str) -> Update:
        return self._reads.get_update(upd_id)

    def get_delivery(self, delivery_id: str) -> Delivery:
        return self._reads.get_delivery(delivery_id)

    def deliveries_of(self, ann_id: str) -> list[Delivery]:
        return self._reads.deliveries_of(ann_id)

    def deliveries_for(self, ann_ids: list[str]) -> dict[str, list[Delivery]]:
        return self._reads.deliveries_for(ann_ids)

    def events_of(self, delivery_id: str) -> list[DeliveryEvent]:
        return self._reads.events_of(delivery_id)

    def snapshot(self, ann_id: str) -> Snapshot:
        return self._reads.snapshot(ann_id)

    def thread_receipts(self, ann_id: str, channel: str, before: float | None = None) -> list[Receipt]:
        return self._reads.thread_receipts(ann_id, channel, before)

    def channel_stats(self) -> dict[str, dict[str, Any]]:
        return self.stats.channel_stats()

    def count_by_state(self) -> dict[str, int]:
        return self.stats.count_by_state()

    # ------------------------------------------------------------ the worker (claims.py, outcomes.py, items.py, actions.py)

    def claim_with_announcement(self, delivery_id: str, owner: str,
                                lease: float) -> tuple[Delivery, Announcement] | None:
        return self._claims.claim_with_announcement(delivery_id, owner, lease)

    def claim_batch(self, channel: str, owner: str, lease: float, limit: int, *,
                    start_first: bool = False) -> list[tuple[Delivery, Announcement]]:
        return self._claims.claim_batch(channel, owner, lease, limit, start_first=start_first)

    def transition(self, delivery: Delivery, to: DeliveryState, reason: str, *, owner: str | None = None,
                   attempted: bool = False, due_at: float | None = None, receipt: Receipt | None = None,
                   response: str | None = None, error: str | None = None, maybe_sent: bool | None = None,
                   fallbacks: Sequence[NewDelivery | Mapping[str, Any]] | None = None) -> bool:
        """Move ``delivery`` to ``to`` and log it. With ``owner``, only if that worker still holds
        the lease. ``fallbacks`` become new deliveries of the same message in the same
        transaction — except on a channel that already has this message, which the event's
        reason then names (with the delivery that carries it) instead of posting it twice."""
        outcome = _outcome(owner=owner, attempted=attempted, due_at=due_at, receipt=receipt, response=response,
                           error=error, maybe_sent=maybe_sent, fallbacks=fallbacks)
        return self._outcomes.record([(delivery, to, reason, outcome)])[0]

    def transition_many(self, outcomes: list[tuple[Delivery, DeliveryState, str, dict[str, Any]]], *,
                        owner: str) -> list[bool]:
        """Several outcomes of one worker's batch in ONE transaction: each ``(delivery, to,
        reason, options)`` exactly as :meth:`transition` with ``owner`` (``options`` are its
        keyword arguments). Returns, per outcome, whether it was recorded."""
        return self._outcomes.record([(d, to, reason, _outcome(owner=owner, **opts)) for d, to, reason, opts in outcomes])

    def start_send(self, delivery_id: str, owner: str,
                   outcomes: Sequence[tuple[Delivery, DeliveryState, str, dict[str, Any]]] = ()) -> tuple[bool, list[bool]]:
        """The write just before a batch-claimed delivery's remote call: ``outcomes`` of the same
        batch (as :meth:`transition_many` with ``owner``), then the start mark, in ONE
        transaction. Returns whether the send may start, and per outcome whether it was recorded
        (see ``claims.start`` and ``outcomes.record_then_start``)."""
        return self._outcomes.record_then_start(
            [(d, to, reason, _outcome(owner=owner, **opts)) for d, to, reason, opts in outcomes], delivery_id, owner)

    def force(self, delivery_id: str, to: DeliveryState, reason: str, *, actor: str, from_states: Iterable[DeliveryState],
              due_at: float | None = None, maybe_sent: bool | None = None, deadline_at: float | None = None,
              remote_url: str | None = None, note: str | None = None, set_note: bool = False,
              audited: Audited | None = None) -> bool:
        """An action from outside the attempt: move only from ``from_states`` (see actions.py)."""
        return self._actions.force(delivery_id, to, reason, actor=actor, from_states=from_states, due_at=due_at,
                                   maybe_sent=maybe_sent, deadline_at=deadline_at, remote_url=remote_url,
                                   note=note, set_note=set_note, audited=audited)

    def retract(self, ann_id: str, *, actor: str, reason: str) -> Retraction:
        return self._actions.retract(ann_id, actor=actor, reason=reason)

    def cancel_scheduled(self, ann_id: str, *, actor: str) -> int:
        return self._actions.cancel_scheduled(ann_id, actor=actor)

    def item_states(self, delivery_id: str) -> dict[str, tuple[str, str | None]]:
        return self._items.item_states(delivery_id)

    def mark_items(self, delivery_id: str, items: Iterable[str], state: str, detail: str | None = None) -> None:
        self._items.mark_and_extend(delivery_id, None, [(items, state, detail)])

    def mark_items_and_extend(self, delivery_id: str, owner: str | None, marks: Iterable[ItemMark],
                              lease: float | None = None) -> bool | None:
        return self._items.mark_and_extend(delivery_id, owner, marks, lease)

    # ------------------------------------------------------------ the sweep (sweeps.py)

    def take_due(self, requeue_after: float, limit: int = 500) -> list[tuple[str, str, float]]:
        return self._sweeps.take_due(requeue_after, limit)

    def forget_enqueued(self) -> int:
        return self._sweeps.forget_enqueued()

    def expire_leases(self) -> list[str]:
        return self._sweeps.expire_leases()

    def promote_scheduled(self, *, hold_kinds: Iterable[str] = (), limit: int = 500) -> list[str]:
        return self._sweeps.promote_scheduled(hold_kinds=hold_kinds, limit=limit)

    def open_incidents(self) -> int:
        return self._sweeps.open_incidents()


def _outcome(*, fallbacks: Sequence[NewDelivery | Mapping[str, Any]] | None = None, **options: Any) -> Outcome:
    return Outcome(fallbacks=tuple(NewDelivery.of(f) for f in fallbacks or ()), **options)


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a broken connection is being let go of; the pool discards it
        pass
