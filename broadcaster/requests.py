"""The shapes of what users submit (announcements, updates), validated once for the API, the CLI,
the web page and break glass: field limits, known kinds and statuses, sane times, no control
characters. Errors name the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidRequest
from .models import INCIDENT_STATUSES, KINDS, MAINTENANCE_STATUSES, SEVERITIES


#: times a datetime can hold and people mean: 1970 … 9999
_EARLIEST, _LATEST = 0.0, 253402300799.0
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _plain(v: Any) -> Any:
    """Refuse control characters (NUL, ANSI escapes, BEL, C1) in user text; tabs and newlines are text."""
    if isinstance(v, str) and _CONTROL.search(v):
        raise ValueError("contains control characters (only tab and newlines are allowed)")
    if isinstance(v, list):
        for item in v:
            _plain(item)
    return v


def _check_text(cls, v: Any) -> Any:
    return _plain(v)


def _epoch(v: Any) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if not (_EARLIEST <= float(v) <= _LATEST):  # also refuses NaN and ±Infinity
            raise ValueError("not a time between 1970 and 9999 (Unix seconds or ISO 8601)")
        return float(v)
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("not a date-time (use ISO 8601, e.g. 2026-11-22T14:00:00Z)") from None
        ts = (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
        if not (_EARLIEST <= ts <= _LATEST):
            raise ValueError("not a time between 1970 and 9999")
        return ts
    raise ValueError("not a date-time")


class WindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    starts_at: float | str
    ends_at: float | str

    @field_validator("starts_at", "ends_at", mode="before")
    @classmethod
    def _time(cls, v):
        return _epoch(v)

    @model_validator(mode="after")
    def _order(self):
        if self.ends_at <= self.starts_at:
            raise ValueError("window.ends_at must be after window.starts_at")
        return self


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=300)
    body: str | None = Field(None, max_length=20000)

    _text = field_validator("title", "body")(classmethod(_check_text))


class AnnouncementIn(BaseModel):
    """What a user submits once. ``channels`` empty → the route for ``kind``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    kind: str = Field(..., json_schema_extra={"enum": list(KINDS)})
    title: str = Field(..., min_length=1, max_length=300)
    body: str = Field("", max_length=20000)
    url: str | None = Field(None, max_length=2000)
    severity: str | None = Field(None, json_schema_extra={"enum": [*SEVERITIES, None]})
    status: str | None = None
    components: list[str] = Field(default_factory=list, max_length=50)
    publish_at: float | str | None = None
    window: WindowIn | None = None
    channels: list[str] = Field(default_factory=list, max_length=100)
    variants: dict[str, VariantIn] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, max_length=20)

    _text = field_validator("title", "body", "url", "components", "channels", "tags")(classmethod(_check_text))

    @field_validator("kind")
    @classmethod
    def _kind(cls, v):
        if v not in KINDS:
            raise ValueError(f"must be one of {', '.join(KINDS)}")
        return v

    @field_validator("severity")
    @classmethod
    def _severity(cls, v):
        if v is not None and v not in SEVERITIES:
            raise ValueError(f"must be one of {', '.join(SEVERITIES)}")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v):
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v or None

    @field_validator("publish_at", mode="before")
    @classmethod
    def _publish(cls, v):
        return _epoch(v)

    @model_validator(mode="after")
    def _status(self):
        allowed = {"incident": INCIDENT_STATUSES, "maintenance": MAINTENANCE_STATUSES}.get(self.kind)
        if self.status is not None and (allowed is None or self.status not in allowed):
            raise ValueError(f"status {self.status!r} is not valid for a {self.kind}"
                             + (f" (one of {', '.join(allowed)})" if allowed else ""))
        if self.kind == "maintenance" and self.window is None:
            pass  # a maintenance notice without a window is allowed (e.g. "maintenance completed")
        return self


class UpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    status: str
    body: str = Field(..., min_length=1, max_length=20000)
    title: str | None = Field(None, max_length=300)
    components: list[str] | None = None

    _text = field_validator("status", "body", "title", "components")(classmethod(_check_text))


def validation_problem(exc: ValidationError) -> InvalidRequest:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return InvalidRequest(f"{loc}: {msg}" if loc else msg, field=loc or None)


def request_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()
