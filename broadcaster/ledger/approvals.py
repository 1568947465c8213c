"""Posts waiting for a second person: every statement that holds or releases them.

A held delivery is ``scheduled`` with no ``due_at``: the sweep releases only rows whose
``due_at`` has come, so nothing of a held post can leave — and because the hold is written in
the same transaction as the announcement (``Ledger.accept``), there is no moment when a post
exists without it. Approval sets ``due_at`` (and a fresh deadline) on exactly those rows, in one
transaction; the approver goes to the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select, update

from ..models import Announcement, Delivery, DeliveryState as S
from . import schema as t
from .history import write_event
from .repository import Ledger

_D, _A = t.deliveries, t.announcements

HELD_REASON = "awaiting a second person's approval (review)"


@dataclass(frozen=True)
class Held:
    announcement: Announcement
    deliveries: list[Delivery]


def _held(*cond: ColumnElement[bool]) -> tuple[ColumnElement[bool], ...]:
    """A held delivery: scheduled, with no due time (plus ``cond``)."""
    return (_D.c.state == str(S.SCHEDULED), _D.c.due_at.is_(None), *cond)


class ApprovalStore:
    """Typed access to held posts of one ledger (cheap to make: holds no state)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def held_ids(self, limit: int = 200) -> list[str]:
        with self.ledger.read() as conn:
            rows = conn.execute(select(_D.c.announcement_id).where(*_held()).group_by(_D.c.announcement_id)
                                .order_by(_D.c.announcement_id).limit(limit)).scalars().all()
        return list(rows)

    def pending(self, limit: int = 200) -> list[Held]:
        out = []
        for ann_id in self.held_ids(limit):
            out.append(Held(self.ledger.get_announcement(ann_id), self.ledger.deliveries_of(ann_id)))
        return out

    def release(self, ann_id: str, *, approver: str, due: float, pending: bool,
                deadline_for: Callable[[str], float]) -> list[tuple[str, str]]:
        """Held deliveries of ``ann_id`` become due at ``due`` (``pending``: now, else scheduled);
        returns ``(delivery id, channel)`` of those this call released (none if another did)."""
        now = self.ledger.clock()
        to = S.PENDING if pending else S.SCHEDULED
        released = []
        with self.ledger.tx() as conn:
            rows = conn.execute(select(_D.c.id, _D.c.channel, _D.c.attempts).where(
                *_held(_D.c.announcement_id == ann_id)).with_for_update()).all()
            for r in rows:
                res = conn.execute(update(_D).where(_D.c.id == r.id, *_held()).values(
                    state=str(to), due_at=due, deadline_at=due + deadline_for(r.channel), enqueued_at=None,
                    updated_at=now))
                if res.rowcount == 1:
                    write_event(conn, r.id, str(S.SCHEDULED), str(to), r.attempts, f"approved by {approver}", at=now)
                    released.append((r.id, r.channel))
            if released:
                self.ledger.audit(approver, "announcement.approve", ann_id, {"deliveries": len(released)}, conn)
        return released

    def reject(self, ann_id: str, *, actor: str, reason: str) -> int:
        now = self.ledger.clock()
        n = 0
        with self.ledger.tx() as conn:
            rows = conn.execute(select(_D.c.id, _D.c.attempts).where(*_held(_D.c.announcement_id == ann_id))
                                .with_for_update()).all()
            for r in rows:
                res = conn.execute(update(_D).where(_D.c.id == r.id, *_held()).values(
                    state=str(S.CANCELLED), settled_at=now, updated_at=now))
                if res.rowcount == 1:
                    write_event(conn, r.id, str(S.SCHEDULED), str(S.CANCELLED), r.attempts,
                                f"rejected in review by {actor}" + (f": {reason[:200]}" if reason else ""), at=now)
                    n += 1
            if n:
                self.ledger.audit(actor, "announcement.reject", ann_id, {"reason": reason[:200]} if reason else {},
                                  conn)
        return n
