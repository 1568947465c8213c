"""Retention in the ledger: the statements that forget old history, in bounded batches.

What may be forgotten is decided here in SQL because it must be decided atomically with the
delete (a delivery that becomes active again between a read and a delete must keep its history):
attempt events of deliveries settled before the cutoff, and announcements that are over —
retracted, resolved/completed, or of a kind without a lifecycle — whose every delivery is
settled. How long to keep things is configuration, read by ``broadcaster.retention``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from ..models import SETTLED
from . import schema as t

if TYPE_CHECKING:
    from .repository import Ledger


class RetentionStore:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def prune_events(self, older_than: float) -> int:
        """Drop the attempt history of deliveries settled before ``older_than``; how many rows went."""
        d, e = t.deliveries, t.delivery_events
        with self.ledger.tx() as conn:
            settled = select(d.c.id).where(d.c.settled_at.is_not(None), d.c.settled_at < older_than)
            return conn.execute(delete(e).where(e.c.at < older_than, e.c.delivery_id.in_(settled))).rowcount

    def prune_announcements(self, created_before: float, *, actor: str, batch: int = 200) -> int:
        """Delete announcements that are over and were created before ``created_before``, with
        their updates, deliveries, events and item progress, ``batch`` per transaction (each
        audited). Returns how many announcements went."""
        a, u, d, e, di = t.announcements, t.updates, t.deliveries, t.delivery_events, t.delivery_items
        settled_states = [str(s) for s in SETTLED]
        total = 0
        while True:
            with self.ledger.tx() as conn:
                active = select(d.c.announcement_id).where(d.c.state.not_in(settled_states))
                over = a.c.retracted_at.is_not(None) | a.c.resolved_at.is_not(None) | a.c.kind.not_in(
                    ("incident", "maintenance"))
                ids = list(conn.execute(select(a.c.id).where(a.c.created_at < created_before, a.c.id.not_in(active),
                                                             over).order_by(a.c.id).limit(batch)).scalars())
                if not ids:
                    break
                dids = select(d.c.id).where(d.c.announcement_id.in_(ids))
                conn.execute(delete(e).where(e.c.delivery_id.in_(dids)))
                conn.execute(delete(di).where(di.c.delivery_id.in_(dids)))
                conn.execute(delete(d).where(d.c.announcement_id.in_(ids)))
                conn.execute(delete(u).where(u.c.announcement_id.in_(ids)))
                conn.execute(delete(a).where(a.c.id.in_(ids)))
                self.ledger.audit(actor, "retention.prune_announcements", None,
                                  {"count": len(ids), "before": created_before}, conn)
            total += len(ids)
            if len(ids) < batch:
                break
        return total
