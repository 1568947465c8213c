"""Shared resilience state: circuit breakers and rate limiters.

Each has a Redis implementation (shared by every worker on every machine) and an in-memory twin
with the same behaviour, used by unit tests and by a single-process demo.
"""

from .breaker import BreakerState, MemoryBreaker, RedisBreaker
from .ratelimit import MemoryRateLimiter, RedisRateLimiter

__all__ = ["BreakerState", "MemoryBreaker", "MemoryRateLimiter", "RedisBreaker", "RedisRateLimiter"]
