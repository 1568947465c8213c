"""Maintenance windows in the ledger: which windows have a step due, and status moves that tell
nobody (a window cancelled before anyone saw it). Each move is one conditional statement, so
two schedulers acting on the same window cannot both win."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from . import schema as t

if TYPE_CHECKING:
    from .repository import Ledger

_A = t.announcements


@dataclass(frozen=True)
class StartedWindow:
    announcement_id: str
    status: str
    ends_at: float | None


class WindowStore:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def started(self, now: float, statuses: tuple[str, ...], *, limit: int = 200) -> list[StartedWindow]:
        """Maintenance announcements in one of ``statuses`` whose window has begun by ``now``
        (neither resolved nor retracted), earliest start first."""
        q = select(_A.c.id, _A.c.status, _A.c.window_ends_at).where(
            _A.c.kind == "maintenance", _A.c.window_starts_at.is_not(None), _A.c.window_starts_at <= now,
            _A.c.resolved_at.is_(None), _A.c.retracted_at.is_(None), _A.c.status.in_(statuses),
        ).order_by(_A.c.window_starts_at).limit(limit)
        with self.ledger.read() as conn:
            return [StartedWindow(r.id, r.status, r.window_ends_at) for r in conn.execute(q)]

    def set_status(self, announcement_id: str, from_statuses: tuple[str, ...], status: str, *, closes: bool,
                   actor: str, reason: str) -> bool:
        """Move the status (and close the window when ``closes``) if it is still one of
        ``from_statuses``; audited. False when someone else moved it first."""
        now = self.ledger.clock()
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if closes:
            values["resolved_at"] = now
        with self.ledger.tx() as conn:
            res = conn.execute(update(_A).where(_A.c.id == announcement_id, _A.c.status.in_(from_statuses),
                                                _A.c.resolved_at.is_(None)).values(**values))
            if res.rowcount != 1:
                return False
            self.ledger.audit(actor, "announcement.status", announcement_id, {"status": status, "reason": reason}, conn)
        return True
