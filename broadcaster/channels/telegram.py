"""Telegram: the Bot API's ``sendMessage`` into a channel, group or chat.

The Bot API has no idempotency key and no way to find a message by anything we chose, so an
ambiguous send (the connection dropped after the request went out) ends ``unknown`` rather
than risking a second post in a public channel. Threads are replies: each part of a long text,
and each later update, replies to the message before it (``reply_parameters`` with
``allow_sending_without_reply``, so a deleted parent does not block the update).

Text goes with ``parse_mode: HTML``; author text is escaped (``&``, ``<``, ``>``) so nothing in
it becomes markup, and lengths are measured as Telegram measures them: after entity parsing,
in UTF-16 code units, at most 4096. A 429 carries ``parameters.retry_after`` (seconds), which
is the exact wait handed to the delivery policy. Retract is ``deleteMessage``.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from typing import Any, Literal

from pydantic import Field

from ..config import ChannelSettings, Secret, Url
from ..errors import AmbiguousDelivery, AuthError, ContentRejected, PermanentError, RateLimited, TransientError
from ..models import Message, Post, Receipt
from . import _http
from .base import Channel, Progress, done_parts
from .registry import register

#: Telegram's limit for one message's text, after entity parsing
MAX_TEXT = 4096


class TelegramSettings(ChannelSettings):
    kind: Literal["telegram"] = "telegram"
    base_url: Url = "https://api.telegram.org"
    bot_token: Secret  # "123456:ABC…" from @BotFather; it is part of every request's path
    #: ``@channelusername`` or a numeric chat id (``-100…`` for channels and supergroups)
    chat_id: str = Field(min_length=2)
    #: post without a notification sound (Telegram's ``disable_notification``)
    silent: bool = False
    link_previews: bool = False


# ---------------------------------------------------------------- pure request/response shaping


def escape(text: str) -> str:
    """Author text for ``parse_mode: HTML``: the three characters Telegram's HTML parser reads."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


#: an ``&`` that does not start one of the entities :func:`escape` writes: a cut-off entity
_BROKEN_ENTITY = re.compile(r"&(?!(?:amp|lt|gt);)[a-z]*")


def heal(part: str) -> str:
    """A part cut inside an entity (only a single word longer than the limit is cut mid-word)
    loses the fragment, which Telegram's HTML parser would refuse."""
    return _BROKEN_ENTITY.sub("", part)


def visible_length(text: str) -> int:
    """Telegram's length of an HTML-mode text: the parsed text (entities decoded) in UTF-16 units."""
    return len(html.unescape(text).encode("utf-16-le")) // 2


def message_body(chat_id: str, text: str, *, reply_to: str | None, silent: bool, previews: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"chat_id": chat_id, "text": text, "parse_mode": "HTML",
                            "link_preview_options": {"is_disabled": not previews}}
    if silent:
        body["disable_notification"] = True
    if reply_to:
        body["reply_parameters"] = {"message_id": int(reply_to), "allow_sending_without_reply": True}
    return body


def message_url(chat_id: str, message_id: str) -> str | None:
    """``t.me`` link: public channels by username, private ones by their ``-100`` id; else none."""
    if chat_id.startswith("@"):
        return f"https://t.me/{chat_id[1:]}/{message_id}"
    if chat_id.startswith("-100"):
        return f"https://t.me/c/{chat_id[4:]}/{message_id}"
    return None


def reply_target(receipt: Receipt | None) -> str | None:
    if receipt is None:
        return None
    return receipt.extra.get("last_id") or receipt.remote_id


def classify(response: Any, what: str) -> None:
    """The Bot API's answer: ``{"ok": false, "error_code", "description", "parameters"}``."""
    code = response.status_code
    if 200 <= code < 300:
        return
    found = _http.json_or_none(response)
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    desc = str(data.get("description") or "")
    raw_params = data.get("parameters")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    excerpt = _http.short(response)
    if code == 429:
        wait = params.get("retry_after")
        if not isinstance(wait, (int, float)):
            wait = _http.parse_retry_after(response.headers.get("retry-after"))
        raise RateLimited(f"{what}: rate limited (retry after {wait}s)", retry_after=wait, response=excerpt, status=429)
    if code in (401, 404):  # a wrong or revoked token answers 401 Unauthorized or 404 Not Found
        raise AuthError(f"{what}: bot token refused (HTTP {code})", response=excerpt, status=code)
    if code == 400 and "migrate_to_chat_id" in params:
        raise PermanentError(f"{what}: the group became a supergroup; set chat_id to {params['migrate_to_chat_id']}",
                             response=excerpt, status=code)
    lowered = desc.lower()
    if code == 400 and ("too long" in lowered or "parse entities" in lowered or "text is empty" in lowered):
        raise ContentRejected(f"{what}: text refused ({desc})", response=excerpt, status=code)
    if code == 403:
        raise PermanentError(f"{what}: the bot may not post there ({desc or 'Forbidden'}); add it to the chat "
                             "as an administrator allowed to post", response=excerpt, status=code)
    if code >= 500:
        raise TransientError(f"{what}: provider error (HTTP {code})", response=excerpt, status=code)
    raise PermanentError(f"{what}: request refused (HTTP {code}: {desc})", response=excerpt, status=code)


def parse_message(response: Any, what: str) -> str:
    data = _http.json_or_none(response)
    result = data.get("result") if isinstance(data, dict) and data.get("ok") else None
    if not isinstance(result, dict) or result.get("message_id") is None:
        raise AmbiguousDelivery(f"{what}: success status without a message id", response=_http.short(response))
    return str(result["message_id"])


@register
class Telegram(Channel[TelegramSettings]):
    kind = "telegram"
    Settings = TelegramSettings
    idempotent = False
    can_retract = True
    max_length = MAX_TEXT

    def _method(self, name: str) -> str:
        return f"{self.settings.base_url.rstrip('/')}/bot{self.settings.bot_token.reveal()}/{name}"

    def escape(self, text: str) -> str:
        return escape(text)

    def count(self, text: str) -> int:
        return visible_length(text)

    def render(self, message: Message) -> Post:
        post = super().render(message)
        return replace(post, parts=tuple(heal(p) for p in post.parts))

    # -- one pass over the thread

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        parts = post.parts or (post.text,)
        done = done_parts(progress)
        parent = reply_target(post.reply_to)
        ids: list[str] = []
        for i, text in enumerate(parts):
            saved = done.get(i)
            if saved:
                message_id = saved
            else:
                if progress is not None:
                    progress.mark([f"part:{i}"], "sending")
                message_id = self._send_one(text, parent, f"{self.name} (part {i + 1}/{len(parts)})")
                if progress is not None:
                    progress.mark([f"part:{i}"], "done", message_id)
            ids.append(message_id)
            parent = message_id
        return Receipt(remote_id=ids[0], url=message_url(self.settings.chat_id, ids[0]),
                       extra={"ids": ids, "last_id": ids[-1], "chat_id": self.settings.chat_id})

    def _send_one(self, text: str, parent: str | None, what: str) -> str:
        body = message_body(self.settings.chat_id, text, reply_to=parent, silent=self.settings.silent,
                            previews=self.settings.link_previews)
        content = json.dumps(body, ensure_ascii=False).encode()
        resp = _http.request(self.http, "POST", self._method("sendMessage"), content=content,
                             headers={"Content-Type": "application/json"}, what=what)
        classify(resp, what)
        return parse_message(resp, what)

    # -- the rest of the contract

    def check(self) -> str:
        what = f"{self.name} (getMe)"
        resp = _http.request(self.http, "GET", self._method("getMe"), what=what)
        classify(resp, what)
        data = _http.json_or_none(resp) or {}
        user = data.get("result") or {}
        return f"bot @{user.get('username') or '?'} (posting to {self.settings.chat_id})"

    def retract(self, receipt: Receipt) -> None:
        """Delete every part, last first. Telegram lets a bot delete its own messages in groups
        only for 48 hours (channels: any time, with the right to delete); a refusal is permanent."""
        ids = receipt.extra.get("ids") or ([receipt.remote_id] if receipt.remote_id else [])
        chat_id = receipt.extra.get("chat_id") or self.settings.chat_id
        for message_id in reversed(ids):
            what = f"{self.name} (delete {message_id})"
            body = json.dumps({"chat_id": chat_id, "message_id": int(message_id)}).encode()
            resp = _http.request(self.http, "POST", self._method("deleteMessage"), content=body,
                                 headers={"Content-Type": "application/json"}, what=what)
            data = _http.json_or_none(resp)
            desc = str(data.get("description") or "") if isinstance(data, dict) else ""
            if resp.status_code == 400 and "not found" in desc.lower():
                continue  # already gone is what we wanted
            classify(resp, what)
