"""Readings of the ledger that only tests need (the running system never asks for them), built
on what the ledger offers — so production code keeps no method for a test alone."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from broadcaster.ledger import Ledger, schema as t
from broadcaster.ledger.memory import MemoryLedger
from broadcaster.models import Delivery, Update


def claim(ledger: Ledger, delivery_id: str, owner: str, lease: float) -> Delivery | None:
    """One delivery claimed as a worker's attempt claims it, without its announcement."""
    got = ledger.claim_with_announcement(delivery_id, owner, lease)
    return got[0] if got else None


def updates_of(ledger: Ledger, ann_id: str) -> list[Update]:
    """An announcement's updates, oldest first."""
    return ledger.snapshot(ann_id)[1]


def audit_entries(ledger: Ledger, *, limit: int = 100, since_id: int = 0) -> list[dict[str, Any]]:
    """Audit entries after ``since_id``, oldest first (the running system writes them and
    exports them; it never reads them back)."""
    a = t.audit_log
    with ledger.read() as conn:
        rows = conn.execute(select(a).where(a.c.id > since_id).order_by(a.c.id).limit(limit))
        return [dict(r._mapping) for r in rows]


def set_announcement(ledger: Ledger | MemoryLedger, ann_id: str, **values: Any) -> None:
    """Set columns of an announcement directly: a state the system reaches by a path the test
    skips (a retraction landing while an attempt runs, an incident resolved by an update)."""
    if isinstance(ledger, MemoryLedger):
        ledger.set_announcement(ann_id, **values)
        return
    a = t.announcements
    with ledger.tx() as conn:
        conn.execute(update(a).where(a.c.id == ann_id).values(**values))
