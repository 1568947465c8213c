"""Rate limiter per channel (and per API token/address), shared by all workers.

A sliding-window log: a request is granted when fewer than ``limit`` were granted in the last
``per`` seconds. So a provider limit such as "300 per 5 minutes" holds over *every* 5-minute
window — a recovering backlog drains at the limit with no burst above it (a token bucket would
allow up to twice the limit in one window). ``acquire`` takes a slot (returns 0) or says how many
seconds until the oldest grant leaves the window; the worker then puts the delivery back in the
ledger with that due time instead of hammering the provider. A refused request takes no slot.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable


class MemoryRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._lock = threading.Lock()
        self._grants: dict[str, collections.deque] = {}

    def acquire(self, key: str, limit: int, per: float) -> float:
        now = self.clock()
        with self._lock:
            log = self._grants.setdefault(key, collections.deque())
            while log and log[0] <= now - per:
                log.popleft()
            if len(log) < limit:
                log.append(now)
                return 0.0
            return max(0.001, log[0] + per - now)

    def acquire_many(self, key: str, limit: int, per: float, n: int) -> tuple[int, float]:
        """Take up to ``n`` slots at once (a worker's batch): ``(granted, wait)``, where ``wait``
        is the seconds until the next slot frees when fewer than ``n`` were granted, else 0.
        Never more than ``limit`` grants in any window, exactly as ``n`` calls of ``acquire``."""
        now = self.clock()
        with self._lock:
            log = self._grants.setdefault(key, collections.deque())
            while log and log[0] <= now - per:
                log.popleft()
            granted = max(0, min(n, limit - len(log)))
            log.extend([now] * granted)
            if granted >= n:
                return granted, 0.0
            return granted, max(0.001, log[0] + per - now) if log else 0.001

    def reset(self, key: str) -> None:
        with self._lock:
            self._grants.pop(key, None)


# One sorted set per key: members are grants, scores their times (the Redis server's clock, so
# workers on machines with skewed clocks agree).
_ACQUIRE = """
local now = redis.call('TIME'); now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local limit = tonumber(ARGV[1]); local per = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - per)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(per * 1000) + 1000)
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(math.max(0.001, tonumber(oldest[2]) + per - now))
"""

# The same for a batch: up to ARGV[4] grants at once; returns {granted, wait as a string}.
_ACQUIRE_MANY = """
local now = redis.call('TIME'); now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local limit = tonumber(ARGV[1]); local per = tonumber(ARGV[2]); local n = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - per)
local granted = math.max(0, math.min(n, limit - redis.call('ZCARD', KEYS[1])))
for i = 1, granted do redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. i) end
if granted > 0 then redis.call('PEXPIRE', KEYS[1], math.ceil(per * 1000) + 1000) end
if granted >= n then return {granted, '0'} end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] == nil then return {granted, '0.001'} end
return {granted, tostring(math.max(0.001, tonumber(oldest[2]) + per - now))}
"""


class RedisRateLimiter:
    def __init__(self, redis, prefix: str = "bc:rl:"):  # not "bc:rate:": those were token buckets (hashes)
        self.redis = redis
        self.prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._acquire_many = redis.register_script(_ACQUIRE_MANY)

    def acquire(self, key: str, limit: int, per: float) -> float:
        return float(self._acquire(keys=[self.prefix + key], args=[limit, per, uuid.uuid4().hex]))

    def acquire_many(self, key: str, limit: int, per: float, n: int) -> tuple[int, float]:
        """Up to ``n`` slots in one round trip: ``(granted, wait)`` (see the memory twin)."""
        granted, wait = self._acquire_many(keys=[self.prefix + key], args=[limit, per, uuid.uuid4().hex, n])
        return int(granted), float(wait)

    def reset(self, key: str) -> None:
        self.redis.delete(self.prefix + key)
