"""Waking the workers after an accepted POST: one thread per API process publishes the wake-ups.

A submit answers as soon as its rows are committed and wakes the workers after (a wake-up that
never happens costs one sweep interval, never a delivery). That used to be a background task
per request: after the answer, one more hop from the event loop to a thread-pool thread (about
0.1 ms of CPU, and a pool thread held for the broker's round trip — up to its timeouts while the
broker is away). Now the request's own thread puts its deliveries on a queue and returns, and
one thread publishes: whatever queued up while it was publishing goes out in ONE
``Runtime.enqueue`` (one round trip on Redis for every channel of every waiting announcement; a
channel several of them name is woken once). Under load that is fewer round trips than
announcements; when idle it is one per announcement, as before.

Nothing that was promised changes: the rows are in the ledger before their wake-up is queued, a
wake-up may now reach the broker a moment before the answer reaches the client (a worker may
start first, which is harmless), and one lost to a process that ends first is found by the
sweep. :meth:`Wakeups.close` publishes what is queued before the process stops.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

Item = tuple[str, str]  # (delivery id, channel)


class Wakeups:
    def __init__(self, enqueue: Callable[[list[Item]], object]):
        self._enqueue = enqueue
        self._queue: queue.SimpleQueue[list[Item] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: wake-ups queued and not yet published (what :meth:`flush` waits for)
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._closed = False

    def wake(self, items: Sequence[Item]) -> None:
        """Queue ``items`` for the publishing thread (started on first use, so a forked API
        process starts its own) and return at once."""
        if not items:
            return
        with self._lock:  # queued under the lock, so nothing can land behind close()'s stop mark
            if not self._closed:
                self._pending += 1
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="broadcaster-wakeups", daemon=True)
                    self._thread.start()
                self._queue.put(list(items))
                return
        self._enqueue(list(items))  # shutting down: publish in the caller's thread rather than drop it

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is published; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Publish what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            items, taken = list(first), 1
            while True:  # whatever else is already waiting goes out in the same call
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                items += more
                taken += 1
            try:
                self._enqueue(items)  # Runtime.enqueue logs and swallows broker trouble itself
            except Exception:  # this thread must outlive any one failure; the sweep finds the rows
                log.exception("could not publish %d wake-ups; the sweep will find them", len(items))
            finally:
                with self._idle:
                    self._pending -= taken
                    if self._pending == 0:
                        self._idle.notify_all()
