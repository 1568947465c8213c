"""The whole engine in one test process: a real ledger, a real Redis broker, a real Celery
worker thread (``start_worker``) and the scheduler's sweep in a thread."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from broadcaster import scheduler
from broadcaster.config import load_settings
from broadcaster.models import SETTLED
from broadcaster.runtime import Runtime
from broadcaster.tasks import celery_enqueuer, create_app


def settings_for(ledger_url: str, redis_url: str, channels: dict, routes: dict | None = None,
                 policy: dict | None = None, **extra):
    data = {
        "ledger": ledger_url,
        "broker": redis_url,
        "channels": channels,
        "routes": routes or {"incident": list(channels)},
        "policy": policy or {"defaults": {"attempts": 5, "backoff": {"base": 0.2, "max": 1}, "timeout": 5}},
        "scheduler": {"interval": 0.2, "requeue_after": 2, "lease": 3, **extra.pop("scheduler", {})},
        **extra,
    }
    return load_settings(data, env={})


class System:
    def __init__(self, settings):
        self.settings = settings
        # the API's way of publishing (its own Celery app) and the worker's app, as in production
        self.runtime = Runtime.from_settings(settings, enqueuer=celery_enqueuer(settings))
        self.app = create_app(settings, self.runtime)
        self._stop = threading.Event()
        self._sched = None
        self._worker_cm = None

    def start_scheduler(self):
        self._sched = threading.Thread(target=scheduler.run, args=(self.runtime, self._stop), daemon=True)
        self._sched.start()

    @contextmanager
    def worker(self, concurrency: int = 4):
        from celery.contrib.testing.worker import start_worker

        with start_worker(self.app, pool="threads", concurrency=concurrency, perform_ping_check=False,
                          shutdown_timeout=15, loglevel="WARNING"):
            yield

    def stop(self):
        self._stop.set()
        if self._sched:
            self._sched.join(5)
        self.runtime.close()
        self.runtime.ledger.close()

    def wait_settled(self, ann_id: str, timeout: float = 30.0, count: int | None = None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            ds = self.runtime.ledger.deliveries_of(ann_id)
            if ds and all(d.state in SETTLED for d in ds) and (count is None or len(ds) >= count):
                return ds
            time.sleep(0.1)
        raise AssertionError(f"not settled in {timeout}s: {[(d.channel, str(d.state)) for d in self.runtime.ledger.deliveries_of(ann_id)]}")
