"""The real API app served by uvicorn on a free loopback port, in a thread.

Used by the CLI tests and the browser test: the client under test speaks real HTTP to the real
``create_app`` over a real SQLite ledger; only the broker is replaced (a recording enqueuer)
unless a test wires a Celery worker in.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import uvicorn

from broadcaster.asgi import create_app
from broadcaster.config import load_settings
from broadcaster.models import DeliveryState, Receipt
from broadcaster.runtime import Runtime
from tests.conftest import free_port
from tests.support.ledger import claim
from tests.support.runtime import memory_runtime

__all__ = ["make_settings", "memory_runtime", "serve", "settle"]


def make_settings(ledger_url: str, channels: dict, routes: dict | None = None, **extra):
    data = {"ledger": ledger_url, "channels": channels,
            "routes": routes or {"incident": list(channels), "deploy": list(channels), "notice": list(channels)},
            "api": {"rate_limit": "10000/1m", "anonymous_rate_limit": "10000/1m"}, **extra}
    return load_settings(data, env={})


@contextmanager
def serve(settings, runtime: Runtime, port: int | None = None):
    """Yield the base URL of the API (and web page) while uvicorn serves it (on ``port``, when
    the settings must name it beforehand, e.g. in ``public_url``)."""
    app = create_app(settings, runtime)
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           proxy_headers=False,  # as `broadcaster api`: the app decides
                                           lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 15
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)


def settle(runtime: Runtime, delivery_id: str, state: str, *, url: str | None = None, error: str | None = None) -> None:
    """Move a delivery the way a worker would: claim it, then record the outcome."""
    ledger = runtime.ledger
    d = claim(ledger, delivery_id, "test-worker", 30)
    assert d is not None, f"could not claim {delivery_id}"
    receipt = Receipt(remote_id=f"r-{delivery_id}", url=url) if state == "delivered" else None
    ok = ledger.transition(d, DeliveryState(state), f"test: {state}", owner="test-worker", attempted=True,
                           receipt=receipt, error=error)
    assert ok
