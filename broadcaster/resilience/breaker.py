"""Circuit breaker per channel: closed → open after N consecutive failures → half-open after the
cooldown, when exactly one probe is let through; its success closes, its failure re-opens.

While open, workers do not call the provider at all (``ChannelUnavailable``), so a dead channel
costs nothing and delays nobody; ``opened_at`` lets the policy fall back after ``fallback_after``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BreakerState:
    state: str  # closed | open | half_open
    failures: int = 0
    opened_at: float | None = None
    retry_at: float | None = None  # when the next probe is allowed

    def to_dict(self) -> dict:
        return {"state": self.state, "failures": self.failures, "opened_at": self.opened_at, "retry_at": self.retry_at}


@dataclass(frozen=True)
class Permit:
    allowed: bool
    retry_after: float = 0.0
    opened_at: float | None = None
    probe: bool = False
    failures: int = 0  # consecutive failures so far; 0 lets a success skip the reset round trip


class MemoryBreaker:
    """In-process twin of :class:`RedisBreaker` (same semantics, one process only)."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._lock = threading.Lock()
        self._data: dict[str, dict] = {}

    def allow(self, channel: str, failures: int, cooldown: float) -> Permit:
        now = self.clock()
        with self._lock:
            s = self._data.get(channel)
            if not s or s.get("opened_at") is None:
                return Permit(True, failures=int(s["failures"]) if s else 0)
            retry_at = s["opened_at"] + cooldown if s.get("probe_at") is None else s["probe_at"] + cooldown
            if now >= retry_at:
                s["probe_at"] = now  # one probe per cooldown period
                return Permit(True, opened_at=s["opened_at"], probe=True)
            return Permit(False, retry_after=retry_at - now, opened_at=s["opened_at"])

    def success(self, channel: str) -> None:
        with self._lock:
            self._data.pop(channel, None)

    def failure(self, channel: str, failures: int, cooldown: float) -> None:
        now = self.clock()
        with self._lock:
            s = self._data.setdefault(channel, {"failures": 0, "opened_at": None, "probe_at": None})
            s["failures"] += 1
            if s["opened_at"] is not None:
                s["probe_at"] = now  # failed probe: wait a full cooldown again
            elif s["failures"] >= failures:
                s["opened_at"] = now

    def state(self, channel: str, cooldown: float) -> BreakerState:
        with self._lock:
            s = self._data.get(channel)
            return _describe(s, cooldown, self.clock())

    def reset(self, channel: str) -> None:
        self.success(channel)


def _describe(s: dict | None, cooldown: float, now: float) -> BreakerState:
    if not s:
        return BreakerState("closed")
    opened = s.get("opened_at")
    if opened is None:
        return BreakerState("closed", int(s.get("failures") or 0))
    probe = s.get("probe_at")
    retry_at = (probe if probe is not None else opened) + cooldown
    return BreakerState("half_open" if now >= retry_at else "open", int(s.get("failures") or 0), opened, retry_at)


# Redis: one hash per channel {failures, opened_at, probe_at}; scripts keep each step atomic and
# use the Redis server clock so workers with skewed clocks agree.
_ALLOW = """
local now = redis.call('TIME'); now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if not opened then return {1, '0', '', tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')} end
local probe = redis.call('HGET', KEYS[1], 'probe_at')
local cooldown = tonumber(ARGV[1])
local retry_at = tonumber(probe or opened) + cooldown
if now >= retry_at then
  redis.call('HSET', KEYS[1], 'probe_at', tostring(now))
  return {2, '0', opened, 0}
end
return {0, tostring(retry_at - now), opened, 0}
"""

_FAILURE = """
local now = redis.call('TIME'); now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if opened then
  redis.call('HSET', KEYS[1], 'probe_at', tostring(now))
elseif n >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'opened_at', tostring(now))
end
redis.call('EXPIRE', KEYS[1], 86400)
return n
"""


class RedisBreaker:
    def __init__(self, redis, prefix: str = "bc:breaker:"):
        self.redis = redis
        self.prefix = prefix
        self._allow = redis.register_script(_ALLOW)
        self._failure = redis.register_script(_FAILURE)

    def allow(self, channel: str, failures: int, cooldown: float) -> Permit:
        code, wait, opened, failures = self._allow(keys=[self.prefix + channel], args=[cooldown])
        opened_at = float(opened) if opened else None
        return Permit(code != 0, retry_after=float(wait), opened_at=opened_at, probe=code == 2, failures=int(failures))

    def success(self, channel: str) -> None:
        self.redis.delete(self.prefix + channel)

    def failure(self, channel: str, failures: int, cooldown: float) -> None:
        self._failure(keys=[self.prefix + channel], args=[failures])

    def state(self, channel: str, cooldown: float) -> BreakerState:
        raw = self.redis.hgetall(self.prefix + channel)
        s = {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in raw.items()} if raw else None
        sec, usec = self.redis.time()
        return _describe(s, cooldown, sec + usec / 1e6)

    def reset(self, channel: str) -> None:
        self.success(channel)
