"""One renewal of a credential at a time, across every process that uses it.

A provider that rotates refresh tokens (X, Matrix) accepts each one once: two workers renewing
together would each spend the same refresh token, and one of them would store a set the
provider no longer honours. :class:`RedisRefreshLock` is ``SET key owner NX PX ttl`` on the
shared Redis (the same one breakers and rate limits use), released only by its owner (a Lua
compare-and-delete), expiring by itself if its holder dies mid-renewal. :class:`LocalRefreshLock`
is the in-process twin for tests and for tools without Redis (break-glass).

``hold`` waits up to ``wait`` seconds and yields whether the lock was taken; a caller that
could not take it reads the store again instead (the holder is writing a fresh set there).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

PREFIX = "bc:oauth:refresh:"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class LockUnavailable(Exception):
    """The lock's own backend (Redis) cannot be reached: nobody may renew now."""


class RefreshLock(Protocol):
    def hold(self, name: str, *, ttl: float, wait: float) -> Any:
        """Context manager yielding True when the lock was taken within ``wait`` seconds."""
        ...


class RedisRefreshLock:
    def __init__(self, client: Any, poll: float = 0.05):
        self.client = client
        self.poll = poll

    @contextmanager
    def hold(self, name: str, *, ttl: float, wait: float) -> Iterator[bool]:
        key, owner = PREFIX + name, secrets.token_hex(16)
        deadline = time.monotonic() + wait
        try:
            while True:
                if self.client.set(key, owner, nx=True, px=max(1, int(ttl * 1000))):
                    taken = True
                    break
                if time.monotonic() >= deadline:
                    taken = False
                    break
                time.sleep(self.poll)
        except Exception as exc:  # noqa: BLE001 - any Redis failure means "cannot coordinate": do not renew
            raise LockUnavailable(f"the refresh lock in Redis cannot be reached ({type(exc).__name__})") from None
        try:
            yield taken
        finally:
            if taken:
                try:
                    self.client.eval(_RELEASE, 1, key, owner)
                except Exception:  # noqa: BLE001 - it expires by itself after ttl
                    pass


class LocalRefreshLock:
    """In-process twin: one lock per name, shared by every user of this object."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.taken = 0  # how often a lock was taken (tests)

    @contextmanager
    def hold(self, name: str, *, ttl: float, wait: float) -> Iterator[bool]:
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        taken = lock.acquire(timeout=max(0.0, wait))
        if taken:
            self.taken += 1
        try:
            yield taken
        finally:
            if taken:
                lock.release()


#: the process's lock for tools that run without Redis (one per process, so threads agree)
LOCAL = LocalRefreshLock()
