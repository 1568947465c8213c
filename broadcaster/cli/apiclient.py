"""The CLI's HTTP client: one thin wrapper over httpx that speaks the API's error shape.

Every failure becomes a :class:`ClientError` carrying the exit code it maps to: unreachable or
502/503/504 → 3, a refused request (4xx) → 2, a server error or rate limit → 1. Only connection
failures (where the request cannot have been processed) are retried, briefly.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click
import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from . import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE

UNREACHABLE_STATUS = {502, 503, 504}


class ClientError(Exception):
    """A failure to report in one line, with the exit code it maps to."""

    def __init__(self, message: str, code: int, payload: Any = None):
        super().__init__(message)
        self.code = code
        self.payload = payload


class IdParam(click.ParamType):
    """An id given on the command line: it becomes one path segment of a request, so an id with
    ``/`` (or one that is ``.`` or ``..``) is refused as a usage error (exit 2) before any request —
    ``ann_../../x`` used to reach ``/api/v1/x``."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text or "/" in text or text in (".", ".."):
            self.fail(f"{text!r} is not an id (an id has no '/' and is not '.' or '..')", param, ctx)
        return text


ID = IdParam()


def seg(value: str) -> str:
    """``value`` as one URL path segment: every reserved character percent-encoded."""
    return quote(value, safe="")


def _transient(exc: BaseException) -> bool:
    # only failures where the request cannot have been processed, or POSTs carrying a key
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError))


class Api:
    """A thin httpx wrapper: auth header, JSON errors → :class:`ClientError`, short connect retries."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 10.0, attempts: int = 3,
                 transport: httpx.BaseTransport | None = None):
        self.base = url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "broadcaster-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=f"{self.base}/api/v1", headers=headers, timeout=timeout,
                                 transport=transport)
        self.attempts = attempts

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, *, json_body: Any = None, params: dict | None = None,
             headers: dict | None = None) -> Any:
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=wait_exponential(multiplier=0.2, max=1.0),
                            retry=retry_if_exception(_transient), reraise=True)
        try:
            resp = retrying(self.http.request, method, path, json=json_body, params=params, headers=headers)
        except httpx.TimeoutException:
            raise ClientError(f"server at {self.base} did not answer in time", EXIT_UNREACHABLE) from None
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach the server at {self.base} ({type(exc).__name__})",
                              EXIT_UNREACHABLE) from None
        return self._result(resp)

    def _result(self, resp: httpx.Response) -> Any:
        try:
            data = resp.json() if resp.content else None
        except ValueError:
            data = None
        if resp.is_success:
            return data
        err = (data or {}).get("error") if isinstance(data, dict) else None
        message = (err or {}).get("message") or resp.reason_phrase or "request failed"
        details = (err or {}).get("details")
        field = details.get("field") if isinstance(details, dict) else None
        text = f"{resp.status_code} {message}" + (f" (field: {field})" if field and field not in message else "")
        if resp.status_code in UNREACHABLE_STATUS:
            raise ClientError(f"server unavailable: {text}", EXIT_UNREACHABLE, data)
        if resp.status_code == 429:
            retry = resp.headers.get("Retry-After")
            raise ClientError(f"rate limited: {text}" + (f"; retry after {retry}s" if retry else ""), EXIT_FAILED, data)
        if 400 <= resp.status_code < 500:
            raise ClientError(text, EXIT_USAGE, data)
        raise ClientError(f"server error: {text}", EXIT_FAILED, data)
