"""Previews render off the event loop, a few at a time, behind a short queue.

Rendering a long text for every channel (thread splitting by each provider's counting rule) is
CPU work, seconds of it for a 20 kB text. It runs in worker threads, at most :data:`SLOTS` at
once per process, so the event loop keeps the GIL often enough to answer everyone else.
Requests beyond that wait on the event loop — holding no thread, so the thread pool stays free
for token checks, ledger calls and ``/healthz`` — and beyond :data:`QUEUE` waiting they are
refused at once with 503 and ``Retry-After``: a client flooding the preview slows previews, not
the API.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

from anyio import CapacityLimiter, to_thread
from fastapi.responses import JSONResponse

from .schemas import error_response

T = TypeVar("T")

#: previews rendering at once, per process
SLOTS = 2
#: previews waiting for a slot before more are refused
QUEUE = 8
RETRY_AFTER = 2

_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter] = weakref.WeakKeyDictionary()


class Busy(Exception):
    """Every slot is rendering and the queue is full."""


def _limiter() -> CapacityLimiter:
    loop = asyncio.get_running_loop()  # one per event loop (tests run several)
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = CapacityLimiter(SLOTS)
    return limiter


async def render(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread once a slot is free; :class:`Busy` if the queue is full."""
    limiter = _limiter()
    stats = limiter.statistics()
    if stats.borrowed_tokens >= stats.total_tokens and stats.tasks_waiting >= QUEUE:
        raise Busy()
    return await to_thread.run_sync(fn, *args, limiter=limiter)


def busy() -> JSONResponse:
    return error_response(503, "busy", f"too many previews are being rendered; retry in {RETRY_AFTER} s",
                          {"retry_after": RETRY_AFTER}, headers={"Retry-After": str(RETRY_AFTER)})
