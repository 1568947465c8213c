"""Writing a message: a new announcement or an update, each with its deliveries, in ONE
transaction — the rows, their first events, the idempotency key and the audit entry commit
together or not at all ("accepted" means durable).

The intake answers from what it wrote: :meth:`Intake.accept` returns the rows it inserted
without reading them back, so the 202 body costs no read. A replayed Idempotency-Key returns the
first request's announcement as it is now, with ``created=False``; two requests with one key at
the same moment meet at the key's unique index, and the loser answers as the winner did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import Connection, insert, update
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict
from ..models import Announcement, Delivery, DeliveryEvent, Update
from . import schema as t
from .ids import new_id
from .inputs import AnnouncementChange, NewAnnouncement, NewDelivery, NewUpdate
from .new_deliveries import insert_routed
from .prepared import Prepared
from .rows import announcement_of, delivery_of

if TYPE_CHECKING:
    from .repository import Ledger

# Built once, the values given at execution and run straight on the driver's cursor (see
# prepared.py): building ``insert(...).values(**row)`` per request, and SQLAlchemy's execution
# path, cost more Python than running the statement on SQLite. A column left out (None) stays
# NULL; the columns with defaults are always given (``body`` below, the lists and maps by
# ``NewAnnouncement.values``).
_INSERT_ANNOUNCEMENT = Prepared(insert(t.announcements))

#: ``(scope, key, request_hash)`` of a request that carried an Idempotency-Key
Keyed = tuple[str, str, str]


class Accepted(NamedTuple):
    """What :meth:`Intake.accept` wrote (or found, for a replayed Idempotency-Key)."""

    created: bool
    announcement: Announcement
    deliveries: list[Delivery]
    events: dict[str, list[DeliveryEvent]]
    updates: tuple[Update, ...] | list[Update] = ()


class Intake:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def accept(self, ann: NewAnnouncement, deliveries: Sequence[NewDelivery], *, actor: str,
               idempotency: Keyed | None = None) -> Accepted:
        """Write an announcement and its deliveries in one transaction, and return what was
        written without reading it back.

        The Idempotency-Key is not looked up first: it is the transaction's first insert, and
        only when the unique key refuses it (a replay — rare — or a concurrent twin) is the
        first request read. So a new announcement costs one transaction and nothing else."""
        ledger = self.ledger
        now = ledger.clock()
        values = {c.name: None for c in t.announcements.c} | ann.values()
        ann_id = values["id"] = ann.id or new_id("ann")
        values.update(created_at=now, updated_at=now, author=actor, body=values["body"] or "")
        try:
            with ledger.tx() as conn:
                if idempotency:
                    scope, key, digest = idempotency
                    ledger.idempotency.remember(scope, key, digest, target_id=ann_id, conn=conn)
                _INSERT_ANNOUNCEMENT.run(conn, {k: v for k, v in values.items() if v is not None})
                rows, events = insert_routed(conn, ann_id, None, deliveries, now)
                ledger.audit(actor, "announcement.create", ann_id,
                             {"kind": ann.kind, "channels": [d.channel for d in deliveries]}, conn)
        except IntegrityError:
            if idempotency and (earlier := self._replay(idempotency)):
                return self._accepted_before(earlier)
            raise
        blank = {c.name: None for c in t.deliveries.c}
        dels = [delivery_of(blank | r) for r in rows]
        return Accepted(True, announcement_of(values), dels,
                        {d.id: [DeliveryEvent(**e)] for d, e in zip(dels, events, strict=False)})

    def add_update(self, ann_id: str, upd: NewUpdate, deliveries: Sequence[NewDelivery], *, actor: str,
                   change: AnnouncementChange | None = None, idempotency: Keyed | None = None) -> tuple[str, bool]:
        """Write an update of ``ann_id``, its deliveries and the announcement's ``change`` (its
        new status, say) in one transaction. Returns ``(update id, created)``."""
        ledger = self.ledger
        if idempotency and (earlier := self._replay(idempotency)):
            return earlier, False
        now = ledger.clock()
        upd_id = new_id("upd")
        try:
            with ledger.tx() as conn:
                if idempotency:
                    scope, key, digest = idempotency
                    ledger.idempotency.remember(scope, key, digest, target_id=upd_id, conn=conn)
                conn.execute(insert(t.updates).values(id=upd_id, announcement_id=ann_id, created_at=now, author=actor,
                                                      status=upd.status, body=upd.body or "", title=upd.title,
                                                      component_states=None if upd.component_states is None
                                                      else dict(upd.component_states)))
                if change is not None:
                    self.change(ann_id, change, conn)
                insert_routed(conn, ann_id, upd_id, deliveries, now)
                ledger.audit(actor, "announcement.update", ann_id, {"update": upd_id, "status": upd.status}, conn)
        except IntegrityError:
            # a concurrent request with the same key committed first: answer as it did
            if idempotency and (earlier := self._replay(idempotency)):
                return earlier, False
            raise Conflict(f"announcement {ann_id} changed while this update was being written; try again") from None
        return upd_id, True

    def change(self, ann_id: str, change: AnnouncementChange, conn: Connection | None = None) -> None:
        """Set the columns ``change`` names (and ``updated_at``), on ``conn`` when given."""
        stmt = (update(t.announcements).where(t.announcements.c.id == ann_id)
                .values(updated_at=self.ledger.clock(), **change.values()))
        if conn is not None:
            conn.execute(stmt)
        else:
            with self.ledger.tx() as own:
                own.execute(stmt)

    def _replay(self, idempotency: Keyed) -> str | None:
        """The id an earlier request with this key created, None for a new key."""
        found = self.ledger.idempotency.recall(*idempotency)
        return found.target_id if found else None

    def _accepted_before(self, ann_id: str) -> Accepted:
        ann, updates, dels, events = self.ledger.snapshot(ann_id)
        return Accepted(False, ann, dels, events, updates)
