"""Use cases shared by the API, the CLI and the web page: submit, update, retract, retry, cancel.

Each validates its input, checks what the caller may do, writes the ledger in one transaction,
and only then wakes the workers (a failed wake-up is logged, never fatal: the sweep covers it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from . import components as component_names, promises, review, templates, wording
from .errors import InvalidRequest
from .ledger.actions import Audited
from .ledger.approvals import HELD_REASON
from .ledger.inputs import AnnouncementChange, NewAnnouncement, NewDelivery, NewUpdate
from .limits import text_problem
from .models import (
    ACTIVE,
    INCIDENT_STATUSES,
    MAINTENANCE_STATUSES,
    Announcement,
    Delivery,
    DeliveryState,
    overall,
)
from .principal import SYSTEM, Principal
from .requests import (
    URL_MAX,
    AnnouncementIn,
    UpdateIn,
    VariantIn,
    WindowIn,
    request_hash,
    stored_key,
    validation_problem,
)
from .runtime import Runtime

__all__ = [  # the request shapes and Principal are re-exported: callers import them from here
    "SYSTEM", "AnnouncementIn", "Principal", "Submitted", "UpdateIn", "VariantIn", "WindowIn", "add_update",
    "cancel_scheduled", "confirm_delivered", "overall", "request_hash", "retract", "retry_delivery", "status_of",
    "submit", "validation_problem",
]

S = DeliveryState


# ---------------------------------------------------------------- use cases


@dataclass
class Submitted:
    id: str
    created: bool
    deliveries: list[str] = field(default_factory=list)
    #: with ``defer_enqueue``: what the caller must hand to ``runtime.enqueue`` after answering
    to_enqueue: list[tuple[str, str]] = field(default_factory=list)
    #: the announcement as written (or as it is now, for a replay), in ``status_of``'s shape
    status: dict[str, Any] | None = None


def submit(runtime: Runtime, data: dict | AnnouncementIn, *, principal: Principal,
           idempotency_key: str | None = None, defer_enqueue: bool = False, internal: bool = False) -> Submitted:
    """Accept an announcement: one transaction writes it and a delivery per channel.

    ``defer_enqueue`` lets the API answer first and wake the workers right after (the ledger
    already holds everything; a wake-up that never happens costs one sweep, not a delivery).
    ``internal``: broadcaster's own notice to its operators (an overdue reminder), never held
    by ``quiet_during_incidents`` or two-person review — it exists because an incident is open."""
    try:
        asked = data if isinstance(data, AnnouncementIn) else AnnouncementIn.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc) from None
    settings = runtime.settings
    req = templates.expand(settings, asked)
    channels = list(dict.fromkeys(req.channels)) or list(settings.route(req.kind))
    if not channels:
        raise InvalidRequest(f"no channels given and no route configured for {req.kind!r} announcements", field="channels")
    unknown = [c for c in channels if c not in settings.channels]
    if unknown:
        raise InvalidRequest(f"unknown channel(s): {', '.join(unknown)}", field="channels")
    disabled = [c for c in channels if not settings.channels[c].enabled]
    if disabled:
        raise InvalidRequest(f"channel(s) disabled in the configuration: {', '.join(disabled)}", field="channels")
    bad_variants = [c for c in req.variants if c not in channels]
    if bad_variants:
        raise InvalidRequest(f"variants for channels this announcement does not go to: {', '.join(bad_variants)}",
                             field="variants")
    principal.check_post(req.kind, channels, settings.fallback_reach(channels))
    components = component_names.resolve(req.components, settings)
    component_states = component_names.explicit_states(req.component_states, components, settings)

    now = runtime.clock()
    publish_at = None if req.publish_at is None else float(req.publish_at)  # epoch seconds once validated
    due = publish_at if publish_at and publish_at > now else now
    scheduled = due > now
    status = req.status or {"incident": "investigating", "maintenance": "scheduled"}.get(req.kind)
    promise = promises.resolve(req.next_update_at, now)
    promises.check(req.kind, status, promise, now)
    new = NewAnnouncement(
        kind=req.kind, title=req.title, body=promises.with_promise(req.body, promise), url=req.url,
        severity=req.severity, components=components, component_states=component_states or None, tags=req.tags,
        channels=channels, variants=promised_variants(req, promise),
        status=status, publish_at=publish_at,
        window_starts_at=float(req.window.starts_at) if req.window else None,  # epoch seconds once validated
        window_ends_at=float(req.window.ends_at) if req.window else None,
        allowed_channels=principal.channel_limit(), next_update_at=promise,
    )
    quiet = not internal and req.kind in settings.quiet_during_incidents and runtime.ledger.open_incidents() > 0
    state = S.SCHEDULED if (scheduled or quiet) else S.PENDING
    reason = "accepted; scheduled for publish_at" if scheduled else (
        "accepted; held while an incident is open (quiet_during_incidents)" if quiet else "accepted")
    rows = [NewDelivery(ch, state, due_at=due, deadline_at=due + settings.deadline_for(req.kind, ch), reason=reason)
            for ch in channels]
    if not internal:
        rows = review.hold(runtime, req.kind, channels, principal, rows)  # two-person review, where configured
    idem = None
    if idempotency_key:  # the request as asked: a repeat of it replays, whatever a template says today
        idem = (principal.name, stored_key("", idempotency_key), request_hash(asked.model_dump(mode="json")))
    res = runtime.ledger.accept(new, rows, actor=principal.name, idempotency=idem)
    wake = [(d.id, d.channel) for d in res.deliveries if d.state == S.PENDING] if res.created else []
    if wake and not defer_enqueue:
        runtime.enqueue(wake)
        wake = []
    written = {"announcement": res.announcement, "updates": res.updates, "deliveries": res.deliveries,
               "events": res.events}
    return Submitted(res.announcement.id, res.created, [d.id for d in res.deliveries], to_enqueue=wake, status=written)


def promised_variants(req: AnnouncementIn, promise: float | None) -> dict[str, dict[str, str]]:
    """Each channel's own wording, its body stating the promise as the announcement's does."""
    out = {k: v.model_dump(exclude_none=True) for k, v in req.variants.items()}
    for v in out.values():
        if "body" in v:
            v["body"] = promises.with_promise(v["body"], promise)
    return out


def add_update(runtime: Runtime, ann_id: str, data: dict | UpdateIn, *, principal: Principal,
               idempotency_key: str | None = None, review_applies: bool = True) -> Submitted:
    """Post a follow-up to every channel the original went to (threaded where the channel can).

    Two-person review holds an update as it holds a post: always while the original still waits
    for approval (the update goes out with it, never before it), and when the update itself is of
    a kind or to a channel under review (``review_applies=False``: the automatic steps of an
    approved maintenance window, which say nothing a person wrote)."""
    try:
        req = data if isinstance(data, UpdateIn) else UpdateIn.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc) from None
    ledger = runtime.ledger
    ann = ledger.get_announcement(ann_id)
    if ann.retracted_at:
        raise InvalidRequest("this announcement was retracted; updates are no longer possible")
    allowed = {"incident": INCIDENT_STATUSES, "maintenance": MAINTENANCE_STATUSES}.get(ann.kind)
    if allowed and req.status not in allowed:
        raise InvalidRequest(f"status {req.status!r} is not valid for {wording.a(ann.kind)} (one of {', '.join(allowed)})",
                             field="status")
    asked, req = req, templates.for_update(runtime.settings, ann, req)
    originals = [d for d in ledger.deliveries_of(ann_id) if d.update_id is None]
    channels = list(dict.fromkeys(d.channel for d in originals
                                  if d.state not in (S.FALLEN_BACK, S.CANCELLED, S.RETRACTED)))
    channels = [c for c in channels if c in runtime.settings.channels and runtime.settings.channels[c].enabled]
    principal.check_post(ann.kind, channels, runtime.settings.fallback_reach(channels))
    if not channels:
        raise InvalidRequest("no channel of this announcement can take an update")
    now = runtime.clock()
    # an update of a scheduled announcement waits for it; otherwise it goes now
    first_due = max([d.due_at or now for d in originals] + [now])
    rows = [NewDelivery(ch, S.SCHEDULED if first_due > now else S.PENDING, due_at=first_due,
                        deadline_at=first_due + runtime.settings.deadline_for(ann.kind, ch),
                        reason=f"update: {req.status}")
            for ch in channels]
    original_held = any(d.state == S.SCHEDULED and d.due_at is None for d in originals)
    if original_held or (review_applies and review.needed(runtime, ann.kind, channels, principal)):
        rows = [replace(r, state=S.SCHEDULED, due_at=None, reason=f"update: {req.status}; {HELD_REASON}")
                for r in rows]
    promise = promises.resolve(req.next_update_at, now)
    promises.check(ann.kind, req.status, promise, now)
    components = None if req.components is None else component_names.resolve(req.components, runtime.settings)
    states, current = update_states(runtime, ann, req, components)
    change = AnnouncementChange(
        status=req.status, resolved_at=now if req.status in ("resolved", "completed", "cancelled") else None,
        components=components, component_states=current,
        # an incident's update keeps the last promise and makes (or not) the next one
        next_update_at=promise, promise_kept=ann.kind == "incident")
    idem = (principal.name, stored_key(f"update:{ann_id}:", idempotency_key),
            request_hash(asked.model_dump(mode="json"))) if idempotency_key else None
    body = promises.with_promise(req.body, promise)
    upd_id, created = ledger.add_update(ann_id, NewUpdate(req.status, body, req.title, states or None), rows,
                                        actor=principal.name, announcement_values=change, idempotency=idem)
    if created:
        fresh = [d for d in ledger.deliveries_of(ann_id) if d.update_id == upd_id]
        runtime.enqueue([(d.id, d.channel) for d in fresh if d.state == S.PENDING])
    return Submitted(upd_id, created)


def update_states(runtime: Runtime, ann: Announcement, req: UpdateIn,
                  components: list[str] | None) -> tuple[dict[str, str], dict[str, str] | None]:
    """An update's ``component_states`` checked as a first post's are (known components of this
    announcement — its new list when the update gives one — and known states), and the states
    the announcement holds after it: the latest given per component, so the status site shows
    what the last word on each component said. (None: the announcement's states stay as they are.)"""
    if not req.component_states:
        return {}, None
    if ann.kind not in ("incident", "maintenance"):
        raise InvalidRequest("component_states: only incidents and maintenance set component states",
                             field="component_states")
    affected = list(ann.components) if components is None else components
    states = component_names.explicit_states(req.component_states, affected, runtime.settings)
    kept = {name: st for name, st in ann.component_states.items() if name in affected}
    return states, {**kept, **states}


def retract(runtime: Runtime, ann_id: str, *, principal: Principal, reason: str = "") -> dict[str, int]:
    """Stop what has not gone out; delete what has, where the channel allows (a task per post)."""
    ledger = runtime.ledger
    ann = ledger.get_announcement(ann_id)
    principal.check_post(ann.kind, list(ann.channels))
    # one transaction: the mark, its audit entry and every cancellation of what has not gone out
    done = ledger.retract(ann_id, actor=principal.name, reason=reason)
    for d in done.live:
        runtime.enqueue_retract(d.id, d.channel)
    return {"cancelled": done.cancelled, "retracting": len(done.live), "already": done.already}


def retry_delivery(runtime: Runtime, delivery_id: str, *, principal: Principal) -> None:
    """Operator retry of a failed / unknown / fallen-back delivery: the operator has checked the
    channel, so the 'maybe sent' doubt is cleared and it is sent again."""
    ledger = runtime.ledger
    d = ledger.get_delivery(delivery_id)
    ann = ledger.get_announcement(d.announcement_id)
    principal.check_post(ann.kind, [d.channel])
    if ann.retracted_at:
        raise InvalidRequest("this announcement was retracted")
    if d.state in ACTIVE:
        raise InvalidRequest(f"delivery is {d.state}; it is still being worked on")
    if d.state in (S.DELIVERED, S.CANCELLED, S.RETRACTED):
        raise InvalidRequest(f"delivery is {d.state}; nothing to retry")
    now = runtime.clock()
    # the same row goes again (the ledger's one-delivery-per-channel key stays intact), with a
    # fresh deadline: the operator decided it is still worth sending
    ok = ledger.force(d.id, S.PENDING, f"operator retry from {d.state}", actor=principal.name,
                      from_states=[S.FAILED, S.UNKNOWN, S.FALLEN_BACK], due_at=now, maybe_sent=False,
                      deadline_at=now + runtime.settings.deadline_for(ann.kind, d.channel),
                      audited=Audited("delivery.retry", d.id, {"from": str(d.state)}))
    if not ok:
        raise InvalidRequest("delivery changed state meanwhile; reload and try again")
    runtime.enqueue([(d.id, d.channel)])


def confirm_delivered(runtime: Runtime, delivery_id: str, *, principal: Principal, url: str | None = None) -> None:
    """Settle an ``unknown`` delivery as delivered: the operator found the post on the channel, so
    it must not be sent again (the other way out of ``unknown`` is :func:`retry_delivery`)."""
    ledger = runtime.ledger
    d = ledger.get_delivery(delivery_id)
    ann = ledger.get_announcement(d.announcement_id)
    principal.check_post(ann.kind, [d.channel])
    if d.state != S.UNKNOWN:
        raise InvalidRequest(f"delivery is {d.state}; only an unknown delivery can be confirmed")
    if url is not None and not url.startswith(("http://", "https://")):
        raise InvalidRequest("url must start with http:// or https://", field="url")
    if url is not None and (len(url) > URL_MAX or text_problem(url, one_line=True)):  # the web form's too
        raise InvalidRequest(f"url: {text_problem(url, one_line=True) or f'at most {URL_MAX} characters'}",
                             field="url")
    if not ledger.force(d.id, S.DELIVERED, "confirmed on the channel by an operator", actor=principal.name,
                        from_states=[S.UNKNOWN], maybe_sent=False, remote_url=url or None,
                        audited=Audited("delivery.confirm", d.id, {"url": url})):
        raise InvalidRequest("delivery changed state meanwhile; reload and try again")


def cancel_scheduled(runtime: Runtime, ann_id: str, *, principal: Principal) -> int:
    ledger = runtime.ledger
    ann = ledger.get_announcement(ann_id)
    principal.check_post(ann.kind, list(ann.channels))
    return ledger.cancel_scheduled(ann_id, actor=principal.name)  # one transaction, audited


def status_of(runtime: Runtime, ann_id: str) -> dict[str, Any]:
    """The announcement with every delivery and its attempt log (what the API and CLI show)."""
    ann, updates, deliveries, events = runtime.ledger.snapshot(ann_id)
    return {"announcement": ann, "updates": updates, "deliveries": deliveries, "events": events,
            "held_by": held_by(runtime, ann, deliveries)}


def held_by(runtime: Runtime, ann: Announcement, deliveries: list[Delivery]) -> list[Announcement]:
    """The open incidents holding this announcement back (``quiet_during_incidents``), if any.

    A delivery that is ``scheduled`` past its publish time is waiting for no clock: without this,
    a held promotion would only say "scheduled" and nobody could tell why it did not go out."""
    settings = runtime.settings
    if ann.kind not in settings.quiet_during_incidents or settings.quiet_action != "hold":
        return []
    now = runtime.clock()
    if not any(d.state == S.SCHEDULED and (d.due_at is None or d.due_at <= now) for d in deliveries):
        return []
    # the same test the scheduler's hold uses (Ledger.open_incidents): not resolved, not retracted
    return [a for a in runtime.ledger.list_announcements(kind="incident", open_only=True, limit=20)
            if a.status != "resolved"]


def now_iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):  # a corrupt stored time must not break every listing
        return None

