"""The JSON shapes of the HTTP API — a contract the CLI client and the web page rely on.

Rules: times are ISO 8601 UTC strings ending in ``Z`` (or null); ids are opaque strings; lists
are paged as ``{"items": [...], "next": cursor|null}``; every error is
``{"error": {"code", "message", "details"}}``. Add fields freely; never rename or remove one.

Request bodies are the service's own models (``AnnouncementIn``, ``UpdateIn``) so the API
validates exactly what the CLI and the web page submit.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .models import (
    OVERALL_WORDS,
    Announcement,
    Delivery,
    DeliveryEvent,
    Update,
    current_error,
    overall,
)
from .requests import Reason
from .service import now_iso

iso = now_iso  # epoch seconds → "2026-01-02T03:04:05.678Z"


class Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# ---------------------------------------------------------------- errors


class ErrorBody(Out):
    code: str = Field(description="stable machine-readable code, e.g. not_found, forbidden, idempotency_conflict")
    message: str = Field(description="a plain sentence for people")
    details: dict[str, Any] = Field(default_factory=dict, description="e.g. {'field': 'title'} for validation errors")


class ErrorOut(Out):
    error: ErrorBody


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An :class:`ErrorOut` answer: every refusal of the API and the page has this one shape."""
    return JSONResponse({"error": {"code": code, "message": message, "details": details or {}}},
                        status_code=status, headers=headers)


# ---------------------------------------------------------------- deliveries


class EventOut(Out):
    """One recorded state change of a delivery (the attempt log)."""

    at: str | None
    from_: str | None = Field(None, alias="from", serialization_alias="from")
    to: str
    attempt: int
    reason: str
    response: str | None = None


class DeliveryOut(Out):
    id: str
    announcement_id: str
    update_id: str | None = Field(None, description="null for the announcement itself, else the update it carries")
    channel: str
    state: str = Field(description="scheduled pending sending retrying delivered unknown failed fallen_back cancelled "
                                   "retracted")
    attempts: int
    due_at: str | None
    deadline_at: str | None
    remote_id: str | None
    remote_url: str | None
    last_error: str | None = Field(description="the last error recorded, kept after the delivery recovers")
    current_error: str | None = Field(None, description="last_error while it still matters (failed, unknown, "
                                      "retrying, fallen_back); null once delivered, e.g. after confirm; on a "
                                      "retracted delivery, why the post is still visible (e.g. 'cannot be "
                                      "deleted on email: still visible to readers'), null when it was deleted")
    fallback_of: str | None = Field(None, description="id of the delivery this one stands in for")
    maybe_sent: bool = Field(False, description="an earlier attempt may have landed; being checked, never re-posted")
    created_at: str | None
    updated_at: str | None
    settled_at: str | None
    events: list[EventOut] = Field(default_factory=list)


def event_out(e: DeliveryEvent) -> EventOut:
    return EventOut(at=iso(e.at), from_=e.from_state, to=e.to_state, attempt=e.attempt, reason=e.reason,
                    response=e.response)


def delivery_out(d: Delivery, events: list[DeliveryEvent] | None = None) -> DeliveryOut:
    return DeliveryOut(
        id=d.id, announcement_id=d.announcement_id, update_id=d.update_id, channel=d.channel, state=str(d.state),
        attempts=d.attempts, due_at=iso(d.due_at), deadline_at=iso(d.deadline_at), remote_id=d.remote_id,
        remote_url=d.remote_url, last_error=d.last_error,
        current_error=current_error(d.state, d.last_error), fallback_of=d.fallback_of, maybe_sent=d.maybe_sent,
        created_at=iso(d.created_at), updated_at=iso(d.updated_at), settled_at=iso(d.settled_at),
        events=[event_out(e) for e in events or ()],
    )


# ---------------------------------------------------------------- announcements


class UpdateOut(Out):
    id: str
    announcement_id: str
    status: str
    title: str | None
    body: str
    author: str | None
    created_at: str | None
    #: the component states this update set (empty: none)
    component_states: dict[str, str]


def update_out(u: Update) -> UpdateOut:
    return UpdateOut(id=u.id, announcement_id=u.announcement_id, status=u.status, title=u.title, body=u.body,
                     author=u.author, created_at=iso(u.created_at), component_states=dict(u.component_states))


class WindowOut(Out):
    starts_at: str | None
    ends_at: str | None


class AnnouncementOut(Out):
    """An announcement as listed: its fields plus a one-word summary of its deliveries."""

    id: str
    kind: str
    title: str
    body: str
    url: str | None
    severity: str | None
    status: str | None
    components: list[str]
    component_states: dict[str, str]
    tags: list[str]
    channels: list[str]
    variants: dict[str, dict[str, str]]
    publish_at: str | None
    window: WindowOut | None
    next_update_at: str | None = Field(None, description="incidents: when the next update is promised (null: "
                                       "none promised, or resolved); the body says so too")
    author: str | None
    created_at: str | None
    retracted_at: str | None
    overall: str = Field(description="one word for all its deliveries: " + " | ".join(OVERALL_WORDS)
                         + " (see docs/operations.md, 'Reading status')")
    counts: dict[str, int] = Field(description="number of deliveries per state")


class HoldOut(Out):
    """An open incident that holds this announcement back (``quiet_during_incidents``)."""

    id: str
    title: str


class AnnouncementDetail(AnnouncementOut):
    """One announcement with every delivery (and its attempt log) and every update."""

    deliveries: list[DeliveryOut]
    updates: list[UpdateOut]
    held_by: list[HoldOut] = Field(default_factory=list, description="open incidents holding its scheduled "
                                   "deliveries past their publish time; empty when nothing is held")


def _counts(deliveries: list[Delivery]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in deliveries:
        out[str(d.state)] = out.get(str(d.state), 0) + 1
    return out


def _fields(a: Announcement, deliveries: list[Delivery]) -> dict[str, Any]:
    return dict(
        id=a.id, kind=a.kind, title=a.title, body=a.body, url=a.url, severity=a.severity, status=a.status,
        components=list(a.components), component_states=dict(a.component_states),
        tags=list(a.tags), channels=list(a.channels), variants=dict(a.variants),
        publish_at=iso(a.publish_at), next_update_at=iso(a.next_update_at),
        window=WindowOut(starts_at=iso(a.window.starts_at), ends_at=iso(a.window.ends_at)) if a.window else None,
        author=a.author, created_at=iso(a.created_at), retracted_at=iso(a.retracted_at),
        overall=overall([d.state for d in deliveries], retracted=a.retracted_at is not None),
        counts=_counts(deliveries),
    )


def announcement_out(a: Announcement, deliveries: list[Delivery]) -> AnnouncementOut:
    return AnnouncementOut(**_fields(a, deliveries))


def announcement_detail(status: dict[str, Any]) -> AnnouncementDetail:
    """From ``service.status_of``'s dict."""
    a, deliveries, events = status["announcement"], status["deliveries"], status["events"]
    return AnnouncementDetail(
        **_fields(a, deliveries),
        deliveries=[delivery_out(d, events.get(d.id)) for d in deliveries],
        updates=[update_out(u) for u in status["updates"]],
        held_by=[HoldOut(id=h.id, title=h.title) for h in status.get("held_by") or ()],
    )


class AnnouncementPage(Out):
    items: list[AnnouncementOut]
    next: str | None = Field(None, description="pass as ?before= to get the next (older) page; null at the end")


class UpdateAccepted(Out):
    id: str = Field(description="the update's id")
    announcement_id: str
    status: str
    deliveries: list[DeliveryOut] = Field(description="one per channel the update goes to")


# ---------------------------------------------------------------- actions


class RetractIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: Reason = ""


class RetractOut(Out):
    id: str
    cancelled: int = Field(description="deliveries stopped before they went out")
    retracting: int = Field(description="posts being deleted on their channel")
    already: int = Field(description="deliveries already settled otherwise")


class CancelOut(Out):
    id: str
    cancelled: int


class RetryOut(Out):
    id: str
    announcement_id: str
    channel: str
    state: str


# ---------------------------------------------------------------- preview


class PreviewChannel(Out):
    channel: str
    kind: str = Field(description="the channel's kind (mastodon, email, webhook, ...)")
    parts: list[str] = Field(description="the thread as it would be posted (one part when it fits)")
    lengths: list[int] = Field(description="length of each part by the channel's own counting rule")
    limit: int | None = Field(description="maximum length of one part; null when the channel has none")
    title: str | None
    text: str | None
    error: str | None = Field(None, description="why this channel would refuse the text, else null")


class PreviewOut(Out):
    channels: list[PreviewChannel]


# ---------------------------------------------------------------- channels and health


class BreakerOut(Out):
    state: str = Field(description="closed | open | half_open | unknown (shared state unreachable)")
    failures: int = 0
    opened_at: str | None = None
    retry_at: str | None = None


class ChannelOut(Out):
    name: str
    kind: str
    enabled: bool
    description: str | None
    queue: str
    breaker: BreakerOut
    last_success: str | None
    backlog: int = Field(description="deliveries pending, sending or retrying")
    oldest_due: str | None
    counts: dict[str, int] = Field(description="number of deliveries per state")


class ChannelList(Out):
    items: list[ChannelOut]


class Health(Out):
    status: str = "ok"


class PartOut(Out):
    state: str = Field(description="running | restarting | left out | stopped")
    restarts: int = Field(description="restarts since `broadcaster up` began")
    last_exit: int | None = Field(description="exit code of its last exit (negative: killed by that signal)")
    next_try_at: str | None = Field(description="while restarting: when the next try is due")


class Ready(Out):
    status: str = Field(description="ok | unavailable")
    checks: dict[str, str] = Field(description="per dependency: ok, unavailable (reason) or skipped")
    parts: dict[str, PartOut] = Field(
        default_factory=dict,
        description="under `broadcaster up`: each process it runs (api, worker, scheduler, sandbox) and its "
                    "state; a part restarting does not make the API unready (it still accepts), so it is "
                    "reported here, not in status")
