"""LinkedIn organization pages: ``POST /rest/posts`` (the versioned Posts API).

Every call carries ``LinkedIn-Version: YYYYMM`` and ``X-Restli-Protocol-Version: 2.0.0``; the
post's author is the organization's URN and the new post's URN comes back in the
``x-restli-id`` response header of a 201 (the body is empty). ``commentary`` is written in
LinkedIn's "little text" format, where ``| { } @ [ ] ( ) < > # \\ * _ ~`` are reserved and must be
escaped with a backslash even in plain prose — an unescaped one can make LinkedIn drop the rest
of the text, so :func:`escape_little` is applied to everything we send.

LinkedIn has no idempotency key and no look-up by a key of ours, so the channel is neither
idempotent nor able to look up: an attempt that may have landed ends as ``unknown`` (never a
blind re-post). LinkedIn does refuse re-posting the very same text with a 422 naming the earlier
post ("Content is a duplicate of urn:li:share:…"); we read that as "already posted" and keep the
URN it names. Updates are posted as new page posts (prefixed with their status), because
organization page posts have no reply thread. See docs/trust.md for what is and is not verified
against LinkedIn's documentation.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, field_validator

from .. import render
from ..config import ChannelSettings, Secret, Url
from ..errors import AmbiguousDelivery, AuthError, ContentRejected, PermanentError, RateLimited
from ..models import Message, Post, Receipt
from ..oauth.settings import LinkedInRefresh
from . import _http
from ._oauth import RenewableToken
from .base import Channel, Progress
from .registry import register

#: characters LinkedIn's little text format reserves (escaped with a backslash to stay text)
RESERVED = "\\|{}@[]()<>#*_~"
_RESERVED_RE = re.compile("[" + re.escape(RESERVED) + "]")
#: a refusal of an identical recent post names the earlier one
_DUPLICATE_RE = re.compile(r"duplicate of (urn:li:(?:share|ugcPost):[0-9A-Za-z_-]+)", re.I)
MAX_COMMENTARY = 3000
RESTLI_PROTOCOL = "2.0.0"


class LinkedInSettings(ChannelSettings):
    kind: Literal["linkedin"] = "linkedin"
    base_url: Url = "https://api.linkedin.com"
    web_url: Url = "https://www.linkedin.com"
    #: the numeric organization id (the page's admin URL shows it) or the full URN
    organization: str
    #: a 3-legged OAuth token of a page admin with the w_organization_social permission
    access_token: Secret
    #: LinkedIn-Version header; versions are retired about a year after release
    api_version: str = "202601"
    #: the public page, for links and the official-channel list (default: /company/<id>/)
    page_url: Url | None = None
    max_characters: int = Field(MAX_COMMENTARY, ge=100, le=100_000)
    #: renew the token with a programmatic refresh token (apps approved for them); docs/token-refresh.md
    refresh: LinkedInRefresh | None = None

    @field_validator("organization")
    @classmethod
    def _organization(cls, v: str) -> str:
        v = str(v).strip()
        if v.startswith("urn:li:organization:"):
            v = v.removeprefix("urn:li:organization:")
        if not v.isdigit():
            raise ValueError("must be the numeric organization id (or urn:li:organization:<id>)")
        return v

    @field_validator("api_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.fullmatch(r"20\d\d(0[1-9]|1[0-2])", str(v)):
            raise ValueError("must be a LinkedIn-Version in YYYYMM form, e.g. 202601")
        return str(v)

    @property
    def author(self) -> str:
        return f"urn:li:organization:{self.organization}"


# ---------------------------------------------------------------- pure request/response shaping


def escape_little(text: str) -> str:
    """Plain text → little text: every reserved character gets a backslash."""
    return _RESERVED_RE.sub(lambda m: "\\" + m.group(0), text)


def unescape_little(text: str) -> str:
    """The inverse of :func:`escape_little` (what a reader sees)."""
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


def commentary_length(text: str) -> int:
    """Length as we budget it: the escaped commentary, so the backslashes never push a post
    over the limit (whether LinkedIn counts them is not documented; this errs on the safe side)."""
    return len(escape_little(text))


def headers(token: str, version: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "LinkedIn-Version": version,
        "X-Restli-Protocol-Version": RESTLI_PROTOCOL,
    }


def post_body(author: str, text: str) -> dict[str, Any]:
    """A text-only, public, main-feed organization post."""
    return {
        "author": author,
        "commentary": escape_little(text),
        "visibility": "PUBLIC",
        "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }


def post_path(urn: str) -> str:
    """``/rest/posts/{urn}`` with the URN percent-encoded (``:`` included), as Rest.li wants."""
    return f"/rest/posts/{quote(urn, safe='')}"


def duplicate_of(response: httpx.Response) -> str | None:
    """The earlier post's URN when LinkedIn refused an identical post, else None."""
    if response.status_code not in (409, 422):
        return None
    match = _DUPLICATE_RE.search(response.text or "")
    return match.group(1) if match else None


def _message(response: httpx.Response) -> str:
    data = _http.json_or_none(response)
    if isinstance(data, dict):
        return str(data.get("message") or data.get("code") or data.get("serviceErrorCode") or "")
    return ""


def token_refused(response: httpx.Response) -> bool:
    """A 401: LinkedIn's answer to an expired or revoked token (``EXPIRED_ACCESS_TOKEN``,
    ``REVOKED_ACCESS_TOKEN``, ``INVALID_ACCESS_TOKEN``); a renewal tells which."""
    return response.status_code == 401


def classify(response: httpx.Response, what: str, now) -> None:
    """LinkedIn's meaning of a status code."""
    code = response.status_code
    if 200 <= code < 300:
        return
    excerpt = _http.short(response)
    if code == 429:
        # daily application/member quotas; LinkedIn does not promise a Retry-After
        wait = _http.parse_retry_after(response.headers.get("retry-after"), now=now())
        raise RateLimited(f"{what}: rate limited (HTTP 429)", retry_after=wait, response=excerpt, status=code)
    if code == 401:
        raise AuthError(f"{what}: token refused or expired (HTTP 401)", response=excerpt, status=code)
    if code == 403:
        raise AuthError(f"{what}: not allowed to post for this organization (HTTP 403; the token needs "
                        "w_organization_social and a page admin role)", response=excerpt, status=code)
    if code == 422 or (code == 400 and "commentary" in response.text.lower()):
        raise ContentRejected(f"{what}: post refused ({_message(response) or f'HTTP {code}'})", response=excerpt, status=code)
    if code == 426:
        raise PermanentError(f"{what}: LinkedIn-Version is no longer served (HTTP 426); raise api_version",
                             response=excerpt, status=code)
    _http.raise_for_status(response, what, now=now)


def parse_created(response: httpx.Response, what: str) -> str:
    urn = response.headers.get("x-restli-id") or response.headers.get("x-linkedin-id")
    if not urn:
        data = _http.json_or_none(response)
        urn = data.get("id") if isinstance(data, dict) else None
    if not urn:
        # a 2xx without the URN: it was probably created, but we cannot link or retract it
        raise AmbiguousDelivery(f"{what}: success status without the post URN", response=_http.short(response))
    return str(urn)


def permalink(web_url: str, urn: str) -> str:
    return f"{web_url.rstrip('/')}/feed/update/{urn}/"


@register
class LinkedIn(RenewableToken, Channel[LinkedInSettings]):
    kind = "linkedin"
    Settings = LinkedInSettings
    idempotent = False
    can_lookup = False
    can_retract = True

    @property
    def base(self) -> str:
        return self.settings.base_url.rstrip("/")

    @property
    def max_length(self) -> int:  # type: ignore[override]
        return self.settings.max_characters

    def _call(self, method: str, url: str, what: str, **kw: Any) -> httpx.Response:
        """One request with the current token (once more with a renewed one after a 401)."""
        return self.with_token(
            lambda token: _http.request(self.http, method, url, headers=headers(token, self.settings.api_version),
                                        what=what, **kw),
            token_refused)

    def count(self, text: str) -> int:
        return commentary_length(text)

    def render(self, message: Message) -> Post:
        """One piece (page posts have no threads): too long is truncated, or refused."""
        post = self._render_plain(message)
        mode = "truncate" if self.on_too_long in ("truncate", "thread") else "reject"
        parts = render.fit(post.text, self.max_length, self.count, mode, self.name)
        return dataclasses.replace(post, parts=tuple(parts))

    def _render_plain(self, message: Message) -> Post:
        title, body = render.title_and_body(message, self.name)
        text = render.plain_text(title, body, message)
        return Post(
            channel=self.name, kind=message.announcement.kind, title=title, text=text, parts=(text,),
            html=render.html_body(body, render.window_line(message)), url=message.announcement.url,
            reply_to=message.thread[-1] if message.thread else None,
            meta={"status": message.status, "update": message.is_update},
        )

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        text = post.parts[0] if post.parts else post.text
        what = f"{self.name} (page post)"
        resp = self._call("POST", f"{self.base}/rest/posts", what, json=post_body(self.settings.author, text))
        earlier = duplicate_of(resp)
        if earlier:
            return Receipt(remote_id=earlier, url=permalink(self.settings.web_url, earlier),
                           extra={"duplicate": True})
        classify(resp, what, self.clock)
        urn = parse_created(resp, what)
        return Receipt(remote_id=urn, url=permalink(self.settings.web_url, urn))

    def check(self) -> str:
        what = f"{self.name} (organization)"
        resp = self._call("GET", f"{self.base}/rest/organizations/{self.settings.organization}", what)
        classify(resp, what, self.clock)
        data = _http.json_or_none(resp) or {}
        name = data.get("localizedName") or data.get("vanityName") or "?"
        return f"{name} ({self.settings.author}), LinkedIn-Version {self.settings.api_version}{self.note_expiry()}"

    def retract(self, receipt: Receipt) -> None:
        if not receipt.remote_id:
            raise PermanentError(f"{self.name}: no post URN recorded; delete it on LinkedIn by hand")
        what = f"{self.name} (delete {receipt.remote_id})"
        resp = self._call("DELETE", self.base + post_path(receipt.remote_id), what)
        if resp.status_code not in (404, 410):  # already gone is what we wanted
            classify(resp, what, self.clock)
