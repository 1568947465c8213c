"""Changes from outside an attempt: an operator's retry, confirm or cancel, a retraction — each
moves rows only from the states it names, writes their events, and writes its audit entry in
the SAME transaction (an action is never recorded without its change, nor done unrecorded).

No action ever adds a delivery: a retry moves the same row again, so the one-delivery-per-
(message, channel) key stays intact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from ..errors import NotFound
from ..models import Delivery, DeliveryState
from . import schema as t
from .history import write_audit, write_event
from .rows import delivery_of

if TYPE_CHECKING:
    from .repository import Ledger

S = DeliveryState
_D, _A = t.deliveries, t.announcements
#: what a retraction stops before it goes out
UNSENT = (S.SCHEDULED, S.PENDING, S.RETRYING)
#: what a retraction deletes from the channel (a task per post)
LIVE = (S.DELIVERED, S.UNKNOWN)


@dataclass(frozen=True)
class Audited:
    """The audit entry an action writes with its change: ``action`` on ``target`` by the actor."""

    action: str
    target: str | None
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Retraction:
    #: deliveries cancelled before they went out
    cancelled: int
    #: posts that went out (or may have): each needs a retraction task
    live: list[Delivery]
    #: the rest: settled otherwise (failed, fallen back, cancelled, retracted) or being sent
    already: int


class Actions:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def force(self, delivery_id: str, to: DeliveryState, reason: str, *, actor: str,
              from_states: Iterable[DeliveryState], due_at: float | None = None, maybe_sent: bool | None = None,
              deadline_at: float | None = None, remote_url: str | None = None, note: str | None = None,
              set_note: bool = False, audited: Audited | None = None) -> bool:
        """Move one delivery to ``to``, only from ``from_states``; False when it was in another
        state. With ``set_note`` the row's ``last_error`` becomes ``note`` (None clears it): a
        retraction says there whether the post is still visible. ``audited`` is written with the
        move, and only if it happened."""
        now = self.ledger.clock()
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
        with self.ledger.tx() as conn:
            row = conn.execute(select(_D.c.state, _D.c.attempts).where(_D.c.id == delivery_id)).first()
            if row is None:
                raise NotFound(f"no delivery {delivery_id!r}")
            if not _move(conn, delivery_id, row.state, row.attempts, to, from_states, values, f"{reason} (by {actor})",
                         now):
                return False
            if audited is not None:
                write_audit(conn, at=now, actor=actor, action=audited.action, target=audited.target,
                            details=audited.details)
        return True

    def retract(self, ann_id: str, *, actor: str, reason: str) -> Retraction:
        """Mark the announcement retracted (audited, the first time) and cancel every delivery of
        it that has not gone out, in ONE transaction; returns what is live on the channels."""
        now = self.ledger.clock()
        cancel = {"state": str(S.CANCELLED), "updated_at": now, "lease_owner": None, "lease_until": None,
                  "settled_at": now}
        cancelled = already = 0
        live = []
        with self.ledger.tx() as conn:
            marked = conn.execute(update(_A).where(_A.c.id == ann_id, _A.c.retracted_at.is_(None))
                                  .values(retracted_at=now, updated_at=now)).rowcount
            if marked:
                write_audit(conn, at=now, actor=actor, action="announcement.retract", target=ann_id,
                            details={"reason": reason})
            for r in conn.execute(select(_D).where(_D.c.announcement_id == ann_id)
                                  .order_by(_D.c.created_at, _D.c.id)).all():
                state = S(r.state)
                if state in UNSENT:
                    cancelled += _move(conn, r.id, r.state, r.attempts, S.CANCELLED, UNSENT, cancel,
                                       f"cancelled: announcement retracted (by {actor})", now)
                elif state in LIVE:
                    live.append(delivery_of(r._mapping))
                else:  # settled otherwise, or sending (the attempt sees the retraction before it posts)
                    already += 1
        return Retraction(cancelled, live, already)

    def cancel_scheduled(self, ann_id: str, *, actor: str) -> int:
        """Cancel the announcement's deliveries that wait for their publish time (or a review),
        audited, in ONE transaction; how many."""
        now = self.ledger.clock()
        cancel = {"state": str(S.CANCELLED), "updated_at": now, "lease_owner": None, "lease_until": None,
                  "settled_at": now}
        n = 0
        with self.ledger.tx() as conn:
            for r in conn.execute(select(_D.c.id, _D.c.state, _D.c.attempts).where(
                    _D.c.announcement_id == ann_id, _D.c.state == str(S.SCHEDULED))).all():
                n += _move(conn, r.id, r.state, r.attempts, S.CANCELLED, [S.SCHEDULED], cancel,
                           f"cancelled before publish time (by {actor})", now)
            write_audit(conn, at=now, actor=actor, action="announcement.cancel", target=ann_id,
                        details={"cancelled": n})
        return n


def _move(conn: Connection, delivery_id: str, frm: str, attempts: int, to: DeliveryState,
          from_states: Iterable[DeliveryState], values: Mapping[str, Any], reason: str, now: float) -> bool:
    """One conditional UPDATE (only from ``from_states``) and, when it moved, its event."""
    res = conn.execute(update(_D).where(_D.c.id == delivery_id, _D.c.state.in_([str(s) for s in from_states]))
                       .values(**values))
    if res.rowcount != 1:
        return False
    write_event(conn, delivery_id, frm, str(to), attempts, reason, at=now)
    return True
