"""Promised updates in the ledger: which incidents' "next update by" has passed unanswered, and
which promise a reminder was already sent for.

The rules (who is reminded, the holding statement) live in ``broadcaster.commitments``. A
promise is ``announcements.next_update_at``; ``next_update_reminded`` holds the promise the
scheduler last handled, so each promise is handled once however many schedulers run: marking
is one conditional statement naming the promise it handled.
"""

from __future__ import annotations

from sqlalchemy import or_, select, update

from ..models import Announcement
from . import schema as t
from .repository import Ledger
from .rows import announcement_of

_A = t.announcements
#: statuses after which nothing more is promised
FINAL = ("resolved",)


class CommitmentStore:
    """Typed access to the promise columns of ``announcements`` (cheap to make: holds no state)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def overdue(self, now: float, *, limit: int = 50) -> list[Announcement]:
        """Open, unretracted incidents whose promised update time has passed and whose promise
        was not handled yet, the longest overdue first."""
        q = (select(_A).where(_A.c.kind == "incident", _A.c.retracted_at.is_(None), _A.c.resolved_at.is_(None),
                              _A.c.status.not_in(FINAL), _A.c.next_update_at.is_not(None), _A.c.next_update_at <= now,
                              or_(_A.c.next_update_reminded.is_(None),
                                  _A.c.next_update_reminded != _A.c.next_update_at))
             .order_by(_A.c.next_update_at).limit(limit))
        with self.ledger.read() as conn:
            return [announcement_of(r._mapping) for r in conn.execute(q)]

    def mark_reminded(self, ann_id: str, promise: float) -> bool:
        """Record that ``promise`` was handled — only while it is still the announcement's
        promise (an update meanwhile made a new one, which gets its own reminder)."""
        with self.ledger.tx() as conn:
            res = conn.execute(update(_A).where(_A.c.id == ann_id, _A.c.next_update_at == promise)
                               .values(next_update_reminded=promise))
        return res.rowcount == 1
