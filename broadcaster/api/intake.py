"""Protection of the intake (the "under attack" guarantee, docs/reliability.md), as one ASGI middleware in front of routing.

The order is chosen so junk costs as little as possible and real posts keep flowing:

1. a declared ``Content-Length`` over the limit → 413, before anything else;
2. on protected paths, no ``Authorization: Bearer`` → 401 at once (no I/O at all);
3. the token is verified (one indexed look-up, or none while this process trusts it:
   ``api.token_cache``, see ``tokens.py``) — unknown/revoked → the caller's *address* is
   charged against ``api.anonymous_rate_limit`` (429 when over) and gets 401;
   a valid token is charged against ``api.rate_limit`` under its own name, so one busy token or
   one noisy address never slows the others down. The web page's session cookie is the same
   kind of entry point and goes through the same limiter: a valid session is charged to its
   token's name (the page and the API share one budget per token), a cookie that does not
   verify is charged to the address like a wrong bearer token (cookie guessing meets 429).
   Previews (``/api/v1/preview``, the page's live ``/ui/preview``) are charged to a budget of
   their own per token (``api.preview_rate_limit``): typing on the compose page previews every
   few hundred milliseconds, and must never use up what posting needs. A page form over the
   limit is let through marked ``rate_limited`` (seconds) so the page re-renders the form with a
   readable error instead of JSON (it acts on nothing then); a page over the limit answers a
   short HTML page;
4. only then is the body read — counted while it streams (a lying or missing Content-Length
   changes nothing) and under a time limit (slow senders get 408).

Limits live in Redis (shared by every API process). When Redis is unreachable the limiter
falls back to an in-process twin: limits stay roughly right and posts are not refused.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import anyio
from anyio import to_thread
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse

from ..errors import BroadcasterError
from ..principal import SESSION_COOKIE, Principal, SessionCheck
from ..resilience import MemoryRateLimiter
from .errors import error_response, from_broadcaster_error

log = logging.getLogger(__name__)

#: seconds a client gets to send its whole request body
BODY_TIMEOUT = 15.0
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: under /api but reachable without a token: health, and the subscriber endpoints (issue 5)
DEFAULT_PUBLIC = ("/api/v1/healthz", "/api/v1/readyz", "/api/v1/metrics", "/api/v1/public/",
                  "/api/v1/subscribe", "/api/v1/unsubscribe", "/api/v1/subscribers/confirm")
UNLIMITED = ("/healthz", "/readyz", "/metrics", "/api/v1/healthz", "/api/v1/readyz", "/api/v1/metrics")
#: paths outside /api that never look at the page's session: the sign-in form, assets, API docs
PAGE_PUBLIC = ("/signin", "/static/", "/docs", "/openapi.json", "/favicon.ico", *UNLIMITED)
#: previews: charged to their own budget per token (``api.preview_rate_limit``), never to posting's
PREVIEWS = ("/api/v1/preview", "/ui/preview")
#: the page's JSON routes (the live preview and timeline): a 429 there stays JSON for its script
PAGE_JSON = ("/ui/",)
def matches(path: str, prefixes) -> bool:
    """Whole path segments only: ``/api/v1/subscribe`` covers ``/api/v1/subscribe/confirm`` but
    not ``/api/v1/subscribers`` (an admin route). An entry ending in ``/`` covers everything below."""
    return any(path == p or path.startswith(p if p.endswith("/") else p + "/") for p in prefixes)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or " " in value:
        return None
    return value


def session_cookie(header: str | None) -> str | None:
    """The page's session cookie from a ``Cookie`` header, else None."""
    if not header:
        return None
    value = cookie_parser(header).get(SESSION_COOKIE)
    return value or None


#: after the shared limiter failed, seconds this process limits on its own before asking again
SHARED_RETRY_AFTER = 5.0


class Limiter:
    """The shared (Redis) limiter with a local twin for when Redis is away.

    A Redis that hangs (rather than refusing connections) costs its whole socket timeout per
    question; so after one failure the process limits on its own for
    :data:`SHARED_RETRY_AFTER` seconds before asking again — one slow request per interval,
    not every request waiting for the timeout."""

    def __init__(self, shared, clock=time.time):
        self.shared = shared
        self.local = MemoryRateLimiter(clock)
        self._warned = 0.0
        self._shared_after = 0.0

    def wait(self, key: str, rate: tuple[int, float]) -> float:
        limit, per = rate
        if self.shared is not None and time.monotonic() >= self._shared_after:
            try:
                return float(self.shared.acquire(key, limit, per))
            except Exception as exc:  # noqa: BLE001 - a shared limiter that cannot answer falls back to this process's own
                now = time.monotonic()
                self._shared_after = now + SHARED_RETRY_AFTER
                if now - self._warned > 60:
                    self._warned = now
                    log.warning("API rate limits are process-local: shared state unreachable (%s)", type(exc).__name__)
        return self.local.acquire(key, limit, per)


class IntakeGuard:
    def __init__(self, app, *, settings, tokens, limiter: Limiter, public: list[str] | None = None,
                 sessions: SessionCheck | None = None):
        self.app = app
        self.settings = settings
        self.tokens = tokens
        self.limiter = limiter
        self.sessions = sessions
        #: a list so other routers (subscribers) can add public paths at start-up
        self.public = public if public is not None else list(DEFAULT_PUBLIC)

    def protected(self, path: str) -> bool:
        return path.startswith("/api/") and not matches(path, self.public)

    def page(self, path: str) -> bool:
        """A page (or page JSON) route that acts as whoever its session cookie names."""
        return self.sessions is not None and not path.startswith("/api/") and not matches(path, PAGE_PUBLIC)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.settings.api.max_body_bytes
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return await error_response(400, "bad_request", "Content-Length is not a number")(scope, receive, send)
            if int(declared) > limit:
                return await self._too_large(scope, receive, send)
        path = scope.get("path", "")
        ip = (scope.get("client") or ("unknown", 0))[0]
        if self.protected(path):
            raw = bearer(headers.get("authorization"))
            if raw is None:
                return await self._unauthorized(scope, receive, send,
                                                "an Authorization: Bearer <token> header is required")
            try:
                verdict = await to_thread.run_sync(self._admit, self.tokens.verify, raw, ip, path)
            except BroadcasterError as exc:
                return await from_broadcaster_error(exc)(scope, receive, send)
            principal, wait = verdict
            if wait > 0:
                return await self._limited(scope, receive, send, wait)
            if principal is None:
                return await self._unauthorized(scope, receive, send, "unknown or revoked token")
            scope.setdefault("state", {})["principal"] = principal
        elif self.page(path) and (cookie := session_cookie(headers.get("cookie"))) is not None:
            assert self.sessions is not None
            try:
                verdict = await to_thread.run_sync(self._admit, self.sessions.verify, cookie, ip, path)
            except BroadcasterError as exc:
                return await from_broadcaster_error(exc)(scope, receive, send)
            state = scope.setdefault("state", {})
            principal, wait = verdict
            if principal is not None and wait > 0 and self.page_form(scope):
                # the form re-renders itself with a readable error (and acts on nothing)
                state["principal"], state["session"], state["rate_limited"] = principal, cookie, wait
            elif wait > 0 and matches(path, PAGE_JSON):
                return await self._limited(scope, receive, send, wait)
            elif wait > 0:
                return await self._limited_page(scope, receive, send, wait)
            elif principal is not None:
                state["principal"], state["session"] = principal, cookie
            else:
                state["session_refused"] = True  # the page signs the browser out (and clears the cookie)
        elif (path.startswith("/api/") and not matches(path, UNLIMITED)) or (
                path == "/signin" and scope.get("method") == "POST"):  # token guessing through the page
            wait = await to_thread.run_sync(self.limiter.wait, f"api:addr:{ip}", self.settings.api.anonymous_rate_limit)
            if wait > 0:
                if path == "/signin":
                    scope.setdefault("state", {})["rate_limited"] = wait  # the sign-in form says so itself
                else:
                    return await self._limited(scope, receive, send, wait)
        if scope.get("method") not in BODY_METHODS:
            return await self.app(scope, receive, send)
        body = bytearray()
        try:
            with anyio.fail_after(BODY_TIMEOUT):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client went away; nobody to answer
                    body += message.get("body", b"")
                    if len(body) > limit:
                        return await self._too_large(scope, receive, send)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            late = error_response(408, "request_timeout",
                                  f"the request body did not arrive within {BODY_TIMEOUT:g} seconds")
            return await late(scope, receive, send)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    # -- the decision that needs I/O, done in one worker thread

    def _admit(self, verify: Callable[[str], Principal | None], raw: str, ip: str,
               path: str) -> tuple[Principal | None, float]:
        """Who (None: a credential that does not verify, 401) and the seconds to wait (over 0:
        429). A preview is charged to the token's preview budget, anything else to its main one;
        a credential that does not verify to the address."""
        principal = verify(raw)
        if principal is None:
            return None, self.limiter.wait(f"api:addr:{ip}", self.settings.api.anonymous_rate_limit)
        if matches(path, PREVIEWS):
            return principal, self.limiter.wait(f"api:preview:{principal.name}", self.settings.api.preview_rate_limit)
        return principal, self.limiter.wait(f"api:token:{principal.name}", self.settings.api.rate_limit)

    @staticmethod
    def page_form(scope) -> bool:
        """A form the page posts (not one of its JSON routes): it answers a 429 itself, as HTML."""
        return scope.get("method") == "POST" and not matches(scope.get("path", ""), PAGE_JSON)

    # -- answers

    async def _unauthorized(self, scope, receive, send, message: str):
        resp = error_response(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="broadcaster"'})
        await resp(scope, receive, send)

    async def _limited(self, scope, receive, send, wait: float):
        seconds = max(1, math.ceil(wait))
        resp = error_response(429, "rate_limited", f"too many requests; retry in {seconds} s",
                              {"retry_after": seconds}, headers={"Retry-After": str(seconds)})
        await resp(scope, receive, send)

    async def _limited_page(self, scope, receive, send, wait: float):
        """A page (not its JSON) over the limit: a short readable page, not JSON."""
        seconds = max(1, math.ceil(wait))
        html = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Too many requests</title>"
                "</head><body><h1>Too many requests</h1><p>This token has used its request budget for the "
                f"moment. Wait {seconds} s and reload the page.</p></body></html>")
        resp = HTMLResponse(html, status_code=429, headers={"Retry-After": str(seconds), "Cache-Control": "no-store"})
        await resp(scope, receive, send)

    async def _too_large(self, scope, receive, send):
        limit = self.settings.api.max_body_bytes
        resp = error_response(413, "payload_too_large", f"the request body is larger than {limit} bytes",
                              {"limit": limit}, headers={"Connection": "close"})
        await resp(scope, receive, send)
