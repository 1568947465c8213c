"""The one controllable clock and the one runtime factory of the tests.

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
    """A clock that moves only when told (``clock.t`` or ``advance``); safe across threads.

    ``tick`` moves it that much on every reading, before answering: distinct, non-round times
    (an export must keep float precision across the trip)."""

    def __init__(self, t: float = NOW, *, tick: float = 0.0):
        self.t = t
        self.tick = tick
        self._lock = threading.Lock()

    def __call__(self) -> float:
        if not self.tick:
            return self.t
        with self._lock:
            self.t += self.tick
            return self.t

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds


def memory_runtime(settings: Settings, *, ledger: Ledger | None = None, clock: Clock | None = None,
                   **collaborators: Any) -> Runtime:
    """A runtime on ``settings.ledger`` (or ``ledger``), memory breaker/limiter, recorded wake-ups.

    ``collaborators`` are :class:`Runtime`'s own keywords (``http``, ``ports``,
    ``confirmation_sender``, ``channels``, ``breaker``, ``limiter``, ``redis``, ``enqueuer``) and
    replace the defaults. A test that swaps a collaborator later builds another runtime with
    :meth:`Runtime.replaced` (a runtime is fixed once built)."""
    kw: dict[str, Any] = {"clock": clock} if clock is not None else {}
    ledger = ledger or Ledger.open(settings.ledger, **kw)
    given: dict[str, Any] = {"breaker": MemoryBreaker(*([clock] if clock else [])),
                             "limiter": MemoryRateLimiter(*([clock] if clock else [])),
                             "enqueuer": MemoryEnqueuer(), **kw, **collaborators}
    return Runtime(settings, ledger=ledger, **given)


def wakeups(runtime: Runtime) -> MemoryEnqueuer:
    """The recorder behind a :func:`memory_runtime` (typed access for assertions)."""
    enqueuer = runtime.enqueuer
    assert isinstance(enqueuer, MemoryEnqueuer), "built by memory_runtime?"
    return enqueuer
