"""Small FastAPI dependencies shared by the route modules.

The dependencies are ``async def`` because they do no I/O: FastAPI runs a plain ``def``
dependency in a worker thread, and those hops (one per dependency per request) cost more CPU
than the dependency itself.
"""

from __future__ import annotations

import inspect
from datetime import UTC

from fastapi import APIRouter, FastAPI, Header, Request

from ..runtime import Runtime
from .idempotency import check_key


async def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def idempotency_key(
    key: str | None = Header(None, alias="Idempotency-Key",
                             description="make a retried POST safe: same key + same body → same result, "
                                         "same key + different body → 422 idempotency_conflict"),
) -> str | None:
    return check_key(key)


def location(ann_id: str) -> str:
    return f"/api/v1/announcements/{ann_id}"


def parse_time(name: str, value: str | None) -> float | None:
    """A query-string time: ISO 8601 (``Z`` or an offset; naive means UTC) or epoch seconds."""
    from datetime import datetime

    from ..errors import InvalidRequest

    if value is None or value.strip() == "":
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name}: not a date-time (use ISO 8601, e.g. 2026-11-22T14:00:00Z)", field=name) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def lenient_json() -> dict:
    """Read JSON bodies whatever their Content-Type: ``curl -d '{...}'`` without ``-H`` sends
    form-encoded, and refusing the one-liner every CI recipe starts from helps nobody. (Only
    newer FastAPI checks the type at all; older ones are lenient already.)"""
    return {"strict_content_type": False} if "strict_content_type" in inspect.signature(FastAPI).parameters else {}


def make_router(**kw) -> APIRouter:
    return APIRouter(**kw, **(lenient_json() if "strict_content_type" in inspect.signature(APIRouter).parameters else {}))
