"""What the sandbox has seen and created, shared by the HTTP app, the SMTP sink and tests.

Requests are recorded as received (credentials masked); "posts" are the objects a provider
actually created, so a test can assert that a channel never posted twice.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

from .faults import FaultBook

SECRET_HEADERS = {"authorization", "x-cachet-token", "x-postmark-server-token", "cookie", "proxy-authorization"}
SECRET_PARAMS = {"access_token", "api_key", "password", "refresh_token", "client_secret", "fb_exchange_token",
                 "input_token"}
MAX_BODY = 64_000


class Resettable(Protocol):
    def reset(self) -> None: ...


def mask(value: str) -> str:
    """Keep the scheme word (``Bearer``, ``OAuth``) so tests can check it; hide the secret."""
    scheme, sep, _ = value.partition(" ")
    return f"{scheme} ***" if sep else "***"


def mask_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, "***" if k in SECRET_PARAMS else v) for k, v in pairs])


def mask_body(text: str, parsed: Any, form: bool) -> tuple[str, Any]:
    """A form body's or a JSON object's credentials (token endpoints' requests) hidden."""
    if form:
        return mask_query(text), None
    if isinstance(parsed, dict) and SECRET_PARAMS & set(parsed):
        parsed = {k: ("***" if k in SECRET_PARAMS else v) for k, v in parsed.items()}
        return json.dumps(parsed), parsed
    return text, parsed


#: how close in time two identical texts must be to count as one post made twice (seconds)
REPEAT_WINDOW = 600.0


def repeats(posts: Iterable[dict[str, Any]], window: float = REPEAT_WINDOW) -> int:
    """How many posts repeat one that the same reader already got — what the sandbox page's
    "repeats" column shows.

    A post repeats an earlier one when it carries the same idempotency key (the stand-in kept
    it although the key said "the same request again"), or the same text in the same thread
    (a reply posted twice under one parent), or the same text within ``window`` seconds (a
    second delivery of one message: a retry, a fallback). The same words posted again later —
    an operator announcing a recurring problem, or two demo recipes a few minutes apart that
    say the same — are two announcements, not a double post, and are not counted; neither is
    a post that differs in anything, so a real double post of a signed announcement (its
    Verify link names the announcement) is caught whenever it came.

    A mail has one audience per recipient: the same announcement mailed to two people is two
    mails, not a repeat. A mail is a repeat for a recipient who already got its Message-ID (a
    re-sent copy), or its text within ``window`` (the same announcement sent again under a new id).
    Likewise a post to a receiver of its own — a webhook URL, a chat room, a Telegram chat (its
    ``audience``) — repeats only what that receiver already got: the same text sent to
    ``/webhook/ops`` and ``/webhook/sub1`` reaches two audiences once each.
    """
    keys_seen: set[tuple[str, str]] = set()
    texts_seen: dict[tuple[str, str], list[tuple[float, str | None]]] = {}
    n = 0
    for post in posts:
        recipients = post.get("rcpt_tos")
        when = float(post.get("created_at") or 0.0)
        thread = post.get("reply_to")
        if recipients is None:
            readers = [str(post.get("audience") or "")]
            text = str(post.get("text") or "")
        else:
            readers = [str(r).lower() for r in recipients]
            text = str(post.get("content_text", post.get("text")) or "")
        key = post.get("key")
        ids = [(r, str(key)) for r in readers] if key else []
        texts = [(r, text) for r in readers] if text else []
        repeated = any(k in keys_seen for k in ids) or any(
            (thread is not None and thread == t) or abs(when - w) <= window
            for k in texts for w, t in texts_seen.get(k, ()))
        n += repeated
        keys_seen.update(ids)
        for k in texts:
            texts_seen.setdefault(k, []).append((when, thread))
    return n


class SandboxState:
    def __init__(self, clock: Callable[[], float] = time.time, max_records: int = 10_000):
        self.clock = clock
        self.max_records = max_records
        self.faults = FaultBook()
        self.lock = threading.RLock()
        self._seq = itertools.count(1)
        self._records: list[dict[str, Any]] = []
        self._posts: dict[str, list[dict[str, Any]]] = {}
        self._resettables: list[Resettable] = []

    def next_id(self) -> int:
        return next(self._seq)

    def register(self, thing: Resettable) -> None:
        self._resettables.append(thing)

    # -- requests

    def record(self, provider: str, method: str, path: str, query: str, headers: Iterable[tuple[str, str]],
               body: bytes) -> dict[str, Any]:
        text = body[:MAX_BODY].decode("utf-8", "replace")
        parsed: Any = None
        if text[:1] in "{[":
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        headers = list(headers)
        form = any(k.lower() == "content-type" and v.startswith("application/x-www-form-urlencoded") for k, v in headers)
        text, parsed = mask_body(text, parsed, form)
        rec = {
            "seq": self.next_id(),
            "provider": provider,
            "time": self.clock(),
            "method": method,
            "path": path,
            "query": mask_query(query),
            "headers": {k.lower(): (mask(v) if k.lower() in SECRET_HEADERS else v) for k, v in headers},
            "body": text,
            "json": parsed,
            "status": None,
            "outcome": None,
        }
        with self.lock:
            self._records.append(rec)
            del self._records[: max(0, len(self._records) - self.max_records)]
        return rec

    def requests(self, provider: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self._records if provider is None or r["provider"] == provider]

    def clear_requests(self, provider: str | None = None) -> None:
        with self.lock:
            self._records = [r for r in self._records if provider is not None and r["provider"] != provider]

    # -- created objects

    def add_post(self, provider: str, *, id: str, text: str = "", key: str | None = None, reply_to: str | None = None,
                 audience: str | None = None, **extra: Any) -> dict[str, Any]:
        """Record a created post. ``audience``: the receiver it went to where one provider serves
        many (a webhook URL, a room, a chat) — repeats are counted per audience."""
        post = {"provider": provider, "id": str(id), "text": text, "key": key, "reply_to": reply_to,
                "audience": audience, "created_at": self.clock(), "deleted": False, **extra}
        with self.lock:
            self._posts.setdefault(provider, []).append(post)
        return post

    def mark_deleted(self, provider: str, id: str) -> bool:
        with self.lock:
            for post in self._posts.get(provider, []):
                if post["id"] == str(id) and not post["deleted"]:
                    post["deleted"] = True
                    return True
        return False

    def posts(self, provider: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            if provider is not None:
                return [dict(p) for p in self._posts.get(provider, [])]
            return [dict(p) for ps in self._posts.values() for p in ps]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per provider: requests received, posts created, and posts a reader got twice."""
        with self.lock:
            names = {r["provider"] for r in self._records} | set(self._posts)
            out = {}
            for name in sorted(names):
                posts = self._posts.get(name, [])
                out[name] = {
                    "requests": sum(1 for r in self._records if r["provider"] == name),
                    "posts": len(posts),
                    "duplicate_texts": repeats(posts),
                }
            return out

    def reset(self) -> None:
        """Forget requests, posts, faults and every provider's stored objects and sessions."""
        with self.lock:
            self._records.clear()
            self._posts.clear()
        self.faults.clear()
        for thing in self._resettables:
            thing.reset()
