"""Token-bucket rate limiter per channel, shared by all workers.

``acquire`` either takes a token (returns 0) or says how many seconds until one is available —
the worker then puts the delivery back in the ledger with that due time instead of hammering the
provider. Capacity ``n`` refills at ``n / per`` tokens per second, so a backlog drains at the
configured rate with no burst above the bucket size.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class MemoryRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str, limit: int, per: float) -> float:
        now = self.clock()
        rate = limit / per
        with self._lock:
            tokens, ts = self._buckets.get(key, (float(limit), now))
            tokens = min(float(limit), tokens + (now - ts) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate

    def reset(self, key: str) -> None:
        with self._lock:
            self._buckets.pop(key, None)


_ACQUIRE = """
local now = redis.call('TIME'); now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local limit = tonumber(ARGV[1]); local rate = limit / tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or limit
local ts = tonumber(b[2]) or now
tokens = math.min(limit, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 2 + 60))
return tostring(wait)
"""


class RedisRateLimiter:
    def __init__(self, redis, prefix: str = "bc:rate:"):
        self.redis = redis
        self.prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)

    def acquire(self, key: str, limit: int, per: float) -> float:
        return float(self._acquire(keys=[self.prefix + key], args=[limit, per]))

    def reset(self, key: str) -> None:
        self.redis.delete(self.prefix + key)
