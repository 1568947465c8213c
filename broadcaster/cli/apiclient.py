"""The CLI's HTTP client: one thin wrapper over httpx that speaks the API's error shape.

Every failure becomes a :class:`ClientError` carrying the exit code it maps to: unreachable or
502/503/504 → 3, a refused request (4xx) → 2, a server error → 1, still rate limited → 4. Two
kinds of failure are retried, because the request cannot have been processed: a connection that
failed (briefly), and a 429 — the intake guard answers it before anything is read, so the same
request (its same ``Idempotency-Key``) is sent again after the server's ``Retry-After``, waiting
at most :data:`RATE_LIMIT_PATIENCE` seconds in all and saying so on stderr.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import click
import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from . import EXIT_FAILED, EXIT_RATE_LIMITED, EXIT_UNREACHABLE, EXIT_USAGE

UNREACHABLE_STATUS = {502, 503, 504}
#: the most a command waits, in all, for the server's rate limit before giving up (exit 4)
RATE_LIMIT_PATIENCE = 60.0


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


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
                 transport: httpx.BaseTransport | None = None, patience: float = RATE_LIMIT_PATIENCE,
                 sleep: Callable[[float], None] = time.sleep, say: Callable[[str], None] | None = None):
        self.base = url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "broadcaster-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=f"{self.base}/api/v1", headers=headers, timeout=timeout,
                                 transport=transport)
        self.attempts = attempts
        self.patience = patience
        self.sleep = sleep
        self.say = say or (lambda line: click.echo(line, err=True))

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, *, json_body: Any = None, params: dict | None = None,
             headers: dict | None = None) -> Any:
        waited = 0.0
        while True:
            resp = self._send(method, path, json_body, params, headers)
            if resp.status_code != 429:
                return self._result(resp)
            wait = retry_after(resp.headers.get("Retry-After"))
            if wait is None or waited + wait > self.patience:
                return self._result(resp)  # still refused: exit 4, with the server's words
            seconds = max(1, math.ceil(wait))
            key = (headers or {}).get("Idempotency-Key")
            self.say(f"rate limited by the server; waiting {seconds} s and sending it again"
                     + (" (same Idempotency-Key)" if key else ""))
            self.sleep(seconds)
            waited += seconds

    def _send(self, method: str, path: str, json_body: Any, params: dict | None,
              headers: dict | None) -> httpx.Response:
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=wait_exponential(multiplier=0.2, max=1.0),
                            retry=retry_if_exception(_transient), reraise=True)
        try:
            return retrying(self.http.request, method, path, json=json_body, params=params, headers=headers)
        except httpx.TimeoutException:
            raise ClientError(f"server at {self.base} did not answer in time", EXIT_UNREACHABLE) from None
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach the server at {self.base} ({type(exc).__name__})",
                              EXIT_UNREACHABLE) from None

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
            raise ClientError(f"rate limited: {text}" + (f"; retry after {retry}s" if retry else "")
                              + f" (gave up after waiting up to {self.patience:g} s)", EXIT_RATE_LIMITED, data)
        if 400 <= resp.status_code < 500:
            raise ClientError(text, EXIT_USAGE, data)
        raise ClientError(f"server error: {text}", EXIT_FAILED, data)
