"""Facebook Page: Graph API ``POST /{page-id}/feed``; updates as comments on the first post.

The Graph API reports everything through a JSON ``error.code`` whose HTTP status says little, so
classification reads the code (and the undocumented but observed ``is_transient`` flag).
Throttling waits come from ``estimated_time_to_regain_access`` (minutes) in the usage headers.
There is no idempotency; error 506 ("duplicate post") is read as "already posted".
The page token goes in the form body or an Authorization header, never in a URL that a log
line could carry.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

import httpx
from pydantic import Field

from .. import render
from ..config import ChannelSettings, Secret, Url
from ..errors import AmbiguousDelivery, AuthError, DeliveryError, PermanentError, RateLimited, TransientError
from ..models import Message, Post, Receipt
from ..oauth.settings import FacebookRefresh
from . import _http
from ._oauth import RenewableToken
from .base import Channel, Progress
from .registry import register

THROTTLED = frozenset({4, 17, 32, 341, 613, 80001})
TEMPORARY = frozenset({1, 2})
TOKEN = frozenset({102, 190})
DUPLICATE = 506
BLOCKED = 368


class FacebookSettings(ChannelSettings):
    kind: Literal["facebook"] = "facebook"
    graph_url: Url = "https://graph.facebook.com/v19.0"
    page_id: str
    access_token: Secret  # a Page access token
    web_url: Url = "https://www.facebook.com"
    #: commonly quoted message limit (not in the official docs)
    max_characters: int = Field(63206, ge=100)
    #: learn the Page token's expiry (debug_token) and re-derive it from a Page admin's
    #: long-lived user token when it is invalid or expiring; docs/token-refresh.md
    refresh: FacebookRefresh | None = None


# ---------------------------------------------------------------- pure pieces


def usage_wait(headers: httpx.Headers) -> float | None:
    """Seconds until access returns, from X-Business-Use-Case-Usage / X-App-Usage (minutes)."""
    minutes: list[float] = []
    for name in ("x-business-use-case-usage", "x-app-usage"):
        try:
            data = json.loads(headers.get(name) or "null")
        except ValueError:
            continue
        entries: list[Any] = []
        if isinstance(data, dict):
            for value in data.values():
                entries.extend(value if isinstance(value, list) else [value])
            entries.append(data)
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("estimated_time_to_regain_access"), (int, float)):
                minutes.append(float(entry["estimated_time_to_regain_access"]))
    return max(minutes) * 60 if minutes else None


def graph_error(response: httpx.Response) -> dict[str, Any] | None:
    data = _http.json_or_none(response)
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else None


def classify(response: httpx.Response, what: str) -> DeliveryError | None:
    """The error a response means, or None for success. Duplicate posts are the caller's call."""
    error = graph_error(response)
    if error is None:
        if 200 <= response.status_code < 300:
            return None
        try:
            _http.raise_for_status(response, what)
        except DeliveryError as exc:
            return exc
        return None
    excerpt, status = _http.short(response), response.status_code
    code, sub = error.get("code"), error.get("error_subcode")
    label = f"{what}: Graph error {code}{f'/{sub}' if sub else ''}"
    if code in THROTTLED:
        return RateLimited(f"{label} (throttled)", retry_after=usage_wait(response.headers), response=excerpt, status=status)
    if code in TOKEN:
        return AuthError(f"{label} (page token invalid or expired)", response=excerpt, status=status)
    if code == 10 or (isinstance(code, int) and 200 <= code <= 299):
        return PermanentError(f"{label} (permission missing)", response=excerpt, status=status)
    if code == BLOCKED:
        return PermanentError(f"{label} (blocked for policy reasons)", response=excerpt, status=status)
    if code == DUPLICATE:
        return PermanentError(f"{label} (duplicate post)", response=excerpt, status=status)
    transient = error.get("is_transient")
    if transient is True or (transient is None and (code in TEMPORARY or status >= 500)):
        return TransientError(f"{label} (temporary)", response=excerpt, status=status)
    return PermanentError(label, response=excerpt, status=status)


def token_refused(response: httpx.Response) -> bool:
    """Graph error 190 (expired, invalidated, or otherwise unusable token) or 102 (session)."""
    error = graph_error(response)
    return error is not None and error.get("code") in TOKEN


def is_duplicate(response: httpx.Response) -> bool:
    error = graph_error(response)
    return error is not None and error.get("code") == DUPLICATE


@register
class Facebook(RenewableToken, Channel[FacebookSettings]):
    kind = "facebook"
    Settings = FacebookSettings
    idempotent = False
    can_retract = True

    @property
    def base(self) -> str:
        return self.settings.graph_url.rstrip("/")

    def render(self, message: Message) -> Post:
        """One piece, no thread: only an absurdly long text is truncated or refused."""
        post = super().render(message)
        mode = "truncate" if self.on_too_long == "truncate" else "reject"
        parts = render.fit(post.text, self.settings.max_characters, len, mode, self.name)
        return dataclasses.replace(post, parts=tuple(parts))

    def permalink(self, object_id: str, parent: str | None = None) -> str:
        web = self.settings.web_url.rstrip("/")
        if parent:  # a comment "<post>_<comment>" under post "<page>_<post>"
            return f"{self.permalink(parent)}?comment_id={object_id.split('_')[-1]}"
        page, _, post = object_id.partition("_")
        return f"{web}/{page}/posts/{post}" if post else f"{web}/{object_id}"

    def _call(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        return self.with_token(
            lambda token: _http.request(self.http, method, f"{self.base}/{path}",
                                        headers={"Authorization": f"Bearer {token}"}, what=what, **kw),
            token_refused)

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        text = post.parts[0] if post.parts else post.text
        # updates comment on the original post, also when the thread's last entry is a comment
        parent = (post.reply_to.extra.get("parent") or post.reply_to.remote_id) if post.reply_to else None
        form = {"message": text}
        if parent:
            what, path = f"{self.name} (comment)", f"{parent}/comments"
        else:
            what, path = f"{self.name} (page post)", f"{self.settings.page_id}/feed"
            if post.url:
                form["link"] = post.url
        resp = self.with_token(
            lambda token: _http.request(self.http, "POST", f"{self.base}/{path}", data={**form, "access_token": token},
                                        what=what),
            token_refused)
        if is_duplicate(resp):
            return Receipt(remote_id=None, url=None, extra={"duplicate": True})
        error = classify(resp, what)
        if error is not None:
            raise error
        data = _http.json_or_none(resp)
        object_id = data.get("id") if isinstance(data, dict) else None
        if not object_id:
            raise AmbiguousDelivery(f"{what}: success status without an id", response=_http.short(resp))
        return Receipt(remote_id=str(object_id), url=self.permalink(str(object_id), parent), extra={"parent": parent} if parent else {})

    def check(self) -> str:
        what = f"{self.name} (page)"
        resp = self._call("GET", self.settings.page_id, what, params={"fields": "id,name"})
        error = classify(resp, what)
        if error is not None:
            raise error
        data = _http.json_or_none(resp) or {}
        return f"page {data.get('name', '?')} ({data.get('id', self.settings.page_id)}){self.note_expiry()}"

    def retract(self, receipt: Receipt) -> None:
        if not receipt.remote_id:
            raise PermanentError(f"{self.name}: nothing to delete (the post id is unknown)")
        what = f"{self.name} (delete {receipt.remote_id})"
        resp = self._call("DELETE", receipt.remote_id, what)
        error = classify(resp, what)
        if error is not None and resp.status_code != 404:
            raise error
