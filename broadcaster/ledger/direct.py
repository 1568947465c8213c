"""Break-glass results written into the ledger by ``broadcaster reconcile``.

Reconcile creates the announcement and its deliveries through :meth:`Ledger.create_announcement`
(so the once-per-channel key applies to them as to any other); this module adds what the
journal knows about the posts that landed — provider receipt, attempts, when — in one
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from . import schema as t
from .repository import Ledger


@dataclass(frozen=True)
class DirectReceipt:
    delivery_id: str
    receipt: dict[str, Any]
    attempts: int
    at: float


def record_receipts(ledger: Ledger, receipts: Iterable[DirectReceipt]) -> None:
    d = t.deliveries
    with ledger.tx() as conn:
        for r in receipts:
            conn.execute(update(d).where(d.c.id == r.delivery_id).values(
                receipt=r.receipt, remote_id=r.receipt.get("remote_id"), remote_url=r.receipt.get("url"),
                attempts=r.attempts, settled_at=r.at))
