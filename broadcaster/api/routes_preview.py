"""Preview: how each channel would render an announcement — nothing is sent or stored.

Rendering goes through ``compose`` like the workers' (the same public link and ``Verify:`` line,
the channel's own pure ``render``), so the texts, lengths and thread splits shown here are the
ones that will be posted.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated

from fastapi import Depends

from ..compose import compose, message_for
from ..errors import DeliveryError, InvalidRequest
from ..models import Announcement, Message, Window
from ..runtime import Runtime
from ..service import Principal
from .auth import principal
from .deps import make_router, runtime
from .routes_announcements import ERRORS
from .schemas import PreviewChannel, PreviewIn, PreviewOut

log = logging.getLogger(__name__)
router = make_router(tags=["preview"], responses=ERRORS)

#: previews rendered at once in this process. Rendering is CPU work in the thread pool; a few
#: at a time keep the event loop (and /healthz) getting the GIL, and leave the pool's other
#: threads for everyone else while one client floods the preview.
RENDER_SLOTS = threading.BoundedSemaphore(2)

#: same length as a real id, so the status-page link counts as it will
PREVIEW_ID = "ann_preview" + "0" * 14


def transient(body: PreviewIn, author: str, now: float, channels: list[str]) -> Announcement:
    window = Window(body.window.starts_at, body.window.ends_at) if body.window else None
    status = body.status or {"incident": "investigating", "maintenance": "scheduled"}.get(body.kind)
    return Announcement(
        id=PREVIEW_ID, kind=body.kind, title=body.title, body=body.body, url=body.url, severity=body.severity,
        components=tuple(body.components), publish_at=body.publish_at, window=window, channels=tuple(channels),
        variants={k: v.model_dump(exclude_none=True) for k, v in body.variants.items()}, tags=tuple(body.tags),
        status=status, author=author, created_at=now,
    )


def render_one(rt: Runtime, name: str, message: Message) -> PreviewChannel:
    kind = rt.settings.channels[name].kind
    try:
        ch = rt.channel(name)
        limit = ch.max_length
    except Exception as exc:  # noqa: BLE001 - a broken channel must not break the whole preview
        log.warning("preview: channel %s could not be built (%s)", name, type(exc).__name__)
        return PreviewChannel(channel=name, kind=kind, parts=[], lengths=[], limit=None, title=None, text=None,
                              error="this channel could not be prepared; see the server log")
    try:
        post = compose(ch, message)
    except DeliveryError as exc:
        return PreviewChannel(channel=name, kind=kind, parts=[], lengths=[], limit=limit, title=None, text=None,
                              error=str(exc))
    except Exception as exc:  # noqa: BLE001
        log.warning("preview: channel %s failed to render (%s)", name, type(exc).__name__)
        return PreviewChannel(channel=name, kind=kind, parts=[], lengths=[], limit=limit, title=None, text=None,
                              error="this channel could not render the text; see the server log")
    parts = list(post.parts or (post.text,))
    return PreviewChannel(channel=name, kind=kind, parts=parts, lengths=post.lengths(ch.count), limit=limit,
                          title=post.title, text=post.text)


def render_all(rt: Runtime, names: list[str], message: Message) -> list[PreviewChannel]:
    """Every channel's rendering, in one of the :data:`RENDER_SLOTS` (call from a worker thread)."""
    with RENDER_SLOTS:
        return [render_one(rt, name, message) for name in names]


@router.post("/preview", response_model=PreviewOut)
def preview(body: PreviewIn, who: Annotated[Principal, Depends(principal)], rt: Annotated[Runtime, Depends(runtime)]):
    """Render per channel (explicit ``channels``, else the route for ``kind``) without sending."""
    settings = rt.settings
    channels = list(dict.fromkeys(body.channels)) or list(settings.route(body.kind))
    if not channels:
        raise InvalidRequest(f"no channels given and no route configured for {body.kind!r} announcements",
                             field="channels")
    unknown = [c for c in channels if c not in settings.channels]
    if unknown:
        raise InvalidRequest(f"unknown channel(s): {', '.join(unknown)}", field="channels")
    message = message_for(settings, transient(body, who.name, rt.clock(), channels))
    return PreviewOut(channels=render_all(rt, channels, message))
