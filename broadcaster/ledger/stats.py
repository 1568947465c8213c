"""Delivery statistics read at scrape time (``/metrics``): aggregates computed by the database,
so a scrape costs two grouped queries whatever the ledger's size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import case, func, select

from ..models import DeliveryState
from . import schema as t

if TYPE_CHECKING:
    from .repository import Ledger


@dataclass(frozen=True)
class LatencyHistogram:
    """Delivered deliveries of one channel: how many, their summed latency, and how many took at
    most each bucket's bound (cumulative, in the order of the bounds asked for)."""

    channel: str
    count: int
    total_seconds: float
    at_most: tuple[int, ...]


class DeliveryStats:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def retries_per_channel(self) -> dict[str, int]:
        """Attempts that ended in ``retrying``, per channel (kept until retention prunes them)."""
        d, e = t.deliveries, t.delivery_events
        q = (select(d.c.channel, func.count()).select_from(e.join(d, e.c.delivery_id == d.c.id))
             .where(e.c.to_state == DeliveryState.RETRYING.value).group_by(d.c.channel))
        with self.ledger.read() as conn:
            return {channel: int(n) for channel, n in conn.execute(q).all()}

    def delivery_latency(self, bounds: Sequence[float]) -> list[LatencyHistogram]:
        """Per channel, from due (its publish time, else its creation) to delivered."""
        d, a = t.deliveries, t.announcements
        start = case((a.c.publish_at > d.c.created_at, a.c.publish_at), else_=d.c.created_at)
        lat = d.c.settled_at - start
        cols = [d.c.channel, func.count(), func.coalesce(func.sum(lat), 0.0)]
        cols += [func.sum(case((lat <= b, 1), else_=0)) for b in bounds]
        q = (select(*cols).select_from(d.join(a, d.c.announcement_id == a.c.id))
             .where(d.c.state == DeliveryState.DELIVERED.value, d.c.settled_at.is_not(None)).group_by(d.c.channel))
        with self.ledger.read() as conn:
            return [LatencyHistogram(channel, int(count), float(total or 0.0), tuple(int(c or 0) for c in cum))
                    for channel, count, total, *cum in conn.execute(q)]
