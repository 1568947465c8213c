"""Small FastAPI dependencies shared by the route modules."""

from __future__ import annotations

from fastapi import Header, Request

from ..runtime import Runtime
from .idempotency import check_key


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def idempotency_key(
    key: str | None = Header(None, alias="Idempotency-Key",
                             description="make a retried POST safe: same key + same body → same result, "
                                         "same key + different body → 422 idempotency_conflict"),
) -> str | None:
    return check_key(key)


def location(ann_id: str) -> str:
    return f"/api/v1/announcements/{ann_id}"


def parse_time(name: str, value: str | None) -> float | None:
    """A query-string time: ISO 8601 (``Z`` or an offset; naive means UTC) or epoch seconds."""
    from datetime import datetime, timezone

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
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
