"""Mattermost incoming webhooks: ``POST https://<server>/hooks/<id>`` with ``{"text": …}``.

The hook URL is the credential. The server answers ``200 ok`` without the post's id, so there is
nothing to thread under or delete later: each update is its own message, retract is not
possible, and with no idempotency an ambiguous send ends ``unknown``.

Author text is Markdown on Mattermost: a masked link ``[label](url)`` left over from our own
rendering is shown as text (``[label] (url)``), and ``@channel``, ``@all``, ``@here`` or
``@someone`` get a word joiner (U+2060, invisible) after the ``@`` so they notify nobody —
unless the channel sets ``mentions: true``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import Field

from ..config import ChannelSettings, SecretUrl, Url
from ..errors import PermanentError
from ..models import Post, Receipt
from . import _chat, _http
from .base import Channel, Progress, done_parts
from .registry import register

WORD_JOINER = "\u2060"
#: an @ that starts a word (not the one inside an e-mail address)
_AT = re.compile(r"(?<![\w.@])@(?=[A-Za-z0-9_])")


class MattermostSettings(ChannelSettings):
    kind: Literal["mattermost"] = "mattermost"
    url: SecretUrl  # https://mattermost.example.com/hooks/<id>
    username: str | None = None  # shown as the sender (if the server allows overriding it)
    icon_url: Url | None = None
    channel: str | None = None  # post to this channel instead of the hook's default (if allowed)
    mentions: bool = False
    #: the server's post limit: 16383 since Mattermost 5.0 (4000 before)
    max_characters: int = Field(16383, ge=100)


def escape(text: str, *, mentions: bool) -> str:
    text = _chat.markdown_chat_text(text)
    return text if mentions else _AT.sub("@" + WORD_JOINER, text)


def payload(text: str, settings: MattermostSettings) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text}
    if settings.username:
        body["username"] = settings.username
    if settings.icon_url:
        body["icon_url"] = settings.icon_url
    if settings.channel:
        body["channel"] = settings.channel
    return body


def classify(response: Any, what: str, now: Any) -> None:
    """Mattermost errors are ``{"id", "message", "status_code"}``; 429 comes with
    ``X-Ratelimit-Reset`` (seconds) and ``Retry-After``."""
    code = response.status_code
    if code in (400, 404):
        found = _http.json_or_none(response)
        err_id = str(found.get("id") or "") if isinstance(found, dict) else ""
        if code == 404 or ("invalid" in err_id and "webhook" in err_id):
            raise PermanentError(f"{what}: the hook does not exist (any more)", response=_http.short(response),
                                 status=code)
    _http.raise_for_status(response, what, now=now, reset_headers=("retry-after", "x-ratelimit-reset"))


@register
class Mattermost(Channel[MattermostSettings]):
    kind = "mattermost"
    Settings = MattermostSettings
    idempotent = False
    can_retract = False

    @property
    def max_length(self) -> int:  # type: ignore[override]
        return self.settings.max_characters

    def escape(self, text: str) -> str:
        return escape(text, mentions=self.settings.mentions)

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        parts = post.parts or (post.text,)
        done = done_parts(progress)
        for i, text in enumerate(parts):
            if i in done:
                continue
            what = f"{self.name} (part {i + 1}/{len(parts)})"
            if progress is not None:
                progress.mark([f"part:{i}"], "sending")
            content = json.dumps(payload(text, self.settings), ensure_ascii=False).encode()
            resp = _http.request(self.http, "POST", self.settings.url.reveal(), content=content,
                                 headers={"Content-Type": "application/json"}, what=what)
            classify(resp, what, self.clock)
            if progress is not None:
                progress.mark([f"part:{i}"], "done", f"{key}:{i}")
        return Receipt(remote_id=f"{key}:0", extra={"parts": len(parts)})

    def check(self) -> str:
        return "URL is well-formed (incoming webhooks cannot be verified without posting)"
