"""Preview: how each channel would post an announcement — nothing is sent or stored.

One use case for the API (``POST /api/v1/preview``) and the web page's live preview. The text
goes through :mod:`broadcaster.compose` like the workers' (the same public link and ``Verify:``
line, the channel's own pure ``render``), so the texts, lengths and thread splits shown are the
ones that will be posted; only the announcement id, which does not exist yet, is a placeholder
of the same length.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydantic import Field

from . import promises, templates
from .compose import compose, message_for
from .errors import DeliveryError, InvalidRequest
from .ledger import new_id
from .models import Announcement, Message, Window
from .requests import Title
from .runtime import Runtime
from .service import AnnouncementIn, promised_variants

log = logging.getLogger(__name__)

#: same length as a real id (read from the id maker, so the two cannot drift apart), so every
#: link that carries the id counts as it will in the post
PREVIEW_ID = "ann_preview".ljust(len(new_id("ann")), "0")


class PreviewIn(AnnouncementIn):
    """Same fields as a submission; the title may be empty while someone is still typing."""

    title: Title = Field("", description="may be empty while the author is still typing")


@dataclass(frozen=True)
class ChannelPreview:
    """One channel's rendering, or why it would refuse the text."""

    channel: str
    kind: str
    parts: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    limit: int | None = None
    title: str | None = None
    text: str | None = None
    error: str | None = None


def transient(body: PreviewIn, author: str, now: float, channels: list[str]) -> Announcement:
    """The announcement ``body`` would become, routed to ``channels`` (never stored)."""
    # the validators made both times epoch seconds (the str in their type is what clients may send)
    window = Window(float(body.window.starts_at), float(body.window.ends_at)) if body.window else None
    publish_at = float(body.publish_at) if body.publish_at is not None else None
    status = body.status or {"incident": "investigating", "maintenance": "scheduled"}.get(body.kind)
    promise = promises.resolve(body.next_update_at, now)
    promises.check(body.kind, status, promise, now)
    return Announcement(
        id=PREVIEW_ID, kind=body.kind, title=body.title, body=promises.with_promise(body.body, promise), url=body.url,
        severity=body.severity, components=tuple(body.components), publish_at=publish_at, window=window,
        channels=tuple(channels), variants=promised_variants(body, promise), tags=tuple(body.tags),
        status=status, author=author, created_at=now, component_states=dict(body.component_states),
        next_update_at=promise,
    )


def channels_for(rt: Runtime, body: PreviewIn) -> list[str]:
    """The explicit channels (each once, in order), else the route for the kind."""
    settings = rt.settings
    channels = list(dict.fromkeys(body.channels)) or list(settings.route(body.kind))
    if not channels:
        raise InvalidRequest(f"no channels given and no route configured for {body.kind!r} announcements",
                             field="channels")
    unknown = [c for c in channels if c not in settings.channels]
    if unknown:
        raise InvalidRequest(f"unknown channel(s): {', '.join(unknown)}", field="channels")
    return channels


def render_one(rt: Runtime, name: str, message: Message) -> ChannelPreview:
    kind = rt.settings.channels[name].kind
    try:
        ch = rt.channel(name)
        limit = ch.max_length
    except Exception as exc:  # noqa: BLE001 - a broken channel must not break the whole preview
        log.warning("preview: channel %s could not be built (%s)", name, type(exc).__name__)
        return ChannelPreview(name, kind, error="this channel could not be prepared; see the server log")
    try:
        post = compose(ch, message)
    except DeliveryError as exc:
        return ChannelPreview(name, kind, limit=limit, error=str(exc))
    except Exception as exc:  # noqa: BLE001
        log.warning("preview: channel %s failed to render (%s)", name, type(exc).__name__)
        return ChannelPreview(name, kind, limit=limit, error="this channel could not render the text; see the server log")
    return ChannelPreview(name, kind, parts=list(post.parts or (post.text,)), lengths=post.lengths(ch.count),
                          limit=limit, title=post.title, text=post.text)


def preview(rt: Runtime, body: PreviewIn, author: str) -> list[ChannelPreview]:
    """Every channel's rendering of ``body``. CPU work: callers run it in a render slot, off the
    event loop (``api/render_slots.py``)."""
    body = templates.expand(rt.settings, body, need_title=False)
    channels = channels_for(rt, body)
    message = message_for(rt.settings, transient(body, author, rt.clock(), channels))
    return [render_one(rt, name, message) for name in channels]
