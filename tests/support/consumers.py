"""Wait for Celery worker processes to be consuming from a Redis broker.

A worker started in another process is ready when its kombu consumer sits in ``BRPOP`` on its
queues (one such client per worker process, whatever its thread count): publishing before that
lets the first process to boot take everything, which is not what a test of several workers —
or a figure per worker count — means to measure.
"""

from __future__ import annotations

import subprocess
import time


def wait_consumers(redis_url: str, n: int, procs: list[subprocess.Popen], timeout: float = 30.0,
                   where: str = "") -> None:
    """Return once ``n`` clients of ``redis_url`` are blocked in ``BRPOP``; fail at once if one of
    ``procs`` exits first, and after ``timeout`` seconds (``where`` says where the logs are)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    hint = f"; see {where}" if where else ""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker exited with {proc.returncode}{hint}")
            if sum(1 for c in client.client_list() if c.get("cmd") == "brpop") >= n:
                time.sleep(0.3)
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise RuntimeError(f"{n} worker(s) not consuming after {timeout}s{hint}")
