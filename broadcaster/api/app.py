"""The HTTP API application: ``create_api(settings, runtime=None, mounts=()) -> FastAPI``.

Layers, outermost first: CatchAll (no traceback ever reaches a client) → metrics (latency of
every request) → proxy headers (only with ``api.trusted_proxies``: the client address and
scheme a trusted reverse proxy reports in X-Forwarded-For / X-Forwarded-Proto) → IntakeGuard
(size limit, token or session, rate limits — before any body is read) → CleanParams (no control
character in a query value or a page path: ``api/params.py``) → FastAPI routing with JSON error
handlers. The API lives under ``/api/v1``; health and metrics at the root; whatever ``mounts``
add (``broadcaster.asgi`` mounts the web page at ``/``).

Other routers reach shared state through ``request.app.state``: ``runtime`` (ledger, settings,
channels), ``tokens`` (a :class:`~broadcaster.tokens.TokenStore`, e.g. to sign in with a
token), ``sessions`` (the web page's session store, checked by the intake guard), ``wakeups``
(the thread that wakes the workers after an accepted POST: ``api/wakeups.py``) and
``public_paths`` (append a prefix under ``/api`` that must work without a token).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from importlib import metadata

from fastapi import APIRouter, FastAPI, Request

from .. import DISTRIBUTION
from ..config import Settings
from ..errors import LedgerUnavailable
from ..runtime import Runtime
from ..tokens import TokenStore
from . import docs_ui, errors
from .auth import Unauthenticated
from .deps import lenient_json
from .intake import DEFAULT_PUBLIC, IntakeGuard, Limiter
from .metrics import ApiMetrics, MetricsMiddleware
from .params import CleanParams
from .wakeups import Wakeups

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
DESCRIPTION = """Submit an announcement once; broadcaster delivers it to every channel and keeps trying.

Every `/api/v1` route needs `Authorization: Bearer <token>` (create one with
`broadcaster tokens create`). Every POST accepts an `Idempotency-Key` header: a retried request
with the same key and body returns the first result; the same key with a different body is
refused with 422 `idempotency_conflict`. Errors are always
`{"error": {"code", "message", "details"}}`. Times are ISO 8601 UTC.
"""


def default_runtime(settings: Settings) -> Runtime:
    """The process runtime, with Celery wired in so submits wake the workers."""
    from ..tasks import celery_enqueuer

    enqueuer = celery_enqueuer(settings)
    try:
        return Runtime.from_settings(settings, enqueuer=enqueuer)
    except LedgerUnavailable:
        # start anyway: /readyz says 503 and requests answer 503 until the database is back
        log.warning("the ledger is unreachable at start; serving 503 until it is back")
        return Runtime.from_settings(settings, migrate=False, enqueuer=enqueuer)


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0"


def _routers(public: list[str]) -> APIRouter:
    from . import routes_announcements, routes_channels, routes_deliveries, routes_preview

    api = APIRouter(prefix=API_PREFIX, **lenient_json())
    for module in (routes_announcements, routes_deliveries, routes_preview, routes_channels, *_optional()):
        api.include_router(module.router)
        public.extend(p for p in getattr(module, "PUBLIC_PATHS", ()) if p not in public)
    return api


#: routers written for other issues (subscribers, export); the API works without them
OPTIONAL = ("routes_subscribers", "routes_endpoints", "routes_export", "routes_inbound", "routes_review")


def _optional() -> list:
    import importlib

    found = []
    for name in OPTIONAL:
        try:
            found.append(importlib.import_module(f"{__package__}.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
    return found


#: something served beside the API by the same app and runtime (the web page): called with the
#: app after the API's routes and before the middleware, so the intake guard sees what it adds
#: (``app.state.sessions``)
Mount = Callable[[FastAPI], None]


def create_api(settings: Settings, runtime: Runtime | None = None, *, mounts: Sequence[Mount] = ()) -> FastAPI:
    """The HTTP API. The whole server (API and page) is composed in ``broadcaster.asgi``."""
    owned = runtime is None
    rt = default_runtime(settings) if runtime is None else runtime

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        app.state.wakeups.close()  # publish what is queued while the runtime is still open
        if owned:
            rt.close()
            rt.ledger.close()

    app = FastAPI(title="broadcaster", version=_version(), description=DESCRIPTION, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json", lifespan=lifespan, **lenient_json())
    app.state.runtime = rt
    app.state.tokens = TokenStore(rt.ledger, settings, clock=rt.clock)
    app.state.metrics = ApiMetrics(rt)
    app.state.wakeups = Wakeups(rt.enqueue)
    app.state.public_paths = list(DEFAULT_PUBLIC)

    app.add_middleware(CleanParams)  # innermost: after the intake guard's size, token and rate checks
    errors.install(app)

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(request: Request, exc: Unauthenticated):
        return errors.error_response(401, "unauthorized", "an Authorization: Bearer <token> header is required")

    from .routes_health import router as health

    app.include_router(health)
    docs_ui.install(app)  # /docs with Swagger UI's assets served locally (works offline)
    app.include_router(_routers(app.state.public_paths))
    for mount in mounts:
        mount(app)

    limiter = Limiter(rt.limiter, clock=rt.clock)
    app.add_middleware(IntakeGuard, settings=settings, tokens=app.state.tokens, limiter=limiter,
                       public=app.state.public_paths, sessions=getattr(app.state, "sessions", None))
    if settings.api.trusted_proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        # outside the guard: per-address limits see the real client, cookies see https
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.api.trusted_proxies))
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(errors.CatchAll)
    app.openapi = lambda: _openapi_with_intake_errors(app)  # type: ignore[method-assign]
    return app


#: statuses the intake guard can answer on any POST before a route runs
_INTAKE_ERRORS = {"400": "malformed JSON or request", "413": "body larger than api.max_body_bytes",
                  "415": "body is not JSON"}


def _openapi_with_intake_errors(app: FastAPI) -> dict:
    """FastAPI's schema plus the errors our intake middleware answers, which it cannot see."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    error_ref = {"$ref": "#/components/schemas/ErrorOut"} if "ErrorOut" in spec.get("components", {}).get(
        "schemas", {}) else {"type": "object"}
    for path, item in spec.get("paths", {}).items():
        op = item.get("post")
        if op is None or not path.startswith(API_PREFIX):
            continue
        for status, text in _INTAKE_ERRORS.items():
            op.setdefault("responses", {}).setdefault(
                status, {"description": text, "content": {"application/json": {"schema": error_ref}}})
    app.openapi_schema = spec
    return spec
