"""What callers hand the ledger to write, typed: a new announcement, an update, the deliveries
of either (and of a fallback), and the few columns of an announcement that change later.

Each knows its column values. ``of`` builds one from the older mapping shape (the same keys as
the fields), which the ledger still accepts from callers that have not moved to these types; an
unknown key is a caller's bug and raises ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..models import DeliveryState


@dataclass(frozen=True)
class NewAnnouncement:
    """An announcement as submitted. ``id`` is given only when the id is already known
    elsewhere (a break-glass post reconciled later keeps the id it was published with)."""

    kind: str
    title: str
    body: str | None = None
    url: str | None = None
    severity: str | None = None
    components: Sequence[str] = ()
    component_states: Mapping[str, str] | None = None
    tags: Sequence[str] = ()
    channels: Sequence[str] = ()
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    status: str | None = None
    publish_at: float | None = None
    window_starts_at: float | None = None
    window_ends_at: float | None = None
    #: the channels its author's token was limited to (None: no limit)
    allowed_channels: Sequence[str] | None = None
    #: an incident's promised next update (None: nothing promised)
    next_update_at: float | None = None
    id: str | None = None

    @classmethod
    def of(cls, fields: NewAnnouncement | Mapping[str, Any]) -> NewAnnouncement:
        return fields if isinstance(fields, NewAnnouncement) else cls(**fields)

    def values(self) -> dict[str, Any]:
        """Column values; None where the column keeps its default (or stays empty)."""
        return {"id": self.id, "kind": self.kind, "title": self.title, "body": self.body, "url": self.url,
                "severity": self.severity, "components": list(self.components),
                "component_states": None if self.component_states is None else dict(self.component_states),
                "tags": list(self.tags), "channels": list(self.channels),
                "variants": {k: dict(v) for k, v in self.variants.items()}, "status": self.status,
                "publish_at": self.publish_at, "window_starts_at": self.window_starts_at,
                "window_ends_at": self.window_ends_at, "next_update_at": self.next_update_at,
                "allowed_channels": None if self.allowed_channels is None else list(self.allowed_channels)}


@dataclass(frozen=True)
class NewUpdate:
    status: str
    body: str | None = None
    title: str | None = None
    #: component → state this update sets (None: it changes no state)
    component_states: Mapping[str, str] | None = None

    @classmethod
    def of(cls, fields: NewUpdate | Mapping[str, Any]) -> NewUpdate:
        return fields if isinstance(fields, NewUpdate) else cls(**fields)


@dataclass(frozen=True)
class AnnouncementChange:
    """Columns of an announcement that change after it was written (None: unchanged)."""

    status: str | None = None
    resolved_at: float | None = None
    retracted_at: float | None = None
    components: Sequence[str] | None = None
    #: every component's current explicit state (an update's states over the earlier ones)
    component_states: Mapping[str, str] | None = None
    #: an incident's new promise; with ``promise_kept`` (an update that promises nothing more) it is cleared
    next_update_at: float | None = None
    promise_kept: bool = False

    @classmethod
    def of(cls, values: AnnouncementChange | Mapping[str, Any] | None) -> AnnouncementChange:
        if isinstance(values, AnnouncementChange):
            return values
        return cls(**(values or {}))

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "resolved_at": self.resolved_at,
                               "retracted_at": self.retracted_at,
                               "components": None if self.components is None else list(self.components),
                               "component_states": None if self.component_states is None
                               else dict(self.component_states),
                               "next_update_at": self.next_update_at}
        out = {k: v for k, v in out.items() if v is not None}
        if self.promise_kept and self.next_update_at is None:
            out["next_update_at"] = None  # the promise was kept, and no new one was made
        return out


@dataclass(frozen=True)
class NewDelivery:
    """A delivery of a message that is being written (routed, or a fallback).

    ``due_at`` is ``"now"`` (the moment it is written), a time, or None: no due time at all —
    a post held for review, which the sweep never releases."""

    channel: str
    state: DeliveryState = DeliveryState.PENDING
    due_at: float | Literal["now"] | None = "now"
    deadline_at: float | None = None
    #: the first event's reason
    reason: str = "accepted"
    #: the delivery that failed over to this one
    fallback_of: str | None = None
    #: given only when the id is already known elsewhere (break-glass reconcile)
    id: str | None = None

    @classmethod
    def of(cls, d: NewDelivery | Mapping[str, Any]) -> NewDelivery:
        if isinstance(d, NewDelivery):
            return d
        given = dict(d)
        if "state" in given:
            given["state"] = DeliveryState(given["state"])
        return cls(**given)
