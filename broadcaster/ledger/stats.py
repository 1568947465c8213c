"""Delivery statistics (``/metrics``, the channels page): aggregates computed by the database,
so each costs a few grouped queries whatever the ledger's size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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

    def count_by_state(self) -> dict[str, int]:
        d = t.deliveries
        with self.ledger.read() as conn:
            return {r[0]: r[1] for r in conn.execute(select(d.c.state, func.count()).group_by(d.c.state))}

    def channel_stats(self) -> dict[str, dict[str, Any]]:
        """Per channel: backlog (active deliveries), last success, oldest due, counts by state."""
        d = t.deliveries
        stats: dict[str, dict[str, Any]] = {}

        def of(channel: str) -> dict[str, Any]:
            return stats.setdefault(channel, {"states": {}, "backlog": 0, "last_success": None, "oldest_due": None})

        with self.ledger.read() as conn:
            for channel, state, n in conn.execute(select(d.c.channel, d.c.state, func.count())
                                                  .group_by(d.c.channel, d.c.state)):
                of(channel)["states"][state] = n
                if state in ("pending", "retrying", "sending"):
                    of(channel)["backlog"] += n
            for channel, at in conn.execute(select(d.c.channel, func.max(d.c.settled_at))
                                            .where(d.c.state == "delivered").group_by(d.c.channel)):
                of(channel)["last_success"] = at
            for channel, at in conn.execute(select(d.c.channel, func.min(d.c.due_at))
                                            .where(d.c.state.in_(["pending", "retrying"])).group_by(d.c.channel)):
                of(channel)["oldest_due"] = at
        return stats

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
