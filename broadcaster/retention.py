"""Retention: the attempt history of settled deliveries is dropped after ``retention.keep_events``.

Announcements, their updates and deliveries are kept for ever, unless ``retention.keep_announcements``
is set (or ``broadcaster prune --announcements-older-than`` is run): then announcements that are
settled — resolved, completed, cancelled or retracted, or of a kind without a lifecycle — and whose
every delivery is settled are deleted with everything that hangs off them, once older than that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete, select

from .config import Duration, Settings, Strict
from .ledger import schema as t
from .models import SETTLED

log = logging.getLogger(__name__)


class RetentionSettings(Strict):
    """The ``retention:`` section of the configuration."""

    keep_events: Duration | None = 90 * 86400.0  # attempt history of settled deliveries; None = for ever
    keep_announcements: Duration | None = None  # None = never delete announcements
    every: Duration = 3600.0  # how often the scheduler prunes


def settings_of(settings: Settings | None) -> RetentionSettings:
    raw = getattr(settings, "retention", None) if settings is not None else None
    if raw is None:
        return RetentionSettings()
    if isinstance(raw, RetentionSettings):
        return raw
    return RetentionSettings.model_validate(raw if isinstance(raw, dict) else {k: getattr(raw, k) for k in type(raw).model_fields})


@dataclass
class Pruned:
    events: int = 0
    announcements: int = 0


def prune_events(ledger, older_than_seconds: float, *, now: float | None = None) -> int:
    now = ledger.clock() if now is None else now
    return ledger.prune_events(now - older_than_seconds)


def prune_announcements(ledger, older_than_seconds: float, *, now: float | None = None, actor: str = "retention",
                        batch: int = 200) -> int:
    """Delete settled announcements created before ``now - older_than_seconds``, with their
    updates, deliveries, events and item progress. Returns how many announcements went."""
    now = ledger.clock() if now is None else now
    cutoff = now - older_than_seconds
    a, u, d, e, di = t.announcements, t.updates, t.deliveries, t.delivery_events, t.delivery_items
    settled_states = [str(s) for s in SETTLED]
    total = 0
    while True:
        with ledger.tx() as conn:
            active = select(d.c.announcement_id).where(d.c.state.not_in(settled_states))
            ids = list(conn.execute(select(a.c.id).where(
                a.c.created_at < cutoff,
                a.c.id.not_in(active),
                (a.c.retracted_at.is_not(None)) | (a.c.resolved_at.is_not(None)) | (a.c.kind.not_in(("incident", "maintenance"))),
            ).order_by(a.c.id).limit(batch)).scalars())
            if not ids:
                break
            dids = select(d.c.id).where(d.c.announcement_id.in_(ids))
            conn.execute(delete(e).where(e.c.delivery_id.in_(dids)))
            conn.execute(delete(di).where(di.c.delivery_id.in_(dids)))
            conn.execute(delete(d).where(d.c.announcement_id.in_(ids)))
            conn.execute(delete(u).where(u.c.announcement_id.in_(ids)))
            conn.execute(delete(a).where(a.c.id.in_(ids)))
            ledger.audit(actor, "retention.prune_announcements", None, {"count": len(ids), "before": cutoff}, conn)
        total += len(ids)
        if len(ids) < batch:
            break
    return total


def prune(ledger, cfg: RetentionSettings, *, now: float | None = None) -> Pruned:
    out = Pruned()
    if cfg.keep_events is not None:
        out.events = prune_events(ledger, cfg.keep_events, now=now)
    if cfg.keep_announcements is not None:
        out.announcements = prune_announcements(ledger, cfg.keep_announcements, now=now)
    return out


class RetentionHook:
    """Scheduler hook: prune at most every ``retention.every`` seconds (idempotent if two run)."""

    __name__ = "retention"

    def __init__(self):
        self.last = 0.0

    def __call__(self, runtime, report=None) -> Pruned | None:
        cfg = settings_of(runtime.settings)
        now = runtime.clock()
        if now - self.last < cfg.every:
            return None
        self.last = now
        res = prune(runtime.ledger, cfg, now=now)
        if res.events or res.announcements:
            log.info("retention: pruned %d attempt records and %d announcements", res.events, res.announcements)
            if report is not None:
                report.extra["pruned_events"] = res.events
                report.extra["pruned_announcements"] = res.announcements
        return res
