"""Plain data shared by the ledger, the delivery engine and the channels.

No I/O here: these are the nouns of the product (docs/architecture.md) (announcement, update, delivery, post, receipt).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

KINDS = ("incident", "maintenance", "promotion", "deploy", "notice")
SEVERITIES = ("minor", "major", "critical")
#: what an incident or maintenance may set a component to (Statuspage's component vocabulary)
COMPONENT_STATES = ("operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance")
INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
MAINTENANCE_STATUSES = ("scheduled", "in_progress", "completed", "cancelled")


class DeliveryState(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for publish_at (or held while an incident is open)
    PENDING = "pending"  # due, waiting for a worker
    SENDING = "sending"  # claimed by a worker under a lease
    RETRYING = "retrying"  # an attempt failed transiently; due again at due_at
    DELIVERED = "delivered"
    UNKNOWN = "unknown"  # may have landed; shown to operators, never re-posted blindly
    FAILED = "failed"
    FALLEN_BACK = "fallen_back"  # failed, and its fallback channels took over
    CANCELLED = "cancelled"
    RETRACTED = "retracted"



#: states from which a worker may claim a delivery
CLAIMABLE = frozenset({DeliveryState.PENDING, DeliveryState.RETRYING})
#: states nothing moves out of by itself (an operator retry or a retraction can)
SETTLED = frozenset(
    {
        DeliveryState.DELIVERED,
        DeliveryState.UNKNOWN,
        DeliveryState.FAILED,
        DeliveryState.FALLEN_BACK,
        DeliveryState.CANCELLED,
        DeliveryState.RETRACTED,
    }
)
#: states still in flight
ACTIVE = frozenset(set(DeliveryState) - SETTLED)


#: states whose ``last_error`` is still news: once a later attempt or an operator's ``confirm``
#: settled a delivery as delivered, its old error is history (kept in the attempt log), not a failure.
#: A retracted delivery's is the retraction's own note — set only when the post is still up
#: ("cannot be deleted on email: still visible to readers"), cleared when it was deleted.
ERROR_STATES = frozenset({"failed", "unknown", "retrying", "fallen_back", "retracted"})


def current_error(state: str | DeliveryState, last_error: str | None) -> str | None:
    """The error to show next to a delivery now (the API's ``current_error``), or None."""
    return last_error if str(state) in ERROR_STATES else None


#: the one-word summaries :func:`overall` can give (the API documents them; the page styles them)
OVERALL_WORDS = ("empty", "in_progress", "attention", "scheduled", "retracting", "delivered", "retracted",
                 "cancelled")


def overall(states: Iterable[str | DeliveryState], *, retracted: bool = False) -> str:
    """One word for a set of delivery states — the single definition the API, the page and the CLI share.

    Checked in this order, so the word names what a person should look at first:

    1. ``empty`` — no deliveries.
    2. ``in_progress`` — something is pending, sending or retrying.
    3. If the announcement was ``retracted``: ``retracting`` while a post may still be up (a
       delivered or unknown row whose deletion is queued), else ``retracted`` — a channel that
       failed no longer matters once the announcement is withdrawn.
    4. ``attention`` — a channel failed or is unknown: someone must look.
    5. ``scheduled`` — the rest waits for its publish time (or is held during an incident).
    6. Everything settled well: ``delivered`` if at least one channel has it (``fallen_back``
       counts: its fallback took over), else ``retracted`` if a post was withdrawn, else
       ``cancelled`` — nothing ever went out.
    """
    words = {str(s) for s in states}
    if not words:
        return "empty"
    if words & {"pending", "sending", "retrying"}:
        return "in_progress"
    if retracted:  # a failed channel no longer matters; an unknown one is being deleted too
        return "retracting" if words & {"delivered", "unknown"} else "retracted"
    if words & {"failed", "unknown"}:
        return "attention"
    if "scheduled" in words:
        return "scheduled"
    if words & {"delivered", "fallen_back"}:
        return "delivered"
    if "retracted" in words:
        return "retracted"
    return "cancelled"


@dataclass(frozen=True)
class Window:
    starts_at: float
    ends_at: float


@dataclass(frozen=True)
class Announcement:
    id: str
    kind: str
    title: str
    body: str = ""
    url: str | None = None
    severity: str | None = None
    components: tuple[str, ...] = ()
    publish_at: float | None = None
    window: Window | None = None
    channels: tuple[str, ...] = ()
    variants: dict[str, dict[str, str]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    status: str | None = None
    author: str | None = None
    created_at: float = 0.0
    retracted_at: float | None = None
    #: the channels the author's token was limited to (None: any); fallbacks stay inside them
    allowed_channels: tuple[str, ...] | None = None
    #: component → state the author chose (status pages); a component not here follows severity
    component_states: dict[str, str] = field(default_factory=dict)
    #: an incident's promised "next update by" (epoch seconds; None: nothing promised, or resolved)
    next_update_at: float | None = None

    def variant(self, channel: str) -> tuple[str, str]:
        """Title and body as ``channel`` should see them (per-channel variant wins)."""
        v = self.variants.get(channel) or {}
        body = v.get("body")
        return v.get("title") or self.title, body if body is not None else self.body


@dataclass(frozen=True)
class Update:
    id: str
    announcement_id: str
    status: str
    body: str
    title: str | None = None
    author: str | None = None
    created_at: float = 0.0
    #: the component states this update set (empty: it changed none)
    component_states: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """What a provider answered: enough to link, thread under, look up and retract."""

    remote_id: str | None = None
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"remote_id": self.remote_id, "url": self.url, "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Receipt | None:
        if not data:
            return None
        return cls(remote_id=data.get("remote_id"), url=data.get("url"), extra=dict(data.get("extra") or {}))


@dataclass(frozen=True)
class Message:
    """One thing to deliver to one channel: an announcement, or an update of it.

    ``thread`` holds the receipts of earlier deliveries of the same announcement on the same
    channel (oldest first), so an update can reply under the original post.
    """

    announcement: Announcement
    update: Update | None = None
    thread: tuple[Receipt, ...] = ()
    public_url: str | None = None  # link to the announcement on our status page, if any
    verify_link: str | None = None  # "\n\nVerify: <url>" ending every plain text (signing.verification_suffix)

    @property
    def is_update(self) -> bool:
        return self.update is not None

    @property
    def status(self) -> str | None:
        return self.update.status if self.update else self.announcement.status


@dataclass(frozen=True)
class Post:
    """A message rendered for one channel: exactly what would be sent.

    ``parts`` is the thread of texts for microblogs (one part when it fits); ``title``,
    ``text`` and ``html`` serve channels with a subject and a body (email, status pages, chat).
    ``reply_to`` is the receipt to thread under; ``meta`` carries channel-specific extras.
    """

    channel: str
    kind: str
    title: str
    text: str
    parts: tuple[str, ...] = ()
    html: str | None = None
    url: str | None = None
    reply_to: Receipt | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def lengths(self, counter=len) -> list[int]:
        return [counter(p) for p in (self.parts or (self.text,))]


@dataclass(frozen=True)
class Delivery:
    """One announcement (or update) to one channel, as the ledger holds it."""

    id: str
    announcement_id: str
    channel: str
    state: DeliveryState
    update_id: str | None = None
    attempts: int = 0
    due_at: float | None = None
    deadline_at: float | None = None
    lease_until: float | None = None
    lease_owner: str | None = None
    maybe_sent: bool = False
    remote_id: str | None = None
    remote_url: str | None = None
    receipt: Receipt | None = None
    last_error: str | None = None
    fallback_of: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    settled_at: float | None = None

    @property
    def key(self) -> str:
        """The stable idempotency key sent to the provider on every attempt."""
        return self.id


@dataclass(frozen=True)
class DeliveryEvent:
    """One recorded state change: the attempt log operators read."""

    delivery_id: str
    at: float
    from_state: str | None
    to_state: str
    attempt: int
    reason: str
    response: str | None = None
