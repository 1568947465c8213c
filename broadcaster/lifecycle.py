"""Incident and maintenance lifecycle: windows that move by themselves, cancelling a window,
and the list of open incidents.

A maintenance announcement with a ``window`` gets two updates from the scheduler, each exactly
once: ``in_progress`` when ``starts_at`` is reached and ``completed`` at ``ends_at`` (a window
that was entirely missed, e.g. the scheduler was down, gets only ``completed``). "Exactly once"
holds across restarts and concurrent schedulers because

* only announcements whose status still says the step is ahead are considered, and
* each step goes through :func:`service.add_update` with an Idempotency-Key derived from the
  announcement id and the status, and a body derived only from the announcement — so a second
  scheduler racing the first replays the first one's update instead of posting another.

Both updates reach every channel of the original, threaded, like any update.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from . import render, service
from .errors import Conflict, InvalidRequest
from .models import Announcement, DeliveryState
from .service import Principal

log = logging.getLogger(__name__)

S = DeliveryState
#: who the automatic updates are written by (audit log, update author)
SCHEDULER = Principal("scheduler", admin=True)
WINDOW_OPEN = ("scheduled",)
WINDOW_RUNNING = ("in_progress",)


def _end(ts: float) -> str:
    """``06:00 UTC on 30 Nov 2026``: the readable form ``render.window_text`` uses."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return f"{dt:%H:%M} UTC on {dt.day} {dt:%b %Y}"


def step_body(ann: Announcement, status: str) -> str:
    """The text of an automatic update: a function of the announcement alone (see module doc).
    (The first post states the window itself: ``render.window_line``.)"""
    w = ann.window
    if status == "in_progress":
        return f"The maintenance has started. It is planned to end at {_end(w.ends_at)}." if w else \
            "The maintenance has started."
    if status == "completed":
        return "The maintenance is complete. Thank you for your patience."
    if status == "cancelled":
        return (f"The maintenance planned for {render.window_text(w.starts_at, w.ends_at)} has been cancelled."
                if w else "The planned maintenance has been cancelled.")
    raise ValueError(status)


def due_steps(ledger, now: float, limit: int = 200) -> list[tuple[str, str]]:
    """``(announcement id, status)`` for every maintenance window whose next step is due."""
    out = []
    for w in ledger.windows.started(now, WINDOW_OPEN + WINDOW_RUNNING, limit=limit):
        if w.ends_at is not None and w.ends_at <= now:
            out.append((w.announcement_id, "completed"))
        elif w.status in WINDOW_OPEN:
            out.append((w.announcement_id, "in_progress"))
    return out


def _set_status(ledger, ann_id: str, frm: tuple[str, ...], status: str, *, actor: str, reason: str) -> bool:
    """Move the status without an update (nothing to tell anyone); conditional, so races are harmless."""
    return ledger.windows.set_status(ann_id, frm, status, closes=status in ("completed", "cancelled"),
                                     actor=actor, reason=reason)


def advance(runtime, ann_id: str, status: str) -> str:
    """Post one automatic step. Returns ``posted``, ``replayed`` (someone else did) or ``quiet``."""
    ledger = runtime.ledger
    ann = ledger.get_announcement(ann_id)
    frm = WINDOW_OPEN + WINDOW_RUNNING if status == "completed" else WINDOW_OPEN
    if ann.status not in frm or ann.retracted_at:
        return "replayed"
    originals = [d for d in ledger.deliveries_of(ann_id) if d.update_id is None]
    if originals and all(d.state in (S.CANCELLED, S.RETRACTED) for d in originals):
        # the announcement was cancelled before anyone saw it: close it without telling anyone
        _set_status(ledger, ann_id, frm, "cancelled", actor=SCHEDULER.name, reason="announcement was cancelled")
        return "quiet"
    body = {"status": status, "body": step_body(ann, status)}
    try:
        # the window's own steps, from the text a person wrote and (where reviewed) a second approved
        res = service.add_update(runtime, ann_id, body, principal=SCHEDULER, idempotency_key=f"lifecycle:{status}",
                                 review_applies=False)
    except Conflict:
        return "replayed"  # another scheduler wrote the same step at the same moment
    except InvalidRequest as exc:
        # no channel can take it (all fell back or were cancelled): keep the record straight
        log.warning("maintenance %s: cannot post %s (%s); status changed without an update", ann_id, status, exc)
        _set_status(ledger, ann_id, frm, status, actor=SCHEDULER.name, reason=str(exc))
        return "quiet"
    return "posted" if res.created else "replayed"


def maintenance_hook(runtime, report=None) -> int:
    """Scheduler hook (``scheduler.feature_hooks``): post every due window step."""
    n = 0
    for ann_id, status in due_steps(runtime.ledger, runtime.clock()):
        try:
            if advance(runtime, ann_id, status) == "posted":
                n += 1
                log.info("maintenance %s: posted %s", ann_id, status)
        except Exception:  # one broken announcement must not stop the others
            log.exception("maintenance %s: could not post %s", ann_id, status)
    if report is not None and n:
        report.extra["maintenance_steps"] = n
    return n


def cancel_window(runtime, ann_id: str, *, principal: Principal, reason: str = "") -> dict[str, Any]:
    """Cancel a maintenance window. If it was announced anywhere, every channel that has it gets
    a ``cancelled`` update (threaded); if it was never published, its scheduled deliveries are
    cancelled and nobody is told. Repeating the call changes nothing."""
    ledger = runtime.ledger
    ann = ledger.get_announcement(ann_id)
    if ann.kind != "maintenance":
        raise InvalidRequest("only maintenance announcements have a window to cancel")
    principal.check_post(ann.kind, list(ann.channels))
    if ann.status == "cancelled":
        return {"id": ann_id, "status": "cancelled", "told_channels": 0, "cancelled_deliveries": 0}
    if ann.status == "completed":
        raise InvalidRequest("this maintenance is already completed")
    if ann.retracted_at:
        raise InvalidRequest("this announcement was retracted")
    originals = [d for d in ledger.deliveries_of(ann_id) if d.update_id is None]
    if all(d.state in (S.SCHEDULED, S.CANCELLED) for d in originals):
        n = service.cancel_scheduled(runtime, ann_id, principal=principal)
        _set_status(ledger, ann_id, WINDOW_OPEN + WINDOW_RUNNING, "cancelled", actor=principal.name,
                    reason=reason or "cancelled before it was published")
        return {"id": ann_id, "status": "cancelled", "told_channels": 0, "cancelled_deliveries": n}
    text = step_body(ann, "cancelled") + (f"\n\n{reason.strip()}" if reason.strip() else "")
    res = service.add_update(runtime, ann_id, {"status": "cancelled", "body": text}, principal=principal,
                             idempotency_key="lifecycle:cancelled")
    told = [d for d in ledger.deliveries_of(ann_id) if d.update_id == res.id]
    ledger.audit(principal.name, "maintenance.cancel", ann_id, {"update": res.id})
    return {"id": ann_id, "status": "cancelled", "told_channels": len(told), "cancelled_deliveries": 0}


def open_incidents(ledger, *, limit: int = 100) -> list[Announcement]:
    """Incidents neither resolved nor retracted, newest first."""
    return [a for a in ledger.list_announcements(kind="incident", open_only=True, limit=limit)
            if a.status != "resolved"]


def open_maintenance(ledger, *, limit: int = 100) -> list[Announcement]:
    return ledger.list_announcements(kind="maintenance", open_only=True, limit=limit)


HOOKS = (maintenance_hook,)
