"""Liveness, readiness and metrics — no token needed, nothing secret in the answers.

Served at the root (``/healthz``, ``/readyz``, ``/metrics``: where probes and Prometheus look)
and under ``/api/v1`` as well.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import parts
from ..runtime import Runtime
from ..schemas import Health, Ready

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


def checks(rt: Runtime) -> dict[str, str]:
    """Each dependency: ``ok``, ``unavailable (<exception type>)`` or ``skipped``. Exception
    messages are left out on purpose: they can quote a URL with a password in it."""
    out: dict[str, str] = {}
    try:
        rt.ledger.ping()
        out["ledger"] = "ok"
    except Exception as exc:  # noqa: BLE001
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        out["ledger"] = f"unavailable ({type(cause).__name__})"
    if rt.redis is None:
        out["redis"] = "skipped"
    else:
        try:
            rt.redis.ping()
            out["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            out["redis"] = f"unavailable ({type(exc).__name__})"
    return out


@router.get("/healthz", response_model=Health)
@router.get("/api/v1/healthz", response_model=Health, include_in_schema=False)
async def healthz():
    """The process is alive and answering (on the event loop itself: no thread needed, no I/O)."""
    return Health()


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
@router.get("/api/v1/readyz", response_model=Ready, include_in_schema=False)
def readyz(request: Request):
    """Ready to accept announcements: the ledger and the broker's Redis answer (503 when not).
    Under ``broadcaster up`` it also shows each process it runs: a worker that keeps crashing
    reads ``restarting`` there while the API, which still accepts, stays ready."""
    result = checks(request.app.state.runtime)
    ok = all(v in ("ok", "skipped") for v in result.values())
    if not ok:
        log.warning("not ready: %s", result)
    running = {name: asdict(p) for name, p in parts.read().items()}
    body = Ready(status="ok" if ok else "unavailable", checks=result, parts=running).model_dump()
    return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})


@router.get("/metrics", response_class=Response)
@router.get("/api/v1/metrics", response_class=Response, include_in_schema=False)
def metrics(request: Request):
    """Prometheus text exposition."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
