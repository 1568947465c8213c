"""Who is signed in to the web page, and CSRF protection for its forms.

Sign-in exchanges the API token for a session of its own: a random secret in an ``HttpOnly;
SameSite=Lax`` cookie (``Secure`` when the request came over https, directly or through a
trusted proxy), stored only as a SHA-256 in the ledger (``ledger/sessions.py``). The token never
lives in the browser. A session ends after ``api.session_idle`` without use, ``api.session_lifetime``
after sign-in, at sign-out, and when its token is revoked; every request re-checks the token, so
narrowed scopes apply at once. The intake guard verifies the cookie (and rate-limits it like a
bearer token) before a page route runs.

CSRF tokens are an HMAC of the session secret: stateless, valid across processes, and
unforgeable without the (unreadable) cookie. Before sign-in there is no session, so the sign-in
form uses a double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from fastapi import Request

from ..config import Settings
from ..ledger import Ledger, new_id
from ..principal import SESSION_COOKIE as SESSION_COOKIE  # the name the API's intake guard reads
from ..runtime import Runtime
from ..service import Principal
from ..tokens import TokenStore

PRESIGN_COOKIE = "bc_presign"
_CSRF_LABEL = b"broadcaster-web-csrf-v1"


def runtime_of(request: Request):
    rt = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise RuntimeError("the web page needs app.state.runtime (set by broadcaster.asgi.create_app)")
    return rt


class Sessions:
    """The web page's sessions: exchange a token for one, check one, end one."""

    PREFIX = "bcs_"
    #: last_seen_at is written at most this often per session (idle expiry is hours)
    TOUCH_EVERY = 60.0

    def __init__(self, ledger: Ledger, tokens: TokenStore, settings: Settings, clock: Callable[[], float] = time.time):
        self.ledger = ledger
        self.tokens = tokens
        self.idle = settings.api.session_idle
        self.lifetime = settings.api.session_lifetime
        self.clock = clock

    @staticmethod
    def digest(secret: str) -> str:
        return "sha256:" + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()

    def start(self, token: str) -> tuple[str, Principal] | None:
        """Sign-in: a new session secret for a valid ``token``, else None."""
        principal = self.tokens.verify(token) if token and len(token) <= 512 else None
        if principal is None:
            return None
        secret, now = self.PREFIX + secrets.token_urlsafe(32), self.clock()
        self.ledger.sessions.prune(now, self.idle)  # sign-ins are rare: a good moment to forget dead ones
        ses = self.ledger.sessions.create(new_id("ses"), self.digest(secret), principal.name, now=now,
                                          expires_at=now + self.lifetime)
        self.ledger.audit(principal.name, "web.signin", ses.id)
        return secret, principal

    def verify(self, value: str) -> Principal | None:
        """The principal of a live session whose token is still valid, else None."""
        if not value.startswith(self.PREFIX) or len(value) > 100:
            return None
        ses, now = self.ledger.sessions.find(self.digest(value)), self.clock()
        if ses is None or not ses.live(now, self.idle):
            return None
        principal = self.tokens.principal_named(ses.token_name)
        if principal is not None and now - ses.last_seen_at >= self.TOUCH_EVERY:
            self.ledger.sessions.touch(ses.id, now)
        return principal

    def end(self, value: str) -> None:
        """Sign-out: the session cannot be used again, whoever holds a copy of the cookie."""
        if value.startswith(self.PREFIX) and len(value) <= 100:
            self.ledger.sessions.revoke(self.digest(value), self.clock())


def session_store(runtime: Runtime, tokens: TokenStore) -> Sessions:
    return Sessions(runtime.ledger, tokens, runtime.settings, clock=runtime.clock)


def sessions_of(request: Request) -> Sessions:
    store = getattr(request.app.state, "sessions", None)
    if not isinstance(store, Sessions):
        raise RuntimeError("the web page needs app.state.sessions (set by broadcaster.asgi.create_app)")
    return store


def current(request: Request) -> tuple[str, Principal] | None:
    """(session cookie, principal) as verified — and charged to the token's rate limit — by the
    intake guard before the route ran; None when signed out."""
    state = request.scope.get("state") or {}
    principal, cookie = state.get("principal"), state.get("session")
    return (cookie, principal) if isinstance(principal, Principal) and isinstance(cookie, str) else None


def csrf_for(token: str) -> str:
    return hmac.new(token.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(token: str, supplied: object) -> bool:
    """``supplied`` is whatever the form or header carried (a file upload is simply wrong)."""
    return isinstance(supplied, str) and bool(supplied) and hmac.compare_digest(csrf_for(token), supplied)


def new_presign() -> str:
    return f"{int(time.time())}.{secrets.token_urlsafe(24)}"


def presign_ok(request: Request, supplied: object, max_age: float = 3600) -> bool:
    cookie = request.cookies.get(PRESIGN_COOKIE)
    if not cookie or not isinstance(supplied, str) or not supplied or not hmac.compare_digest(cookie, supplied):
        return False
    try:
        issued = int(cookie.split(".", 1)[0])
    except ValueError:
        return False
    return time.time() - issued < max_age


def cookie_args(request: Request) -> dict:
    """``Secure`` when the request came over https: directly, or through a proxy in
    ``api.trusted_proxies`` whose ``X-Forwarded-Proto`` said so (see ``api/app.py``)."""
    return {"httponly": True, "samesite": "lax", "secure": request.url.scheme == "https", "path": "/"}
