"""Retention: the attempt history of settled deliveries is dropped after ``retention.keep_events``.

Announcements, their updates and deliveries are kept for ever, unless ``retention.keep_announcements``
is set (or ``broadcaster prune --announcements-older-than`` is run): then announcements that are
settled — resolved, completed, cancelled or retracted, or of a kind without a lifecycle — and whose
every delivery is settled are deleted with everything that hangs off them, once older than that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .config import Duration, Settings, Strict

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
    return ledger.retention.prune_events(now - older_than_seconds)


def prune_announcements(ledger, older_than_seconds: float, *, now: float | None = None, actor: str = "retention",
                        batch: int = 200) -> int:
    """Delete settled announcements created before ``now - older_than_seconds`` with everything
    that hangs off them. Returns how many announcements went."""
    now = ledger.clock() if now is None else now
    return ledger.retention.prune_announcements(now - older_than_seconds, actor=actor, batch=batch)


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
