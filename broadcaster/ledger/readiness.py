"""Each channel's last readiness check: every statement on ``channel_readiness``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update

from . import schema as t
from .repository import Ledger

_R = t.channel_readiness


@dataclass(frozen=True)
class Readiness:
    channel: str
    ready: bool
    detail: str
    checked_at: float
    since: float
    expires_at: float | None


class ReadinessStore:
    """Typed access to ``channel_readiness`` of one ledger (cheap to make: holds no state)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def all(self) -> dict[str, Readiness]:
        with self.ledger.read() as conn:
            rows = conn.execute(select(_R)).all()
        return {r.channel: Readiness(r.channel, bool(r.ready), r.detail or "", r.checked_at, r.since, r.expires_at)
                for r in rows}

    def record(self, channel: str, *, ready: bool, detail: str, expires_at: float | None) -> Readiness:
        """One check's outcome; ``since`` moves only when the channel turns ready or not ready."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            row = conn.execute(select(_R).where(_R.c.channel == channel).with_for_update()).first()
            values = {"ready": ready, "detail": detail[:1000], "checked_at": now, "expires_at": expires_at}
            if row is None:
                conn.execute(insert(_R).values(channel=channel, since=now, **values))
                since = now
            else:
                since = row.since if bool(row.ready) == ready else now
                conn.execute(update(_R).where(_R.c.channel == channel).values(since=since, **values))
            if row is not None and bool(row.ready) != ready:
                self.ledger.audit("scheduler", "channel.ready" if ready else "channel.not_ready", channel,
                                  {"detail": detail[:200]}, conn)
        return Readiness(channel, ready, detail[:1000], now, since, expires_at)

    def forget_except(self, channels: list[str]) -> None:
        """Channels no longer configured leave the table (and the page and /metrics)."""
        with self.ledger.tx() as conn:
            conn.execute(delete(_R).where(_R.c.channel.not_in(channels)))
