"""Chat and generic webhooks: ``format: slack | discord | teams | teams_workflow | generic``.

``generic`` follows the Standard Webhooks spec (v1): ``webhook-id`` (our stable delivery key —
the receiver's idempotency key, so a retry is safe), ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.
Slack, Discord and Teams have no idempotency: an ambiguous outcome there ends ``unknown``.
``teams_workflow`` is a Teams Workflows webhook (the replacement of the retired Office 365
connectors; see ``_teams``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import ChannelSettings, Secret, SecretUrl
from ..errors import PermanentError, RateLimited
from ..models import Post, Receipt
from . import _chat, _http, _teams
from .base import Channel, done_parts
from .registry import register

log = logging.getLogger(__name__)


class WebhookSettings(ChannelSettings):
    kind: Literal["webhook"] = "webhook"
    url: SecretUrl  # chat webhook URLs are credentials: never logged
    format: Literal["generic", "slack", "discord", "teams", "teams_workflow"] = "generic"
    secret: Secret | None = None  # generic: "whsec_<base64>" (or any string)
    headers: dict[str, Secret] = Field(default_factory=dict)  # extra headers often carry credentials
    username: str | None = None  # discord display name
    #: let the author's explicit mentions through (Slack ``<!channel>``/``<@U…>``, Discord pings);
    #: off by default, so announcement text never pings anyone (see ``_chat``)
    mentions: bool = False

    @model_validator(mode="after")
    def _warn_retired_connector(self) -> WebhookSettings:
        """Loading the configuration already names a retired Teams connector URL (it will fail)."""
        for warning in self.config_warnings():
            log.warning("Teams webhook channel: %s", warning)
        return self

    def config_warnings(self) -> list[str]:
        """Problems that do not make the file invalid but will make deliveries fail
        (``broadcaster check`` prints them, also with ``--offline``)."""
        if self.format in ("teams", "teams_workflow") and _teams.is_retired_connector(self.url.reveal()):
            return [_teams.RETIRED_HINT]
        return []


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1 signature for one message."""
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Receiver side, used by tests and the sandbox: constant-time check of any listed signature."""
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body).split(",", 1)[1]
    for entry in headers.get("webhook-signature", "").split():
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


@register
class Webhook(Channel[WebhookSettings]):
    kind = "webhook"
    Settings = WebhookSettings
    public = True

    @property
    def fmt(self) -> str:
        return self.settings.format

    # generic webhooks carry the key to the receiver; chat webhooks cannot
    @property
    def idempotent(self) -> bool:  # type: ignore[override]
        return self.settings.format == "generic"

    @property
    def max_length(self) -> int | None:  # type: ignore[override]
        return 2000 if self.settings.format == "discord" else None

    @property
    def can_retract(self) -> bool:  # type: ignore[override]
        return self.settings.format == "discord"

    # -- payloads (pure)

    def escape(self, text: str) -> str:
        if self.fmt == "slack":
            return _chat.slack_text(text, mentions=self.settings.mentions)
        if self.fmt in ("discord", "teams", "teams_workflow"):
            return _chat.markdown_chat_text(text)
        return text  # generic: JSON for a program, which gets the text as written

    def payload(self, post: Post, key: str, part: int = 0) -> dict[str, Any]:
        text = post.parts[part] if post.parts else post.text
        if self.fmt == "slack":
            return {"text": text, "unfurl_links": False}
        if self.fmt == "discord":
            body: dict[str, Any] = {"content": text,
                                    "allowed_mentions": _chat.discord_allowed_mentions(self.settings.mentions)}
            if self.settings.username:
                body["username"] = self.settings.username
            return body
        if self.fmt == "teams_workflow":
            return _teams.workflow_payload(post)
        if self.fmt == "teams":
            card = {
                "type": "AdaptiveCard",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": post.title, "weight": "Bolder", "size": "Medium", "wrap": True},
                    {"type": "TextBlock", "text": post.text, "wrap": True},
                ],
            }
            if post.url:
                card["actions"] = [{"type": "Action.OpenUrl", "title": "Details", "url": post.url}]
            return {
                "type": "message",
                "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
            }
        return {
            "type": "announcement.updated" if post.meta.get("update") else "announcement.created",
            "timestamp": int(self.clock()),
            "data": {
                "channel": self.name,
                "kind": post.kind,
                "title": post.title,
                "text": post.text,
                "url": post.url,
                "status": post.meta.get("status"),
                "announcement_id": post.meta.get("announcement_id"),
                "update_id": post.meta.get("update_id"),
                "in_reply_to": post.reply_to.remote_id if post.reply_to else None,
            },
        }

    def _url(self) -> str:
        url = self.settings.url.reveal()
        if self.fmt == "discord":
            url += ("&" if "?" in url else "?") + "wait=true"
        return url

    # -- one attempt

    def send(self, post: Post, *, key: str, progress=None) -> Receipt:
        if self.fmt == "discord" and len(post.parts) > 1:
            return self._send_parts(post, key, progress)
        return self._send_one(post, key, 0)

    def _send_parts(self, post: Post, key: str, progress) -> Receipt:
        """A Discord text longer than 2000 characters goes as consecutive messages, each recorded,
        so a retry continues after the last one that landed."""
        done = done_parts(progress)
        ids: list[str] = []
        for i in range(len(post.parts)):
            earlier = done.get(i)
            if earlier:
                ids.append(earlier)
                continue
            receipt = self._send_one(post, key, i)
            ids.append(receipt.remote_id or f"msg_{key}")
            if progress is not None:
                progress.mark([f"part:{i}"], "done", receipt.remote_id)
        return Receipt(remote_id=ids[0], extra={"parts": ids})

    def _send_one(self, post: Post, key: str, part: int) -> Receipt:
        body = json.dumps(self.payload(post, key, part), separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", **{k: v.reveal() for k, v in self.settings.headers.items()}}
        msg_id = f"msg_{key}"
        if self.fmt == "generic":
            ts = int(self.clock())
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(ts)
            if self.settings.secret:
                headers["webhook-signature"] = sign(self.settings.secret.reveal(), msg_id, ts, body)
        what = f"{self.name} ({self.fmt} webhook)"
        resp = _http.request(self.http, "POST", self._url(), content=body, headers=headers, what=what)
        self._classify(resp, what)
        remote_id, url = msg_id, None
        if self.fmt == "discord":
            data = _http.json_or_none(resp) or {}
            remote_id = str(data.get("id") or msg_id)
        return Receipt(remote_id=remote_id, url=url)

    def _classify(self, resp, what: str) -> None:
        if self.fmt in ("teams", "teams_workflow"):
            _teams.classify(resp, self.settings.url.reveal(), what)
        if resp.status_code == 429 and self.fmt == "discord":
            data = _http.json_or_none(resp) or {}
            wait = data.get("retry_after") if isinstance(data, dict) else None
            if wait is None:
                wait = _http.parse_retry_after(resp.headers.get("retry-after"))
            raise RateLimited(f"{what}: rate limited", retry_after=wait, response=_http.short(resp), status=429)
        if resp.status_code == 410:
            raise PermanentError(f"{what}: endpoint is gone (HTTP 410); disable it", response=_http.short(resp),
                                 status=410)
        if self.fmt == "discord" and resp.status_code == 404:
            raise PermanentError(f"{what}: unknown webhook (HTTP 404)", response=_http.short(resp), status=404)
        _http.raise_for_status(resp, what, now=self.clock)

    def retract(self, receipt: Receipt) -> None:
        if self.fmt != "discord" or not receipt.remote_id:
            return super().retract(receipt)
        base = self.settings.url.reveal().split("?", 1)[0]
        what = f"{self.name} (delete discord message)"
        resp = _http.request(self.http, "DELETE", f"{base}/messages/{receipt.remote_id}", what=what)
        if resp.status_code != 404:
            self._classify(resp, what)

    def check(self) -> str:
        if self.fmt == "discord":
            base = self.settings.url.reveal().split("?", 1)[0]
            resp = _http.request(self.http, "GET", base, what=f"{self.name} (check)")
            _http.raise_for_status(resp, f"{self.name} (check)", now=self.clock)
            return "webhook exists"
        if self.fmt in ("teams", "teams_workflow") and _teams.is_retired_connector(self.settings.url.reveal()):
            raise PermanentError(f"{self.name}: {_teams.RETIRED_HINT}")
        return "URL is well-formed (webhooks cannot be verified without posting)"
