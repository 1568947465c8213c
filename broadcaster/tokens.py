"""API tokens: created once and shown once, stored only as ``sha256:<hex>``.

A token is 32 random bytes, so a plain SHA-256 is enough (no salt or slow hash is needed for
high-entropy secrets) and lets the ledger find it by an indexed equality on the hash. The final
comparison is still constant-time, and every verification of a token that is not valid does
the same work whether it exists, existed or never did, so response times say nothing about which
tokens exist.

A token the ledger verified is trusted by that process for ``api.token_cache`` seconds (default
1) before the ledger is asked again: the intake's hot path then does no database read for it.
Revocation therefore takes effect at once in the process that revoked it and within
``api.token_cache`` seconds in every other one (``tests/api/test_token_cache.py`` checks this
across two app instances). Only valid tokens are kept, so a wrong or revoked token always meets
the ledger (and the per-address limit) — and a new token is never refused by a stale entry.

Static tokens from the configuration (``tokens:``, already hashed) work even when the ledger is
down, so CI and ops keep a way in during an incident.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .config import Settings
from .errors import InvalidRequest, NotFound
from .ledger import Ledger, new_id
from .limits import CONTROL, TOKEN_NAME, hidden_problem
from .models import KINDS
from .service import Principal

PREFIX = "bct_"
#: hash compared against when a token is unknown, so both paths do one compare_digest
_DUMMY = "sha256:" + "0" * 64
#: last_used_at is written at most this often per token (a write per request would be wasteful)
TOUCH_EVERY = 60.0
#: at most this many verified tokens are remembered per process (then the memory starts afresh)
CACHE_MAX = 4096


def check_name(name: str | None) -> str:
    """A token name: it is the author of what the token posts, the actor in the audit log and the
    target of the token's own audit rows, so it must fit each of those columns."""
    name = (name or "").strip()
    hidden = hidden_problem(name, one_line=True)
    if hidden:
        raise InvalidRequest(f"name: {hidden}", field="name")
    if not name or len(name) > TOKEN_NAME or CONTROL.search(name) or any(c.isspace() for c in name):
        raise InvalidRequest(f"name: a token name is 1-{TOKEN_NAME} characters, without spaces or control "
                             "characters", field="name")
    return name


def hash_token(raw: str) -> str:
    return "sha256:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def generate() -> str:
    return PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: never the token itself, never its hash."""

    name: str
    kinds: tuple[str, ...]
    channels: tuple[str, ...]
    admin: bool
    source: str  # "ledger" | "config"
    created_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None

    def principal(self) -> Principal:
        return Principal(self.name, self.kinds, self.channels, self.admin)

    def to_dict(self) -> dict:
        return {"name": self.name, "kinds": list(self.kinds), "channels": list(self.channels), "admin": self.admin,
                "source": self.source, "created_at": self.created_at, "revoked_at": self.revoked_at,
                "last_used_at": self.last_used_at}


class TokenStore:
    def __init__(self, ledger: Ledger | None, settings: Settings, clock=time.time, monotonic=time.monotonic):
        self.ledger = ledger
        self.settings = settings
        self.clock = clock
        #: the cache's own clock: a wall clock set back must not stretch how long a token is trusted
        self.monotonic = monotonic
        self._touched: dict[str, float] = {}
        #: hash → (principal, token id, trusted until on ``monotonic``) of tokens the ledger verified
        self._verified: dict[str, tuple[Principal, str, float]] = {}
        self._lock = threading.Lock()

    # -- verification (every request)

    def verify(self, raw: str | None) -> Principal | None:
        """The principal of a presented token, or None if it is unknown or revoked.

        Raises ``LedgerUnavailable`` only when the token is not a static one and the ledger
        cannot be asked (the API answers 503 then, not a misleading 401)."""
        if not raw or len(raw) > 512:
            return None
        digest = hash_token(raw)
        found = None
        for st in self.settings.tokens:  # every static token is compared, match or not
            if hmac.compare_digest(st.hash.strip().lower().encode(), digest.encode()) and found is None:
                found = Principal(st.name, tuple(st.kinds), tuple(st.channels), st.admin)
        if found is not None or self.ledger is None:
            return found
        hit = self._verified.get(digest)
        if hit is not None and hit[2] > self.monotonic():
            self._touch(hit[1])
            return hit[0]
        row = self.ledger.tokens.by_hash(digest)
        stored = row.hash if row is not None else _DUMMY
        ok = hmac.compare_digest(stored.encode(), digest.encode()) and row is not None and row.revoked_at is None
        if not ok or row is None:
            if hit is not None:
                self._forget(lambda d, _p: d == digest)
            return None
        self._touch(row.id)
        principal = Principal(row.name, row.kinds, row.channels, row.admin)
        ttl = self.settings.api.token_cache
        if ttl > 0:
            with self._lock:
                if len(self._verified) >= CACHE_MAX:
                    self._verified.clear()
                self._verified[digest] = (principal, row.id, self.monotonic() + ttl)
        return principal

    def _forget(self, match) -> None:
        """Drop remembered verifications for which ``match(digest, principal)`` holds."""
        with self._lock:
            for digest in [d for d, (p, _id, _until) in self._verified.items() if match(d, p)]:
                self._verified.pop(digest, None)

    def _store(self) -> Ledger:
        """The ledger, for what only tokens kept there can do (create, revoke, touch)."""
        if self.ledger is None:
            raise InvalidRequest("tokens can only be created or revoked with a ledger configured")
        return self.ledger

    def principal_named(self, name: str) -> Principal | None:
        """The principal of the live token called ``name`` (static or in the ledger), else None:
        a web session re-checks its token on every request, so a revoked token, a static token
        removed from the configuration or changed scopes take effect at once."""
        for st in self.settings.tokens:
            if st.name == name:
                return Principal(st.name, tuple(st.kinds), tuple(st.channels), st.admin)
        if self.ledger is None:
            return None
        row = self.ledger.tokens.by_name(name)
        if row is None or row.revoked_at is not None:
            return None
        return Principal(row.name, row.kinds, row.channels, row.admin)

    def _touch(self, token_id: str) -> None:
        now = self.clock()
        with self._lock:
            if now - self._touched.get(token_id, 0.0) < TOUCH_EVERY:
                return
            self._touched[token_id] = now
        try:
            self._store().tokens.touch(token_id, now)
        except Exception:  # noqa: BLE001 - "last used" is a courtesy; the request it serves goes on
            pass

    # -- administration (CLI)

    def create(self, name: str, *, kinds: Iterable[str] = (), channels: Iterable[str] = (), admin: bool = False,
               actor: str) -> tuple[str, TokenInfo]:
        """Create a token; returns ``(raw_token, info)``. The raw token is never stored."""
        name = check_name(name)
        kinds, channels = tuple(dict.fromkeys(kinds)), tuple(dict.fromkeys(channels))
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            raise InvalidRequest(f"unknown kind(s): {', '.join(bad)} (one of {', '.join(KINDS)})", field="kinds")
        bad = [c for c in channels if c not in self.settings.channels]
        if bad:
            raise InvalidRequest(f"unknown channel(s): {', '.join(bad)}", field="channels")
        if any(st.name == name for st in self.settings.tokens):
            raise InvalidRequest(f"a token named {name!r} is defined in the configuration", field="name")
        raw, now = generate(), self.clock()
        added = self._store().tokens.add(token_id=new_id("tok"), name=name, digest=hash_token(raw), kinds=kinds,
                                         channels=channels, admin=admin, now=now, actor=actor)
        if not added:
            raise InvalidRequest(f"a token named {name!r} already exists (revoked tokens keep their name); "
                                 "pick another name", field="name")
        return raw, TokenInfo(name, kinds, channels, admin, "ledger", created_at=now)

    def list(self, *, include_revoked: bool = True) -> list[TokenInfo]:
        out = [TokenInfo(st.name, tuple(st.kinds), tuple(st.channels), st.admin, "config")
               for st in self.settings.tokens]
        if self.ledger is not None:
            for r in self.ledger.tokens.all():
                if r.revoked_at is not None and not include_revoked:
                    continue
                out.append(TokenInfo(r.name, r.kinds, r.channels, r.admin, "ledger",
                                     created_at=r.created_at, revoked_at=r.revoked_at, last_used_at=r.last_used_at))
        return out

    def revoke(self, name: str, *, actor: str) -> TokenInfo:
        if any(st.name == name for st in self.settings.tokens):
            raise InvalidRequest(f"token {name!r} is defined in the configuration file; remove it there", field="name")
        if len(name) > TOKEN_NAME or CONTROL.search(name):  # no token can have it; not worth a query
            raise NotFound(f"no token named {name!r}")
        now, ledger = self.clock(), self._store()
        row = ledger.tokens.revoke(name, now=now, actor=actor)
        if row is None:
            raise NotFound(f"no token named {name!r}")
        ledger.sessions.revoke_for_token(name, now)  # its web page sessions end with it
        self._forget(lambda _d, p: p.name == name)  # here at once; other processes within api.token_cache
        return TokenInfo(row.name, row.kinds, row.channels, row.admin, "ledger",
                         created_at=row.created_at, revoked_at=row.revoked_at or now, last_used_at=row.last_used_at)
