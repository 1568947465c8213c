"""What every provider stand-in shares: recording, faults, auth, rate-limit windows.

A provider subclass declares its routes and answers its errors in its own dialect
(``unauthorized``, ``rate_limited``, ``server_error``, ``duplicate``…); ``handle`` applies
the faults and the rate-limit window around every endpoint so no provider has to.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..faults import Fault
from ..state import SandboxState
from .grants import Grants

DOWN_PAGE = "<html><head><title>503 Service Unavailable</title></head><body><h1>503 Service Unavailable</h1></body></html>"


@dataclass
class Call:
    """One parsed request handed to an endpoint."""

    request: Request
    body: bytes
    data: Any = None  # JSON or form fields; None if neither parsed
    token: str | None = None
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        return self.request.path_params

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)

    def field(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default) if isinstance(self.data, dict) else default


Endpoint = Callable[[Call], Response | Awaitable[Response]]


def parse_body(request: Request, body: bytes) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body:
        return {}
    if ctype == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        return json.loads(body)
    except ValueError:
        return None


def bearer(request: Request, scheme: str = "bearer") -> str | None:
    value = request.headers.get("authorization", "")
    word, _, token = value.partition(" ")
    return token.strip() or None if word.lower() == scheme else None


class Provider:
    name: ClassVar[str] = ""
    #: requests per window, enforced when settings["rate_limits"] is true
    limit: ClassVar[int] = 300
    window: ClassVar[float] = 300.0

    def __init__(self, state: SandboxState, **settings: Any):
        self.state = state
        self.settings: dict[str, Any] = {"rate_limits": True, "tokens": [], **self.defaults(), **settings}
        state.register(self)
        self.reset()

    # -- hooks a provider overrides

    def defaults(self) -> dict[str, Any]:
        return {}

    def reset(self) -> None:
        self._window_start = 0.0
        self._window_used = 0
        self.grants = Grants(self.state.clock)  # tokens a token endpoint of this stand-in issued

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def token(self, request: Request, data: Any) -> str | None:
        return bearer(request)

    def error(self, status: int, message: str, **extra: Any) -> Response:
        return JSONResponse({"error": message, **extra}, status_code=status)

    def unauthorized(self) -> Response:
        return self.error(401, "unauthorized")

    def expired_token(self) -> Response:
        return self.unauthorized()

    def server_error(self, status: int) -> Response:
        return self.error(status, "internal server error")

    def client_error(self, status: int) -> Response:
        return self.error(status, "bad request")

    def duplicate(self) -> Response:
        return self.error(409, "duplicate")

    def rate_limited(self, reset_at: float) -> Response:
        wait = max(1, round(reset_at - self.state.clock()))
        return self.error(429, "rate limited", headers={"Retry-After": str(wait)})

    def rate_headers(self, limit: int, remaining: int, reset_at: float) -> dict[str, str]:
        return {}

    # -- shared machinery

    def route(self, path: str, fn: Endpoint, methods: tuple[str, ...] = ("POST",), *, create: bool = False, auth: bool = True) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self.handle(request, fn, create=create, auth=auth)

        return Route(path, endpoint, methods=list(methods), name=f"{self.name}:{fn.__name__}:{'-'.join(methods)}")

    def json(self, data: Any, status: int = 200, **kw: Any) -> JSONResponse:
        return JSONResponse(data, status_code=status, **kw)

    def fault_response(self, fault: Fault) -> Response:
        now = self.state.clock()
        if fault.mode == "down":
            return HTMLResponse(DOWN_PAGE, status_code=fault.status or 503, headers={"Connection": "close"})
        if fault.mode == "5xx":
            return self.server_error(fault.status or 500)
        if fault.mode == "4xx":
            return self.client_error(fault.status or 400)
        if fault.mode == "429":
            return self.rate_limited(now + float(fault.seconds or 0))
        if fault.mode in ("bad_token", "revoked_token"):
            return self.unauthorized()
        if fault.mode == "expired_token":
            return self.expired_token()
        if fault.mode == "duplicate":
            return self.duplicate()
        raise AssertionError(fault.mode)

    def _window(self) -> tuple[int, float]:
        """Count this request in the fixed window; returns (remaining, reset time)."""
        now = self.state.clock()
        with self.state.lock:
            if now >= self._window_start + self.window:
                self._window_start, self._window_used = now, 0
            self._window_used += 1
            return self.limit - self._window_used, self._window_start + self.window

    def authorized(self, token: str | None) -> bool:
        issued = self.grants.state(token)
        if issued is not None:
            return issued == "valid"
        allowed = self.settings.get("tokens") or []
        return bool(token) and (not allowed or token in allowed)

    async def _answer(self, request: Request, body: bytes, rec: dict[str, Any], fn: Endpoint, *,
                      auth: bool) -> Response:
        """The provider's own answer once no fault or rate limit has taken the request."""
        data = parse_body(request, body)
        call = Call(request, body, data, self.token(request, data), rec)
        if auth and not self.authorized(call.token):
            return self.expired_token() if self.grants.state(call.token) == "expired" else self.unauthorized()
        result = fn(call)
        return result if isinstance(result, Response) else await result

    async def handle(self, request: Request, fn: Endpoint, *, create: bool, auth: bool) -> Response:
        body = await request.body()
        rec = self.state.record(self.name, request.method, request.url.path, request.url.query, request.headers.items(), body)
        faults = self.state.faults.take(self.name, request.url.path, create=create)
        response: Response | None = None
        limited_until = 0.0
        drop = False
        for fault in faults:
            if fault.mode == "slow":
                await asyncio.sleep(float(fault.seconds or 0))
            elif fault.mode == "accept_then_drop":
                drop = True
            elif response is None:
                response = self.fault_response(fault)
                if fault.mode == "429":
                    limited_until = self.state.clock() + float(fault.seconds or 0)
        if response is not None:
            rec["outcome"] = "fault:" + ",".join(f.mode for f in faults)
        remaining, reset_at = self._window()
        if response is None and remaining < 0 and self.settings.get("rate_limits"):
            response, rec["outcome"] = self.rate_limited(reset_at), "rate_limited"
            limited_until = reset_at
        if response is None:
            response = await self._answer(request, body, rec, fn, auth=auth)
        if limited_until:
            remaining, reset_at = 0, limited_until
        for key, value in self.rate_headers(self.limit, max(0, remaining), reset_at).items():
            response.headers[key] = value
        rec["status"] = response.status_code
        if drop and 200 <= response.status_code < 300:
            rec["outcome"] = "accepted_then_dropped"
            request.scope.setdefault("sandbox", {})["drop"] = True
        return response
