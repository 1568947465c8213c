"""Readings of the ledger that only tests need (the running system never asks for them), built
on what the ledger offers — so production code keeps no method for a test alone."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from broadcaster.ledger import Ledger, schema as t
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
