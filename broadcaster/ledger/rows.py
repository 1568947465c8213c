"""Rows of the ledger as the plain data of ``broadcaster.models``: one function per table (each
takes a row's mapping, or a dict of its columns), so every reader builds an Announcement, an
Update, a Delivery or a DeliveryEvent the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models import Announcement, Delivery, DeliveryEvent, DeliveryState, Receipt, Update, Window


def announcement_of(m: Mapping[Any, Any]) -> Announcement:
    window = None
    if m["window_starts_at"] is not None and m["window_ends_at"] is not None:
        window = Window(m["window_starts_at"], m["window_ends_at"])
    return Announcement(
        id=m["id"], kind=m["kind"], title=m["title"], body=m["body"] or "", url=m["url"], severity=m["severity"],
        components=tuple(m["components"] or ()), publish_at=m["publish_at"], window=window,
        channels=tuple(m["channels"] or ()), variants=dict(m["variants"] or {}), tags=tuple(m["tags"] or ()),
        status=m["status"], author=m["author"], created_at=m["created_at"], retracted_at=m["retracted_at"],
        allowed_channels=None if m["allowed_channels"] is None else tuple(m["allowed_channels"]),
        component_states=dict(m["component_states"] or {}), next_update_at=m.get("next_update_at"),
    )


def update_of(m: Mapping[Any, Any]) -> Update:
    return Update(id=m["id"], announcement_id=m["announcement_id"], status=m["status"], body=m["body"] or "",
                  title=m["title"], author=m["author"], created_at=m["created_at"],
                  component_states=dict(m.get("component_states") or {}))


def delivery_of(m: Mapping[Any, Any]) -> Delivery:
    return Delivery(
        id=m["id"], announcement_id=m["announcement_id"], channel=m["channel"], state=DeliveryState(m["state"]),
        update_id=m["update_id"], attempts=m["attempts"], due_at=m["due_at"], deadline_at=m["deadline_at"],
        lease_until=m["lease_until"], lease_owner=m["lease_owner"], maybe_sent=bool(m["maybe_sent"]),
        remote_id=m["remote_id"], remote_url=m["remote_url"], receipt=Receipt.from_dict(m["receipt"]),
        last_error=m["last_error"], fallback_of=m["fallback_of"], created_at=m["created_at"],
        updated_at=m["updated_at"], settled_at=m["settled_at"],
    )


def event_of(m: Mapping[Any, Any]) -> DeliveryEvent:
    return DeliveryEvent(m["delivery_id"], m["at"], m["from_state"], m["to_state"], m["attempt"], m["reason"],
                         m["response"])
