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
from sqlalchemy import select

from ..service import Principal

SESSION_COOKIE = "bc_session"
PRESIGN_COOKIE = "bc_presign"
_CSRF_LABEL = b"broadcaster-web-csrf-v1"


def token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def runtime_of(request: Request):
    rt = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise RuntimeError("the web page needs app.state.runtime (set by create_app)")
    return rt


def authenticate(request: Request, token: str | None) -> Principal | None:
    """The principal a token stands for, or None. Prefers the API's own authenticator (one
    source of truth for hashing and revocation); falls back to static and ledger tokens."""
    if not token or len(token) > 512:
        return None
    store = getattr(request.app.state, "tokens", None)
    api_auth = getattr(store, "verify", None) or getattr(request.app.state, "authenticate", None)
    if callable(api_auth):
        try:
            return api_auth(token)
        except Exception:  # noqa: BLE001 - an unknown/revoked token is simply "not signed in"
            return None
    return _fallback_authenticate(runtime_of(request), token)


def _fallback_authenticate(runtime, token: str) -> Principal | None:
    digest = token_hash(token)
    for st in runtime.settings.tokens:
        if hmac.compare_digest(st.hash, digest):
            return Principal(st.name, tuple(st.kinds), tuple(st.channels), st.admin)
    from ..ledger import schema as t

    with runtime.ledger.read() as conn:
        row = conn.execute(select(t.tokens).where(t.tokens.c.hash == digest, t.tokens.c.revoked_at.is_(None))).first()
    if row is None:
        return None
    return Principal(row.name, tuple(row.kinds or ()), tuple(row.channels or ()), bool(row.admin))


def current(request: Request) -> tuple[str, Principal] | None:
    token = request.cookies.get(SESSION_COOKIE)
    principal = authenticate(request, token)
    return (token, principal) if principal else None


def csrf_for(token: str) -> str:
    return hmac.new(token.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(token: str, supplied: str | None) -> bool:
    return bool(supplied) and hmac.compare_digest(csrf_for(token), str(supplied))


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
