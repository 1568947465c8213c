"""Matrix: ``PUT /_matrix/client/v3/rooms/{room}/send/m.room.message/{txnId}``.

The client-server API makes sends idempotent: a homeserver remembers each transaction id per
access token (device) and answers a repeated ``txnId`` with the event it already made. Our
``txnId`` is derived from the delivery key and the part number, so the same delivery always
uses the same ids — a send cut off after the server accepted it is simply sent again and yields
one event. That makes Matrix an at-most-once channel without look-ups.

Threads: the first message of an announcement is the thread root; every later part and update
carries ``m.relates_to`` with ``rel_type: m.thread`` (and an ``m.in_reply_to`` fallback for
clients without thread support). Retract redacts every event (also with a derived ``txnId``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field

from ..config import ChannelSettings, Secret, Url
from ..errors import AmbiguousDelivery, AuthError, ContentRejected, PermanentError, RateLimited, TransientError
from ..models import Post, Receipt
from ..oauth.settings import MatrixRefresh
from . import _http
from ._oauth import RenewableToken
from .base import Channel, Progress, done_parts
from .registry import register

#: bytes of the plain body per part: the event (plain and HTML copies, envelope, signatures)
#: must stay under the spec's 65,536-byte event limit
MAX_BODY_BYTES = 24_000


class MatrixSettings(ChannelSettings):
    kind: Literal["matrix"] = "matrix"
    homeserver: Url  # e.g. https://matrix.example.org (the client-server API base)
    access_token: Secret
    #: the room id (``!abc:example.org``; rooms of version 12 and later have no ``:server`` part);
    #: aliases (``#room:…``) cannot be sent to directly
    room_id: str = Field(pattern=r"^![^\s/]+$")
    #: ``m.notice`` (the convention for bots: clients do not notify as loudly) or ``m.text``
    msgtype: Literal["m.notice", "m.text"] = "m.notice"
    #: renew an expiring access token with its refresh token (a login with refresh_token: true);
    #: docs/token-refresh.md
    refresh: MatrixRefresh | None = None


# ---------------------------------------------------------------- pure request/response shaping


def txn_id(key: str, what: str) -> str:
    """A transaction id that is the same on every retry of one delivery (and URL-safe)."""
    return "bc" + hashlib.sha256(f"{key}\x00{what}".encode()).hexdigest()[:40]


def event_body(text: str, html: str | None, *, msgtype: str, root: str | None, reply_to: str | None) -> dict[str, Any]:
    # an empty m.mentions (intentional mentions) tells clients that "@room" or a user id in the
    # author's text notifies nobody
    body: dict[str, Any] = {"msgtype": msgtype, "body": text, "m.mentions": {}}
    if html:
        body["format"] = "org.matrix.custom.html"
        body["formatted_body"] = html
    if root:
        body["m.relates_to"] = {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                                "m.in_reply_to": {"event_id": reply_to or root}}
    return body


def html_part(text: str) -> str:
    """A part as HTML: escaped, with line breaks (the plain text stays the canonical ``body``)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("\n", "<br>")


def event_url(room_id: str, event_id: str) -> str:
    return f"https://matrix.to/#/{quote(room_id, safe='')}/{quote(event_id, safe='')}"


def token_refused(response: Any) -> bool:
    """``M_UNKNOWN_TOKEN`` (with ``soft_logout: true`` when the token merely expired)."""
    if response.status_code != 401:
        return False
    data = _http.json_or_none(response)
    return isinstance(data, dict) and data.get("errcode") == "M_UNKNOWN_TOKEN"


def classify(response: Any, what: str) -> None:
    """Matrix errors are ``{"errcode": "M_…", "error": "…"}``; a 429 is ``M_LIMIT_EXCEEDED``
    with ``retry_after_ms`` (and, since spec v1.10, a ``Retry-After`` header)."""
    code = response.status_code
    if 200 <= code < 300:
        return
    found = _http.json_or_none(response)
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    errcode = str(data.get("errcode") or "")
    excerpt = _http.short(response)
    if code == 429 or errcode == "M_LIMIT_EXCEEDED":
        ms = data.get("retry_after_ms")
        header = response.headers.get("retry-after")
        wait = ms / 1000.0 if isinstance(ms, (int, float)) else _http.parse_retry_after(header)
        raise RateLimited(f"{what}: rate limited (M_LIMIT_EXCEEDED)", retry_after=wait, response=excerpt, status=code)
    if code == 401 or errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
        raise AuthError(f"{what}: access token refused ({errcode or code})", response=excerpt, status=code)
    if code == 413 or errcode == "M_TOO_LARGE":
        raise ContentRejected(f"{what}: event too large", response=excerpt, status=code)
    if code == 403 or errcode == "M_FORBIDDEN":
        raise PermanentError(f"{what}: not allowed to post in the room ({data.get('error') or errcode}); invite "
                             "and join the account, or give it power to send", response=excerpt, status=code)
    if code in (408, 425) or code >= 500:
        raise TransientError(f"{what}: provider error (HTTP {code})", response=excerpt, status=code)
    raise PermanentError(f"{what}: request refused (HTTP {code} {errcode})".rstrip(), response=excerpt, status=code)


def parse_event(response: Any, what: str) -> str:
    data = _http.json_or_none(response)
    if not isinstance(data, dict) or not data.get("event_id"):
        # the txnId makes a retry safe: the homeserver answers it with the event it made, if any
        raise AmbiguousDelivery(f"{what}: success status without an event id", response=_http.short(response))
    return str(data["event_id"])


def thread_root(receipt: Receipt | None) -> tuple[str | None, str | None]:
    """(thread root, last event) of an earlier delivery: updates continue its thread."""
    if receipt is None:
        return None, None
    root = receipt.extra.get("root") or receipt.remote_id
    return root, receipt.extra.get("last_id") or root


@register
class Matrix(RenewableToken, Channel[MatrixSettings]):
    kind = "matrix"
    Settings = MatrixSettings
    idempotent = True  # transaction ids: a repeat returns the event already made
    can_retract = True
    max_length = MAX_BODY_BYTES

    def count(self, text: str) -> int:
        return len(text.encode("utf-8"))

    def _room(self) -> str:
        return f"{self.settings.homeserver.rstrip('/')}/_matrix/client/v3/rooms/{quote(self.settings.room_id, safe='')}"

    def _call(self, method: str, url: str, what: str, **kw: Any) -> Any:
        """One request with the current token (once more with a renewed one when it expired)."""
        return self.with_token(
            lambda token: _http.request(self.http, method, url, what=what, **kw,
                                        headers={"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/json"}),
            token_refused)

    # -- one pass over the thread

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        parts = post.parts or (post.text,)
        done = done_parts(progress)
        root, previous = thread_root(post.reply_to)
        ids: list[str] = []
        for i, text in enumerate(parts):
            event_id = done.get(i)
            if not event_id:
                if progress is not None:
                    progress.mark([f"part:{i}"], "sending")
                body = event_body(text, html_part(text), msgtype=self.settings.msgtype, root=root, reply_to=previous)
                event_id = self._put(f"send/m.room.message/{txn_id(key, f'part:{i}')}", body,
                                     f"{self.name} (part {i + 1}/{len(parts)})")
                if progress is not None:
                    progress.mark([f"part:{i}"], "done", event_id)
            ids.append(event_id)
            root = root or event_id
            previous = event_id
        return Receipt(remote_id=ids[0], url=event_url(self.settings.room_id, ids[0]),
                       extra={"ids": ids, "last_id": ids[-1], "root": root})

    def _put(self, path: str, body: dict[str, Any], what: str) -> str:
        content = json.dumps(body, ensure_ascii=False).encode()
        resp = self._call("PUT", f"{self._room()}/{path}", what, content=content)
        classify(resp, what)
        return parse_event(resp, what)

    # -- the rest of the contract

    def check(self) -> str:
        what = f"{self.name} (whoami)"
        url = f"{self.settings.homeserver.rstrip('/')}/_matrix/client/v3/account/whoami"
        resp = self._call("GET", url, what)
        classify(resp, what)
        data = _http.json_or_none(resp) or {}
        return f"{data.get('user_id') or '?'} (room {self.settings.room_id}){self.note_expiry()}"

    def retract(self, receipt: Receipt) -> None:
        """Redact every event, last first; each redaction has its own derived ``txnId``."""
        ids = receipt.extra.get("ids") or ([receipt.remote_id] if receipt.remote_id else [])
        for event_id in reversed(ids):
            what = f"{self.name} (redact {event_id})"
            path = f"redact/{quote(event_id, safe='')}/{txn_id(event_id, 'redact')}"
            content = json.dumps({"reason": "retracted"}).encode()
            resp = self._call("PUT", f"{self._room()}/{path}", what, content=content)
            if resp.status_code == 404:
                continue  # already gone is what we wanted
            classify(resp, what)
