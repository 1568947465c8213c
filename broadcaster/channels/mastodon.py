"""Mastodon: ``POST /api/v1/statuses`` with an ``Idempotency-Key``.

Mastodon is the one microblog with real request idempotency (the key is kept for an hour), so
every thread part carries ``{key}-{index}``: a retry within the hour returns the status already
made. ``Progress`` covers longer gaps (a rate-limit wait of hours) by skipping finished parts.
The length limit and URL weight are read once from ``GET /api/v2/instance``, because forks run
limits from 500 to 15,000 characters.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Literal

from pydantic import Field

from .. import render
from ..config import ChannelSettings, Secret, Url
from ..errors import AmbiguousDelivery, ContentRejected, DeliveryError
from ..models import Post, Receipt
from . import _http, _reply
from .base import Channel, Progress, done_parts
from .registry import register

#: seconds before a failed instance look-up is tried again (config values are used meanwhile)
LIMITS_RETRY_AFTER = 300.0


class MastodonSettings(ChannelSettings):
    kind: Literal["mastodon"] = "mastodon"
    base_url: Url = "https://mastodon.social"
    access_token: Secret
    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    language: str | None = None
    #: used when the instance does not tell (older than 4.0, or unreachable)
    max_characters: int = Field(500, ge=50)
    characters_reserved_per_url: int = Field(23, ge=1)
    read_instance_limits: bool = True


# ---------------------------------------------------------------- pure request/response shaping


def status_body(text: str, *, in_reply_to: str | None, visibility: str, language: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": text, "visibility": visibility}
    if in_reply_to:
        body["in_reply_to_id"] = in_reply_to
    if language:
        body["language"] = language
    return body


def reply_target(receipt: Receipt | None) -> str | None:
    """The status an update replies to: the last part of the earlier thread, else its first."""
    if receipt is None:
        return None
    return receipt.extra.get("last_id") or receipt.remote_id


def parse_limits(data: Any) -> tuple[int, int] | None:
    """``(max_characters, characters_reserved_per_url)`` from a v2 instance document."""
    try:
        statuses = data["configuration"]["statuses"]
        return int(statuses["max_characters"]), int(statuses.get("characters_reserved_per_url", 23))
    except (KeyError, TypeError, ValueError):
        return None


def classify(response, what: str, now) -> None:
    """Mastodon's meaning of a status code; the reset header is an ISO-8601 time."""
    if response.status_code == 422:
        raise ContentRejected(f"{what}: refused by validation (HTTP 422)", response=_http.short(response), status=422)
    _http.raise_for_status(response, what, now=now, reset_headers=("x-ratelimit-reset", "retry-after"))


def parse_status(response, what: str) -> tuple[str, str | None]:
    data = _http.json_or_none(response)
    if not isinstance(data, dict) or not data.get("id"):
        # a 2xx without a status: it may have been created; the idempotency key makes a retry safe
        raise AmbiguousDelivery(f"{what}: success status without a status id", response=_http.short(response))
    return str(data["id"]), data.get("url")


@register
class Mastodon(Channel[MastodonSettings]):
    kind = "mastodon"
    Settings = MastodonSettings
    idempotent = True
    can_retract = True

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self._limits: tuple[int, int] | None = None
        self._limits_failed_at: float | None = None
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return self.settings.base_url.rstrip("/")

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.access_token.reveal()}"}

    # -- length rule

    def limits(self) -> tuple[int, int]:
        """The instance's limits, fetched once per channel object; config values as fallback."""
        fallback = (self.settings.max_characters, self.settings.characters_reserved_per_url)
        if not self.settings.read_instance_limits:
            return fallback
        with self._lock:
            if self._limits is not None:
                return self._limits
            if self._limits_failed_at is not None and self.clock() - self._limits_failed_at < LIMITS_RETRY_AFTER:
                return fallback
            try:
                resp = _http.request(self.http, "GET", f"{self.base}/api/v2/instance", what=f"{self.name} (instance)")
                found = parse_limits(_http.json_or_none(resp)) if resp.status_code == 200 else None
            except DeliveryError:
                found = None
            if found is None:
                self._limits_failed_at = self.clock()
                return fallback
            self._limits = found
            return found

    @property
    def max_length(self) -> int:  # type: ignore[override]
        return self.limits()[0]

    def count(self, text: str) -> int:
        return render.mastodon_length(text, self.limits()[1])

    # -- one pass over the thread

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        parts = post.parts or (post.text,)
        done = done_parts(progress)
        parent = reply_target(post.reply_to)
        ids: list[str] = []
        urls: list[str | None] = []
        unthreaded: str | None = None
        for i, text in enumerate(parts):
            saved_detail = done.get(i)
            if saved_detail:
                saved = json.loads(saved_detail)
                status_id, url = saved["id"], saved.get("url")
                unthreaded = unthreaded or saved.get(_reply.UNTHREADED)
            else:
                if progress is not None:
                    progress.mark([f"part:{i}"], "sending")
                what = f"{self.name} (part {i + 1}/{len(parts)})"
                try:
                    status_id, url = self._create(text, parent, f"{key}-{i}", what)
                except DeliveryError as exc:
                    if i or not parent or not _reply.parent_gone(exc):
                        raise
                    # the earlier post was deleted: the update goes out on its own (a key of its own:
                    # the refused request's key must not stand for this one)
                    unthreaded = _reply.note(self.name, parent)
                    status_id, url = self._create(text, None, f"{key}-{i}-unthreaded", what)
                if progress is not None:
                    detail = {"id": status_id, "url": url, **({_reply.UNTHREADED: unthreaded} if unthreaded else {})}
                    progress.mark([f"part:{i}"], "done", json.dumps(detail))
            ids.append(status_id)
            urls.append(url)
            parent = status_id
        extra: dict[str, Any] = {"ids": ids, "last_id": ids[-1]}
        if unthreaded:
            extra[_reply.UNTHREADED] = unthreaded
        return Receipt(remote_id=ids[0], url=urls[0], extra=extra)

    def _create(self, text: str, parent: str | None, idem: str, what: str) -> tuple[str, str | None]:
        body = status_body(text, in_reply_to=parent, visibility=self.settings.visibility, language=self.settings.language)
        headers = {**self._auth(), "Idempotency-Key": idem}
        resp = _http.request(self.http, "POST", f"{self.base}/api/v1/statuses", json=body, headers=headers, what=what)
        classify(resp, what, self.clock)
        return parse_status(resp, what)

    # -- the rest of the contract

    def check(self) -> str:
        what = f"{self.name} (verify credentials)"
        resp = _http.request(self.http, "GET", f"{self.base}/api/v1/accounts/verify_credentials", headers=self._auth(), what=what)
        classify(resp, what, self.clock)
        data = _http.json_or_none(resp) or {}
        return f"@{data.get('acct') or data.get('username') or '?'} on {self.base}"

    def retract(self, receipt: Receipt) -> None:
        ids = receipt.extra.get("ids") or ([receipt.remote_id] if receipt.remote_id else [])
        for status_id in reversed(ids):
            what = f"{self.name} (delete {status_id})"
            resp = _http.request(self.http, "DELETE", f"{self.base}/api/v1/statuses/{status_id}", headers=self._auth(), what=what)
            if resp.status_code != 404:  # already gone is what we wanted
                classify(resp, what, self.clock)
