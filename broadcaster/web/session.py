"""Who is signed in to the web page, and CSRF protection for its forms.

The API token itself is kept in an HttpOnly, SameSite=Strict cookie and re-checked on every
request, so revoking a token signs its browser sessions out at once. CSRF tokens are an HMAC of
the session token: stateless, valid across processes, and unforgeable without the (unreadable)
cookie. Before sign-in there is no session, so the sign-in form uses a double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from fastapi import Request

from ..api.intake import SESSION_COOKIE as SESSION_COOKIE  # the name the intake guard reads
from ..service import Principal
from ..tokens import TokenStore

PRESIGN_COOKIE = "bc_presign"
_CSRF_LABEL = b"broadcaster-web-csrf-v1"


def runtime_of(request: Request):
    rt = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise RuntimeError("the web page needs app.state.runtime (set by create_app)")
    return rt


class TokenSessions:
    """The cookie holds the API token; checked by the API's own TokenStore (one source of truth
    for hashing, static tokens and revocation)."""

    def __init__(self, tokens: TokenStore):
        self.tokens = tokens

    def verify(self, value: str) -> Principal | None:
        return self.tokens.verify(value)


def session_store(runtime, tokens: TokenStore) -> TokenSessions:
    return TokenSessions(tokens)


def authenticate(request: Request, token: str | None) -> Principal | None:
    """The principal a token stands for, or None (sign-in)."""
    if not token or len(token) > 512:
        return None
    try:
        return request.app.state.tokens.verify(token)
    except Exception:  # noqa: BLE001 - ledger trouble: treat as signed out, never leak details
        return None


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


def presign_ok(request: Request, supplied: str | None, max_age: float = 3600) -> bool:
    cookie = request.cookies.get(PRESIGN_COOKIE)
    if not cookie or not supplied or not hmac.compare_digest(cookie, str(supplied)):
        return False
    try:
        issued = int(cookie.split(".", 1)[0])
    except ValueError:
        return False
    return time.time() - issued < max_age


def cookie_args(request: Request) -> dict:
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https", "path": "/"}
