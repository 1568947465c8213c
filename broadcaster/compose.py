"""Compose: the one way an announcement (or an update) becomes what a channel posts.

The worker, the preview and break-glass all go through here, so the text a person previews is
byte for byte the text that is posted: the same public link, the same ``Verify:`` line (only
when a status page carries the announcement's signature), the same channel ``render`` with its
length rules and thread split. Two steps:

- :func:`message_for` — what is being said: the announcement, the update if any, the thread it
  replies to, its public and verify links. Pure given its inputs.
- :func:`compose` — how one channel says it: the channel's pure ``render``, then the ids the
  post travels with (announcement, update, delivery) and, for a channel that publishes
  signatures (``Channel.carries_signatures``), the Ed25519 signature of the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import signing
from .models import Announcement, Message, Post, Receipt, Update

if TYPE_CHECKING:
    from .channels.base import Channel
    from .config import Settings


def message_for(settings: Settings, announcement: Announcement, update: Update | None = None,
                thread: Iterable[Receipt] = ()) -> Message:
    """The message a channel renders for ``announcement`` (or its ``update``, replying in ``thread``)."""
    public = f"{settings.public_url.rstrip('/')}/a/{announcement.id}"
    return Message(announcement=announcement, update=update, thread=tuple(thread), public_url=public,
                   verify_link=signing.verification_suffix(settings, announcement.id, announcement.channels))


def compose(channel: Channel[Any], message: Message, *, delivery_id: str | None = None,
            settings: Settings | None = None) -> Post:
    """``channel``'s post for ``message``. Raises what ``render`` raises (``ContentRejected``…).

    ``delivery_id`` is the stable key the post is sent under (None for a preview); with
    ``settings`` a signing channel's post carries the message's signature (a preview passes
    none: it shows the text, which a signature does not change)."""
    return stamp(channel, channel.render(message), message, delivery_id=delivery_id, settings=settings)


def stamp(channel: Channel[Any], post: Post, message: Message, *, delivery_id: str | None,
          settings: Settings | None) -> Post:
    """A rendered post with the ids it travels with (and its signature, see :func:`compose`).
    Separate so the worker can tell a render failure (the text's fault) from anything later."""
    meta: dict[str, Any] = {
        **post.meta,
        "announcement_id": message.announcement.id,
        "update_id": message.update.id if message.update else None,
        "delivery_id": delivery_id,
        "created_at": message.update.created_at if message.update else message.announcement.created_at,
    }
    if settings is not None and channel.carries_signatures:
        meta["signature"] = signing.sign_message(settings, message)
    return replace(post, meta=meta)
