"""One controllable clock and one runtime factory for tests that run the engine in process.

``memory_runtime`` builds a :class:`~broadcaster.runtime.Runtime` on a real ledger (SQLite or
PostgreSQL by URL) with the in-memory breaker and rate limiter and a
:class:`~broadcaster.wakeup.MemoryEnqueuer`, so a test reads the wake-ups the broker would have
carried from ``runtime.enqueuer.deliveries`` / ``.retractions``.
"""

from __future__ import annotations

import threading
from typing import Any

from broadcaster.config import Settings
from broadcaster.ledger import Ledger
from broadcaster.resilience import MemoryBreaker, MemoryRateLimiter
from broadcaster.runtime import Runtime
from broadcaster.wakeup import MemoryEnqueuer

NOW = 1_700_000_000.0


class Clock:
    """A clock that moves only when told (``clock.t`` or ``advance``); safe across threads."""

    def __init__(self, t: float = NOW):
        self.t = t
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds


def memory_runtime(settings: Settings, *, ledger: Ledger | None = None, clock: Clock | None = None,
                   channel_io: dict[str, Any] | None = None) -> Runtime:
    """A runtime on ``settings.ledger`` (or ``ledger``), memory breaker/limiter, recorded wake-ups."""
    kw: dict[str, Any] = {"clock": clock} if clock is not None else {}
    ledger = ledger or Ledger.open(settings.ledger, **kw)
    return Runtime(settings, ledger=ledger, breaker=MemoryBreaker(*([clock] if clock else [])),
                   limiter=MemoryRateLimiter(*([clock] if clock else [])), channel_io=channel_io,
                   enqueuer=MemoryEnqueuer(), **kw)


def wakeups(runtime: Runtime) -> MemoryEnqueuer:
    """The recorder behind a :func:`memory_runtime` (typed access for assertions)."""
    enqueuer = runtime.enqueuer
    assert isinstance(enqueuer, MemoryEnqueuer), "built by memory_runtime?"
    return enqueuer
