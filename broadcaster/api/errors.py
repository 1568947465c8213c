"""Every error leaves the API as ``{"error": {"code", "message", "details"}}``.

Our own exceptions carry a ``code`` and a message written for people (and free of secrets), so
they are shown as they are. Anything else is a bug: the client gets a generic 500 and the log
gets the exception's type and stack — not its message, which may quote a URL or a credential.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler as plain_http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    BroadcasterError,
    ConfigError,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    LedgerError,
    LedgerUnavailable,
    NotFound,
)
from ..schemas import error_response

log = logging.getLogger(__name__)

#: most specific first
STATUS: list[tuple[type[BroadcasterError], int]] = [
    (IdempotencyConflict, 422),
    (Conflict, 409),
    (NotFound, 404),
    (Forbidden, 403),
    (InvalidRequest, 422),
    (LedgerUnavailable, 503),
    (LedgerError, 503),
    (ConfigError, 500),
]

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 408: "request_timeout", 413: "payload_too_large",
               415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable"}

#: paths whose errors are JSON even for unknown routes (the web page keeps its own HTML errors)
JSON_PREFIXES = ("/api", "/healthz", "/readyz", "/metrics")


def status_for(exc: BroadcasterError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def from_broadcaster_error(exc: BroadcasterError) -> JSONResponse:
    status = status_for(exc)
    if isinstance(exc, ConfigError) or status == 500:
        log.error("server configuration problem (%s) while serving a request", type(exc).__name__)
        return error_response(500, "internal_error", "the server is misconfigured; the operators were told")
    if isinstance(exc, LedgerError):
        headers = {"Retry-After": "5"}
        return error_response(503, "ledger_unavailable",
                              "the announcement ledger is unreachable right now; nothing was recorded — "
                              "retry in a few seconds (with the same Idempotency-Key)", headers=headers)
    details: dict[str, Any] = {}
    if isinstance(exc, InvalidRequest) and exc.field:
        details["field"] = exc.field
    if isinstance(exc, InvalidRequest):
        details.update(exc.details)
    return error_response(status, exc.code, str(exc), details)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts)


def from_validation_error(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(400, "invalid_json", "the request body is not valid JSON")
    field = _field(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if field == "":
        msg = "a JSON request body is required" if first.get("type") == "missing" else \
            "the request body must be a JSON object"
    problems = [{"field": _field(tuple(e.get("loc", ()))),
                 "message": str(e.get("msg", "")).removeprefix("Value error, ")} for e in errors[:20]]
    named = f"{field}: {msg}" if field and not msg.startswith(f"{field} ") else msg
    return error_response(422, "invalid_request", named, {"field": field or None, "problems": problems})


def not_json(request: Request, exc: RequestValidationError) -> bool:
    """A body was sent with a non-JSON Content-Type (e.g. ``curl -d`` without ``-H``)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype or ctype == "application/json" or ctype.endswith("+json"):
        return False
    errors = exc.errors()
    return bool(errors) and tuple(errors[0].get("loc", ())) == ("body",) and errors[0].get("type") != "missing"


def wants_json(request: Request) -> bool:
    return request.url.path.startswith(JSON_PREFIXES) or "application/json" in request.headers.get("accept", "")


def install(app: FastAPI) -> None:
    """The handlers that give every error the one shape (``api/params.py``'s middleware, which
    uses it, is added by the app: this module knows nothing of it)."""
    @app.exception_handler(BroadcasterError)
    async def _ours(request: Request, exc: BroadcasterError) -> Response:
        return from_broadcaster_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if not_json(request, exc):
            return error_response(415, "unsupported_media_type",
                                  "send the request body as JSON, with Content-Type: application/json")
        return from_validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if not wants_json(request):
            return await plain_http_exception_handler(request, exc)
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code)
        if message is None:
            message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))



def frames(exc: BaseException) -> str:
    """Where it happened — file, line, function — without source lines or the message."""
    return "\n".join(f"  {f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__))


class CatchAll:
    """Outermost of our middlewares: a bug becomes a generic JSON 500, never a traceback.

    Done here rather than with an ``Exception`` handler because Starlette re-raises after such a
    handler, and the server would then log the exception's message (which may hold a secret)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback reaches a client
            stack = frames(exc)
            log.error("unhandled %s on %s %s\n%s", type(exc).__name__, scope.get("method"), scope.get("path"), stack)
            if not started:
                response = error_response(500, "internal_error", "something went wrong on our side; it was logged")
                await response(scope, receive, send)
