"""Two-person review: which posts wait for a second person, and approving or rejecting them.

A post is held when its kind or one of its channels is under ``review`` — unless an admin posts
an incident, or anything while one is open (``review.admins_skip_during_incident``). An update is
held by the same rule, and always while its post still waits (``service.add_update``): approval
releases everything of the announcement that waits, and the approver must have written none of it. Break-glass (``post
--direct``) never comes through here. The approver must be another token (by name) allowed to
post the same kind to the same channels; the page and CLI show each channel's exact rendering
first (``preview_of``). The hold itself lives in the ledger (``ledger/approvals.py``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from .compose import compose  # the workers' own steps: the preview is exact
from .engine import build_message
from .errors import Conflict, Forbidden
from .ledger.approvals import HELD_REASON, ApprovalStore, Held
from .ledger.inputs import NewDelivery
from .models import Announcement, DeliveryState as S
from .principal import Principal
from .runtime import Runtime

log = logging.getLogger(__name__)


def needed(runtime: Runtime, kind: str, channels: list[str], principal: Principal) -> bool:
    cfg = runtime.settings.review
    if kind not in cfg.kinds and not set(channels) & set(cfg.channels):
        return False
    # posting an incident is being in one: the first post of an outage must not wait either
    in_incident = kind == "incident" or runtime.ledger.open_incidents() > 0
    return not (principal.admin and cfg.admins_skip_during_incident and in_incident)


def hold(runtime: Runtime, kind: str, channels: list[str], principal: Principal,
         rows: list[NewDelivery]) -> list[NewDelivery]:
    """The deliveries ``submit`` is about to write, held when review applies (no ``due_at``)."""
    if not needed(runtime, kind, channels, principal):
        return rows
    return [replace(r, state=S.SCHEDULED, due_at=None, reason=f"accepted; {HELD_REASON}") for r in rows]


def pending(runtime: Runtime, limit: int = 200) -> list[Held]:
    return ApprovalStore(runtime.ledger).pending(limit)


def _authors(runtime: Runtime, ann: Announcement) -> set[str]:
    """Who wrote what is held: the post while it waits, and every update waiting with or after it."""
    out: set[str] = set()
    for d in runtime.ledger.deliveries_of(ann.id):
        if d.state != S.SCHEDULED or d.due_at is not None:
            continue
        author = runtime.ledger.get_update(d.update_id).author if d.update_id else ann.author
        out.add(author or "")
    return out or {ann.author or ""}


def _check(runtime: Runtime, ann: Announcement, principal: Principal, action: str) -> None:
    if principal.name in _authors(runtime, ann):
        raise Forbidden(f"{action} needs a second person: {principal.name!r} wrote what is waiting")
    # releasing a post is letting it go out: the same right as posting it, fallbacks included
    channels = list(ann.channels)
    principal.check_post(ann.kind, channels, runtime.settings.fallback_reach(channels))


def approve(runtime: Runtime, ann_id: str, *, principal: Principal) -> dict[str, Any]:
    """Release a held post: its deliveries become due now (or at its publish time)."""
    ann = runtime.ledger.get_announcement(ann_id)
    _check(runtime, ann, principal, "approving")
    now = runtime.clock()
    publish_at = ann.publish_at or 0.0
    due = publish_at if publish_at > now else now
    quiet = ann.kind in runtime.settings.quiet_during_incidents and runtime.ledger.open_incidents() > 0
    released = ApprovalStore(runtime.ledger).release(
        ann_id, approver=principal.name, due=due, pending=due <= now and not quiet,
        deadline_for=lambda ch: runtime.settings.deadline_for(ann.kind, ch))
    if not released:
        raise Conflict(f"announcement {ann_id} is not waiting for approval")
    if due <= now and not quiet:
        runtime.enqueue(released)
    return {"announcement": ann_id, "approved_by": principal.name, "released": len(released),
            "due": due}


def reject(runtime: Runtime, ann_id: str, *, principal: Principal, reason: str = "") -> dict[str, Any]:
    ann = runtime.ledger.get_announcement(ann_id)
    _check(runtime, ann, principal, "rejecting")
    n = ApprovalStore(runtime.ledger).reject(ann_id, actor=principal.name, reason=reason)
    if not n:
        raise Conflict(f"announcement {ann_id} is not waiting for approval")
    return {"announcement": ann_id, "rejected_by": principal.name, "cancelled": n}


def preview_of(runtime: Runtime, held: Held) -> list[dict[str, Any]]:
    """Each channel's exact rendering of the held post (the workers' own ``render``)."""
    out = []
    for d in held.deliveries:
        if d.state != S.SCHEDULED or d.due_at is not None:
            continue
        item: dict[str, Any] = {"channel": d.channel, "delivery": d.id}
        try:
            post = compose(runtime.channel(d.channel), build_message(runtime, d, held.announcement),
                           delivery_id=d.id, settings=runtime.settings)
            item.update(text=post.text, title=post.title, parts=list(post.parts or (post.text,)))
        except Exception as exc:  # noqa: BLE001 - one channel's problem must not hide the others
            log.warning("review preview of %s on %s failed (%s)", held.announcement.id, d.channel, type(exc).__name__)
            item["error"] = f"cannot render: {type(exc).__name__}"
        out.append(item)
    return out


class ReviewReminder:
    """Scheduler hook: log (at most every ``review.remind_every``) the posts still waiting,
    loudly for those whose publish time has passed."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, runtime: Runtime, report: Any) -> None:
        if not (runtime.settings.review.kinds or runtime.settings.review.channels):
            return
        now = time.time()
        if now - self._last < runtime.settings.review.remind_every:
            return
        self._last = now
        waiting = ApprovalStore(runtime.ledger).pending(limit=100)
        late = [h.announcement.id for h in waiting if (h.announcement.publish_at or h.announcement.created_at) <= now]
        report.extra["awaiting_approval"] = len(waiting)
        if late:
            log.warning("review: %d post(s) past their time still wait for a second person: %s", len(late),
                        ", ".join(late[:10]))


__all__ = ["Held", "approve", "hold", "needed", "pending", "preview_of", "reject"]
