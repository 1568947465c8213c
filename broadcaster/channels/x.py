"""X (Twitter API v2): ``POST /2/tweets`` with a user-context Bearer token.

X has no idempotency key. Its only dedupe signal is the 403 "duplicate content" refusal of an
identical recent text, which we read as "an earlier attempt already posted this" — it does not
tell us the id, so such a part is recorded without one and the thread continues under the last
part whose id we know. Lengths follow twitter-text v3 weighting (``render.x_length``).
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from .. import render
from ..config import ChannelSettings, Secret, Url
from ..errors import AmbiguousDelivery, AuthError, ContentRejected, DeliveryError, PermanentError, RateLimited
from ..models import Post, Receipt
from ..oauth.settings import XRefresh
from . import _http, _reply
from ._oauth import RenewableToken
from .base import Channel, Progress, done_parts
from .registry import register


class XSettings(ChannelSettings):
    kind: Literal["x"] = "x"
    base_url: Url = "https://api.x.com"
    access_token: Secret  # OAuth 2.0 user token (app-only tokens cannot post)
    username: str | None = None  # for permalinks; x.com/i/status/<id> works without it
    #: renew the user token with its refresh token (scope offline.access); see docs/token-refresh.md
    refresh: XRefresh | None = None


# ---------------------------------------------------------------- pure pieces


def tweet_body(text: str, in_reply_to: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text}
    if in_reply_to:
        body["reply"] = {"in_reply_to_tweet_id": in_reply_to}
    return body


def is_duplicate(response: httpx.Response) -> bool:
    return response.status_code == 403 and "duplicate content" in response.text.lower()


def rate_limit_wait(headers: httpx.Headers, now: float) -> float | None:
    """Seconds until the tightest exhausted window resets: a spent 24-hour quota beats the
    15-minute window (the 24-hour headers are seen in practice, not documented)."""
    waits = []
    for prefix in ("x-user-limit-24hour", "x-app-limit-24hour"):
        if headers.get(f"{prefix}-remaining") == "0":
            waits.append(_http.parse_reset(headers.get(f"{prefix}-reset"), now=now))
    waits.append(_http.parse_reset(headers.get("x-rate-limit-reset"), now=now))
    known = [w for w in waits if w is not None]
    return max(known) if known else None


def classify(response: httpx.Response, what: str, now) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    excerpt = _http.short(response)
    if code == 429:
        raise RateLimited(f"{what}: rate limited or usage capped", retry_after=rate_limit_wait(response.headers, now()),
                          response=excerpt, status=code)
    if code == 401:
        raise AuthError(f"{what}: token refused (HTTP 401)", response=excerpt, status=code)
    if code == 403:
        raise PermanentError(f"{what}: not allowed (HTTP 403)", response=excerpt, status=code)
    if code == 400 and "length" in response.text.lower():
        raise ContentRejected(f"{what}: text refused (HTTP 400)", response=excerpt, status=code)
    _http.raise_for_status(response, what, now=now)


def parse_tweet_id(response: httpx.Response, what: str) -> str:
    data = _http.json_or_none(response)
    tweet = data.get("data") if isinstance(data, dict) else None
    if isinstance(tweet, dict) and tweet.get("id"):
        return str(tweet["id"])
    if isinstance(data, dict) and data.get("errors"):
        raise PermanentError(f"{what}: refused", response=_http.short(response), status=response.status_code)
    raise AmbiguousDelivery(f"{what}: success status without a post id", response=_http.short(response))


def token_refused(response: httpx.Response) -> bool:
    """X answers an expired (or revoked) user token with a bare 401."""
    return response.status_code == 401


def reply_target(receipt: Receipt | None) -> str | None:
    if receipt is None:
        return None
    return receipt.extra.get("last_id") or receipt.remote_id


@register
class X(RenewableToken, Channel[XSettings]):
    kind = "x"
    Settings = XSettings
    idempotent = False
    can_retract = True
    max_length = 280

    @property
    def base(self) -> str:
        return self.settings.base_url.rstrip("/")

    def _call(self, method: str, url: str, what: str, **kw: Any) -> httpx.Response:
        """One request with the current token (once more with a renewed one if X refuses it)."""
        return self.with_token(
            lambda token: _http.request(self.http, method, url, headers={"Authorization": f"Bearer {token}"},
                                        what=what, **kw),
            token_refused)

    def count(self, text: str) -> int:
        return render.x_length(text)

    def permalink(self, tweet_id: str) -> str:
        return f"https://x.com/{self.settings.username or 'i'}/status/{tweet_id}"

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        parts = post.parts or (post.text,)
        done = done_parts(progress)
        parent = reply_target(post.reply_to)
        ids: list[str] = []
        duplicates: list[int] = []
        unthreaded: str | None = None
        for i, text in enumerate(parts):
            if i in done:  # detail "" marks a part X called a duplicate
                tweet_id = done[i] or None
            else:
                if progress is not None:
                    progress.mark([f"part:{i}"], "sending")
                what = f"{self.name} (part {i + 1}/{len(parts)})"
                try:
                    tweet_id = self._create(text, parent, what)
                except DeliveryError as exc:
                    if i or not parent or not _reply.parent_gone(exc):
                        raise
                    unthreaded = _reply.note(self.name, parent)  # the earlier post was deleted
                    tweet_id = self._create(text, None, what)
                if progress is not None:
                    progress.mark([f"part:{i}"], "done", tweet_id or "")
            if tweet_id is None:
                duplicates.append(i)
            else:
                ids.append(tweet_id)
                parent = tweet_id
        extra: dict[str, Any] = {"ids": ids, "last_id": ids[-1] if ids else None}
        if duplicates:
            extra.update(duplicate=True, duplicate_parts=duplicates)
        if unthreaded:
            extra[_reply.UNTHREADED] = unthreaded
        first = ids[0] if ids and 0 not in duplicates else None
        return Receipt(remote_id=first, url=self.permalink(first) if first else None, extra=extra)

    def _create(self, text: str, parent: str | None, what: str) -> str | None:
        """The new post's id, or None when X says this exact text was already posted."""
        resp = self._call("POST", f"{self.base}/2/tweets", what, json=tweet_body(text, parent))
        if is_duplicate(resp):
            return None
        classify(resp, what, self.clock)
        return parse_tweet_id(resp, what)

    def check(self) -> str:
        what = f"{self.name} (users/me)"
        resp = self._call("GET", f"{self.base}/2/users/me", what)
        classify(resp, what, self.clock)
        data = (_http.json_or_none(resp) or {}).get("data") or {}
        return f"@{data.get('username', '?')} (id {data.get('id', '?')}){self.note_expiry()}"

    def retract(self, receipt: Receipt) -> None:
        ids = receipt.extra.get("ids") or ([receipt.remote_id] if receipt.remote_id else [])
        for tweet_id in reversed(ids):
            what = f"{self.name} (delete {tweet_id})"
            resp = self._call("DELETE", f"{self.base}/2/tweets/{tweet_id}", what)
            if resp.status_code != 404:
                classify(resp, what, self.clock)
