"""Bluesky (AT Protocol): ``com.atproto.repo.createRecord`` of ``app.bsky.feed.post``.

There is no idempotency header, so we choose each record key ourselves: a TID derived from the
delivery key and the part index. A retry then targets the same key — the PDS cannot hold two
records under one key, and ``getRecord`` tells whether an earlier attempt landed (``lookup``).
Records are byte-identical across retries: ``createdAt`` comes from the announcement, not the
clock. The app-password session is cached on the channel object (createSession is tightly
rate-limited) and refreshed when the access token expires — which arrives as HTTP 400.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from .. import render
from ..config import ChannelSettings, Secret, Url
from ..errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    DeliveryError,
    PermanentError,
    RateLimited,
    TransientError,
)
from ..models import Message, Post, Receipt
from . import _http, _reply
from .base import Channel, Progress, done_parts
from .registry import register

COLLECTION = "app.bsky.feed.post"
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
TOKEN_ERRORS = ("ExpiredToken", "InvalidToken")


class BlueskySettings(ChannelSettings):
    kind: Literal["bluesky"] = "bluesky"
    handle: str
    identifier: str | None = None  # login name (handle, e-mail or DID); the handle by default
    app_password: Secret
    base_url: Url = "https://bsky.social"  # the PDS
    web_url: Url = "https://bsky.app"
    langs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Session:
    access: str = dataclasses.field(repr=False)
    refresh: str = dataclasses.field(repr=False)
    did: str
    handle: str


# ---------------------------------------------------------------- pure pieces


def tid(micros: int, clock_id: int) -> str:
    """A record key in TID syntax: 53 bits of microseconds, 10 bits of clock id, base32-sortable."""
    n = ((micros & ((1 << 53) - 1)) << 10) | (clock_id & 0x3FF)
    return "".join(TID_ALPHABET[(n >> (5 * shift)) & 31] for shift in range(12, -1, -1))


def rkey_for(key: str, part: int, created_at: float) -> str:
    """Stable per (key, part): the timestamp is the post's own time plus a key-derived offset
    under one second, the clock id is key-derived too, so unrelated posts do not collide."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    micros = int(created_at) * 1_000_000 + h % 1_000_000 + part
    return tid(micros, h >> 20)


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def link_facets(text: str) -> list[dict[str, Any]]:
    """One link facet per URL, indexed in UTF-8 bytes (start inclusive, end exclusive)."""
    facets = []
    for start, end in render.url_spans(text):
        byte_start = render.utf8_len(text[:start])
        facets.append(
            {
                "index": {"byteStart": byte_start, "byteEnd": byte_start + render.utf8_len(text[start:end])},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": text[start:end]}],
            }
        )
    return facets


def post_record(text: str, created_at: float, *, reply: dict | None = None, langs: tuple[str, ...] = ()) -> dict[str, Any]:
    record: dict[str, Any] = {"$type": COLLECTION, "text": text, "createdAt": iso_time(created_at)}
    facets = link_facets(text)
    if facets:
        record["facets"] = facets
    if reply:
        record["reply"] = reply
    if langs:
        record["langs"] = list(langs)[:3]
    return record


def strong_ref(data: dict[str, Any]) -> dict[str, str]:
    return {"uri": data["uri"], "cid": data["cid"]}


def thread_refs(receipt: Receipt | None) -> tuple[dict | None, dict | None]:
    """``(root, parent)`` for a reply under an earlier delivery's thread, or ``(None, None)``."""
    if receipt is None or not receipt.extra.get("uri") or not receipt.extra.get("cid"):
        return None, None
    own = strong_ref(receipt.extra)
    return receipt.extra.get("root") or own, receipt.extra.get("last") or own


def reply_refs(root: dict | None, parent: dict | None, done: list[dict]) -> dict | None:
    """The ``reply`` of the next part: under our previous part, else under the earlier thread."""
    if done:
        return {"root": root or done[0], "parent": done[-1]}
    return {"root": root, "parent": parent} if parent else None


def created_at_of(message: Message) -> float:
    """When the post says it was written: the update's time, else the announcement's publication."""
    if message.update is not None and message.update.created_at:
        return message.update.created_at
    a = message.announcement
    return max(a.created_at or 0.0, a.publish_at or 0.0)


def xrpc_error(response: httpx.Response) -> str | None:
    """The XRPC error name — only when it looks like one (a hostile or echoing server could put
    anything there, including our own credentials)."""
    data = _http.json_or_none(response)
    name = data.get("error") if isinstance(data, dict) else None
    return name if isinstance(name, str) and re.fullmatch(r"[A-Za-z]{1,64}", name) else None


#: XRPC errors that name a missing record (a reply's parent deleted), whatever the status
RECORD_MISSING = ("RecordNotFound", "NotFound")


def _parent_missing(exc: DeliveryError) -> bool:
    """A refusal that names a missing record (an XRPC ``RecordNotFound``, whatever its status)."""
    return isinstance(exc, PermanentError) and any(f"({n})" in str(exc) for n in RECORD_MISSING)


def classify(response: httpx.Response, what: str, now) -> None:
    """XRPC status + error name → our error tree (token errors were already handled by refresh)."""
    code = response.status_code
    if 200 <= code < 300:
        return
    name, excerpt = xrpc_error(response), _http.short(response)
    if code == 429:
        wait = _http.parse_retry_after(response.headers.get("retry-after"), now=now())
        if wait is None:
            wait = _http.parse_reset(response.headers.get("ratelimit-reset"), now=now())
        raise RateLimited(f"{what}: rate limited ({name or 'HTTP 429'})", retry_after=wait, response=excerpt, status=code)
    if code in (401, 403) or name in TOKEN_ERRORS or name in ("AccountTakedown", "AuthenticationRequired"):
        raise AuthError(f"{what}: credentials refused ({name or code})", response=excerpt, status=code)
    if code == 413:
        raise ContentRejected(f"{what}: record too large", response=excerpt, status=code)
    if code == 400 and name == "InvalidRequest":
        raise ContentRejected(f"{what}: record refused ({name})", response=excerpt, status=code)
    if code >= 500 and code != 501:
        raise TransientError(f"{what}: provider error (HTTP {code})", response=excerpt, status=code)
    raise PermanentError(f"{what}: request refused ({name or f'HTTP {code}'})", response=excerpt, status=code)


@register
class Bluesky(Channel[BlueskySettings]):
    kind = "bluesky"
    Settings = BlueskySettings
    idempotent = False  # conservative: a duplicate rkey's error is not documented
    can_lookup = True
    can_retract = True
    max_length = 300  # in bluesky_length units: 300 graphemes and 3000 bytes

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self._session: Session | None = None
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return self.settings.base_url.rstrip("/")

    def count(self, text: str) -> int:
        return render.bluesky_length(text)

    def render(self, message: Message) -> Post:
        post = super().render(message)
        return dataclasses.replace(post, meta={**post.meta, "created_at": created_at_of(message)})

    # -- session

    def _post_json(self, nsid: str, what: str, *, token: str | None = None, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return _http.request(self.http, "POST", f"{self.base}/xrpc/{nsid}", json=body, headers=headers, what=what)

    def _login(self) -> Session:
        with self._lock:
            if self._session is None:
                what = f"{self.name} (create session)"
                body = {"identifier": self.settings.identifier or self.settings.handle, "password": self.settings.app_password.reveal()}
                resp = self._post_json("com.atproto.server.createSession", what, body=body)
                classify(resp, what, self.clock)
                self._session = self._parse_session(resp, what)
            return self._session

    def _refresh(self, stale: Session) -> Session:
        with self._lock:
            if self._session is not None and self._session is not stale:
                return self._session  # another thread refreshed it meanwhile
            what = f"{self.name} (refresh session)"
            resp = self._post_json("com.atproto.server.refreshSession", what, token=stale.refresh)
            if xrpc_error(resp) in TOKEN_ERRORS or resp.status_code == 401:
                self._session = None  # the refresh token is gone too: log in again
            else:
                classify(resp, what, self.clock)
                self._session = self._parse_session(resp, what, did=stale.did)
        return self._session or self._login()

    @staticmethod
    def _parse_session(resp: httpx.Response, what: str, did: str | None = None) -> Session:
        data = _http.json_or_none(resp)
        try:
            session_did = data.get("did") or did
            if not isinstance(session_did, str):
                raise KeyError("did")
            return Session(access=data["accessJwt"], refresh=data["refreshJwt"], did=session_did,
                           handle=data.get("handle", ""))
        except (KeyError, TypeError) as exc:
            raise TransientError(f"{what}: unexpected session response", response=_http.short(resp)) from exc

    def _xrpc(self, method: str, nsid: str, what: str, **kw: Any) -> tuple[httpx.Response, Session]:
        """One call with the cached session; on an expired token, refresh and repeat it once."""
        session = self._login()
        resp = self._call(method, nsid, session, what, **kw)
        if resp.status_code in (400, 401) and xrpc_error(resp) in TOKEN_ERRORS:
            session = self._refresh(session)
            resp = self._call(method, nsid, session, what, **kw)
        return resp, session

    def _call(self, method: str, nsid: str, session: Session, what: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {session.access}"}
        return _http.request(self.http, method, f"{self.base}/xrpc/{nsid}", headers=headers, what=what, **kw)

    # -- records

    def _get(self, rkey: str, what: str) -> dict[str, Any] | None:
        session = self._login()
        params = {"repo": session.did, "collection": COLLECTION, "rkey": rkey}
        resp, _ = self._xrpc("GET", "com.atproto.repo.getRecord", what, params=params)
        if xrpc_error(resp) == "RecordNotFound" or resp.status_code == 404:
            return None
        classify(resp, what, self.clock)
        data = _http.json_or_none(resp)
        if not isinstance(data, dict) or "uri" not in data:
            raise TransientError(f"{what}: unexpected getRecord response", response=_http.short(resp))
        return data

    def _create(self, rkey: str, record: dict[str, Any], what: str) -> dict[str, str]:
        session = self._login()
        body = {"repo": session.did, "collection": COLLECTION, "rkey": rkey, "record": record}
        resp, _ = self._xrpc("POST", "com.atproto.repo.createRecord", what, json=body)
        if 200 <= resp.status_code < 300:
            data = _http.json_or_none(resp)
            if isinstance(data, dict) and data.get("uri") and data.get("cid"):
                return strong_ref(data)
            raise AmbiguousDelivery(f"{what}: success without uri/cid", response=_http.short(resp))
        if resp.status_code == 400 or (resp.status_code >= 500 and resp.status_code != 501):
            # an earlier attempt may already hold this key ("already a value at key" → 4xx/5xx)
            try:
                existing = self._get(rkey, f"{what} (probe)")
            except DeliveryError as exc:
                if resp.status_code >= 500:
                    raise AmbiguousDelivery(f"{what}: provider error and the record could not be checked",
                                            response=_http.short(resp), status=resp.status_code) from exc
                existing = None
            if existing is not None:
                if (existing.get("value") or {}).get("text") != record["text"]:
                    raise PermanentError(f"{what}: record key {rkey} holds a different post", response=_http.short(resp))
                return strong_ref(existing)
        classify(resp, what, self.clock)
        raise AssertionError("unreachable")  # pragma: no cover - classify raises for non-2xx

    def _created_at(self, post: Post) -> float:
        created = post.meta.get("created_at")
        return float(created) if created else self.clock()

    def _receipt(self, refs: list[dict[str, str]], rkeys: list[str], root: dict | None) -> Receipt:
        return Receipt(
            remote_id=refs[0]["uri"],
            url=f"{self.settings.web_url.rstrip('/')}/profile/{self.settings.handle}/post/{rkeys[0]}",
            extra={
                "uri": refs[0]["uri"],
                "cid": refs[0]["cid"],
                "root": root or refs[0],
                "last": refs[-1],
                "rkeys": rkeys,
                "last_id": refs[-1]["uri"],
            },
        )

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        parts = post.parts or (post.text,)
        created = self._created_at(post)
        done = done_parts(progress)
        root, parent = thread_refs(post.reply_to)
        refs: list[dict[str, str]] = []
        rkeys = [rkey_for(key, i, created) for i in range(len(parts))]
        unthreaded: str | None = None
        for i, text in enumerate(parts):
            saved = done.get(i)
            if saved:
                ref = json.loads(saved)
                unthreaded = unthreaded or ref.pop(_reply.UNTHREADED, None)
            else:
                reply = reply_refs(root, parent, refs)
                record = post_record(text, created + i / 1000, reply=reply, langs=self.settings.langs)
                if progress is not None:
                    progress.mark([f"part:{i}"], "sending")
                what = f"{self.name} (part {i + 1}/{len(parts)})"
                try:
                    ref = self._create(rkeys[i], record, what)
                except DeliveryError as exc:
                    if i or parent is None or not (_reply.parent_gone(exc) or _parent_missing(exc)):
                        raise
                    # the earlier post was deleted: this one starts a thread of its own (same record key)
                    unthreaded = _reply.note(self.name, parent["uri"])
                    root = None
                    record = post_record(text, created + i / 1000, langs=self.settings.langs)
                    ref = self._create(rkeys[i], record, what)
                if progress is not None:
                    progress.mark([f"part:{i}"], "done",
                                  json.dumps({**ref, **({_reply.UNTHREADED: unthreaded} if unthreaded else {})}))
            refs.append(ref)
        receipt = self._receipt(refs, rkeys, root)
        if unthreaded:
            receipt.extra[_reply.UNTHREADED] = unthreaded
        return receipt

    def lookup(self, post: Post, *, key: str) -> Receipt | None:
        """The thread as an earlier attempt left it: None when its first part does not exist.
        A partly posted thread also gives None — re-sending resumes it under the same keys."""
        parts = post.parts or (post.text,)
        created = self._created_at(post)
        rkeys = [rkey_for(key, i, created) for i in range(len(parts))]
        refs = []
        for i, rkey in enumerate(rkeys):
            found = self._get(rkey, f"{self.name} (look up part {i + 1})")
            if found is None:
                return None
            refs.append(strong_ref(found))
        root, _ = thread_refs(post.reply_to)
        return self._receipt(refs, rkeys, root)

    def check(self) -> str:
        what = f"{self.name} (check session)"
        resp, session = self._xrpc("GET", "com.atproto.server.getSession", what)
        classify(resp, what, self.clock)
        data = _http.json_or_none(resp) or {}
        return f"@{data.get('handle') or session.handle} ({data.get('did') or session.did})"

    def retract(self, receipt: Receipt) -> None:
        session = self._login()
        for rkey in reversed(receipt.extra.get("rkeys") or []):
            what = f"{self.name} (delete {rkey})"
            body = {"repo": session.did, "collection": COLLECTION, "rkey": rkey}
            resp, _ = self._xrpc("POST", "com.atproto.repo.deleteRecord", what, json=body)
            classify(resp, what, self.clock)
