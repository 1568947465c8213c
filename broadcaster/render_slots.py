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

class _Slots:
    """One loop's limiter and its own count of previews admitted (rendering or waiting).

    The count is kept here, changed without an ``await`` between the check and the increment:
    the limiter's own statistics only see a waiter once it reaches ``acquire``, after a
    checkpoint, so requests arriving together would all pass a check made on them.
    """

    def __init__(self) -> None:
        self.limiter = CapacityLimiter(SLOTS)
        self.admitted = 0


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slots] = weakref.WeakKeyDictionary()


class Busy(Exception):
    """Every slot is rendering and the queue is full."""


def _for_this_loop() -> _Slots:
    loop = asyncio.get_running_loop()  # one per event loop (tests run several)
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = _Slots()
    return slots


async def render(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread once a slot is free; :class:`Busy` if the queue is full."""
    slots = _for_this_loop()
    if slots.admitted >= SLOTS + QUEUE:
        raise Busy()
    slots.admitted += 1
    try:
        return await to_thread.run_sync(fn, *args, limiter=slots.limiter)
    finally:
        slots.admitted -= 1


def busy() -> JSONResponse:
    return error_response(503, "busy", f"too many previews are being rendered; retry in {RETRY_AFTER} s",
                          {"retry_after": RETRY_AFTER}, headers={"Retry-After": str(RETRY_AFTER)})
