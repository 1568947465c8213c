"""Google Chat incoming webhooks: ``POST https://chat.googleapis.com/v1/spaces/…/messages?key=…&token=…``.

The webhook URL (with its ``key`` and ``token``) is the credential. Threads: every message of one
announcement carries the same ``thread.threadKey`` (derived from the announcement id), and the
URL asks for ``messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD``, so updates land in the
thread the first post started (or start one if it is gone). Incoming webhooks cannot delete
messages and have no idempotency key: an ambiguous send ends ``unknown``.

Google Chat reads ``<users/all>`` as a mention of everyone and ``<https://a|label>`` as a link
whose label hides its target; author text gets a word joiner (U+2060, invisible) after every
``<``, so neither shape is recognised, unless the channel sets ``mentions: true`` (then only the
user mentions pass).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from ..config import ChannelSettings, SecretUrl
from ..errors import AmbiguousDelivery, AuthError, PermanentError, RateLimited
from ..models import Post, Receipt
from . import _http
from .base import Channel, Progress, done_parts
from .registry import register

MAX_TEXT = 4096
REPLY_OPTION = "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
WORD_JOINER = "\u2060"
_MENTION = re.compile(r"<users/(?:all|\d+)>")


class GoogleChatSettings(ChannelSettings):
    kind: Literal["google_chat"] = "google_chat"
    url: SecretUrl  # the space's webhook URL; its key and token are credentials
    #: keep an announcement and its updates in one thread
    threads: bool = True
    #: let the author's ``<users/all>`` / ``<users/123>`` mentions through
    mentions: bool = False


# ---------------------------------------------------------------- pure request/response shaping


def escape(text: str, *, mentions: bool) -> str:
    def defuse(piece: str) -> str:
        return piece.replace("<", "<" + WORD_JOINER)

    if not mentions:
        return defuse(text)
    out, pos = [], 0
    for m in _MENTION.finditer(text):
        out += [defuse(text[pos:m.start()]), m.group(0)]
        pos = m.end()
    out.append(defuse(text[pos:]))
    return "".join(out)


def thread_key(post: Post, key: str) -> str:
    """One key per announcement: the earlier receipt's, else derived from the announcement id."""
    if post.reply_to is not None and post.reply_to.extra.get("thread_key"):
        return str(post.reply_to.extra["thread_key"])
    seed = str(post.meta.get("announcement_id") or key)
    return "bc-" + hashlib.sha256(seed.encode()).hexdigest()[:32]


def message_body(text: str, thread: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text}
    if thread:
        body["thread"] = {"threadKey": thread}
    return body


def classify(response: Any, what: str) -> None:
    """Google API errors: ``{"error": {"code", "message", "status"}}``."""
    code = response.status_code
    if 200 <= code < 300:
        return
    found = _http.json_or_none(response)
    err = found.get("error") if isinstance(found, dict) else None
    status = str(err.get("status") or "") if isinstance(err, dict) else ""
    excerpt = _http.short(response)
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        wait = _http.parse_retry_after(response.headers.get("retry-after"))
        raise RateLimited(f"{what}: rate limited ({status or code})", retry_after=wait, response=excerpt, status=code)
    if code in (401, 403):
        raise AuthError(f"{what}: webhook refused ({status or code}); it may have been removed from the space",
                        response=excerpt, status=code)
    if code == 404:
        raise PermanentError(f"{what}: space or webhook not found (HTTP 404)", response=excerpt, status=code)
    _http.raise_for_status(response, what)


def parse_message(response: Any, what: str) -> tuple[str, str | None]:
    data = _http.json_or_none(response)
    if not isinstance(data, dict) or not data.get("name"):
        raise AmbiguousDelivery(f"{what}: success status without a message name", response=_http.short(response))
    thread = data.get("thread") if isinstance(data.get("thread"), dict) else {}
    return str(data["name"]), (thread or {}).get("name")


@register
class GoogleChat(Channel[GoogleChatSettings]):
    kind = "google_chat"
    Settings = GoogleChatSettings
    idempotent = False
    can_retract = False  # an incoming webhook cannot delete messages
    max_length = MAX_TEXT

    def escape(self, text: str) -> str:
        return escape(text, mentions=self.settings.mentions)

    def _url(self) -> str:
        url = self.settings.url.reveal()
        if self.settings.threads:
            url += ("&" if "?" in url else "?") + f"messageReplyOption={REPLY_OPTION}"
        return url

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        parts = post.parts or (post.text,)
        done = done_parts(progress)
        thread = thread_key(post, key) if self.settings.threads else None
        names: list[str] = []
        for i, text in enumerate(parts):
            name = done.get(i)
            if not name:
                what = f"{self.name} (part {i + 1}/{len(parts)})"
                if progress is not None:
                    progress.mark([f"part:{i}"], "sending")
                content = json.dumps(message_body(text, thread), ensure_ascii=False).encode()
                resp = _http.request(self.http, "POST", self._url(), content=content,
                                     headers={"Content-Type": "application/json; charset=UTF-8"}, what=what)
                classify(resp, what)
                name, _ = parse_message(resp, what)
                if progress is not None:
                    progress.mark([f"part:{i}"], "done", name)
            names.append(name)
        return Receipt(remote_id=names[0], extra={"names": names, "thread_key": thread})

    def check(self) -> str:
        return "URL is well-formed (incoming webhooks cannot be verified without posting)"
