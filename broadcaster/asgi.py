"""The server's composition root: the HTTP API and the web page side by side in one ASGI app,
sharing one runtime. Neither package imports the other; this module puts them together.

``create_app(settings, runtime=None)`` is what ``broadcaster api`` / ``up`` serve and what tests
build; ``app_from_environment`` is the factory ``uvicorn --factory`` calls in each process of
``broadcaster api --workers N``.
"""

from __future__ import annotations

from fastapi import FastAPI

from .api.app import create_api
from .config import Settings, read_settings
from .logs import configure
from .runtime import Runtime
from .web.mount import mount as mount_web


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """API and page on ``runtime`` (built from ``settings``, with Celery wake-ups, when None)."""
    return create_api(settings, runtime, mounts=[mount_web])


def app_from_environment() -> FastAPI:
    """Each server process reads ``$BROADCASTER_CONFIG`` and builds its own runtime."""
    configure()
    return create_app(read_settings())
