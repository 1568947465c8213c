"""The shapes of what users submit (announcements, updates, subscriber fields), validated once for
the API, the CLI, the web page and break glass: field limits, known kinds and statuses, sane
times, and only text every routed channel and the ledger can hold (:mod:`broadcaster.limits`).
Errors name the field, with its path (``variants.ops-chat.title``, ``components.2``).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import wording
from .errors import InvalidRequest
from .limits import CHANNEL, IDEMPOTENCY_KEY, STATUS, multiline, text_problem
from .models import COMPONENT_STATES, INCIDENT_STATUSES, KINDS, MAINTENANCE_STATUSES, SEVERITIES

#: times a datetime can hold and people mean: 1970 … 9999
_EARLIEST, _LATEST = 0.0, 253402300799.0
#: the statuses each kind knows; an update of another kind carries a short label of its own
STATUSES: dict[str, tuple[str, ...]] = {"incident": INCIDENT_STATUSES, "maintenance": MAINTENANCE_STATUSES}
#: the shape of a free status label (kinds without known statuses): it is shown as ``[label]``
_LABEL = re.compile(r"^\w[\w .-]*$")
#: longest component or tag name (the subscriber form shares it)
NAME_MAX = 100


def one_line(value: str) -> str:
    """A title, status, name or address: no control characters, no line breaks, no tabs."""
    problem = text_problem(value, one_line=True)
    if problem:
        raise ValueError(problem)
    return value


def raw_one_line(value: Any) -> Any:
    """:func:`one_line` on the value as sent, before pydantic trims it: the models trim plain
    blanks (``str_strip_whitespace``), which used to turn ``"deploy\\n"`` or ``"API\\n"`` into an
    accepted value — a line break or control character anywhere in a one-line field is an error."""
    if isinstance(value, str):
        one_line(value)
    return value


#: a one-line field checked as sent (see :func:`raw_one_line`)
AsSent = BeforeValidator(raw_one_line)


def text(value: str) -> str:
    """A body: tabs and newlines are text, other control characters are not; CRLF becomes LF."""
    problem = text_problem(value, one_line=False)
    if problem:
        raise ValueError(problem)
    return multiline(value)


Title = Annotated[str, AsSent, Field(max_length=300), AfterValidator(one_line)]
Body = Annotated[str, Field(max_length=20000), AfterValidator(text)]
#: longest URL accepted anywhere (an announcement's link, where an operator found a post)
URL_MAX = 2000
Url = Annotated[str, AsSent, Field(max_length=URL_MAX), AfterValidator(one_line)]
Name = Annotated[str, AsSent, Field(min_length=1, max_length=NAME_MAX), AfterValidator(one_line)]
ChannelName = Annotated[str, AsSent, AsSent, Field(min_length=1, max_length=CHANNEL), AfterValidator(one_line)]
Status = Annotated[str, AsSent, Field(min_length=1, max_length=STATUS), AfterValidator(one_line)]
#: why something was retracted or cancelled (multi-line; kept in the audit log and told to channels)
Reason = Annotated[str, Field(max_length=2000), AfterValidator(text)]


def allowed_statuses(kind: str) -> tuple[str, ...] | None:
    """The statuses an announcement of ``kind`` may have, or None when it takes a free label."""
    return STATUSES.get(kind)


def check_status(kind: str, status: str, *, update: bool) -> str:
    """``status`` for an announcement (``update=False``) or an update of ``kind``; ValueError if not.

    Incidents and maintenance know their statuses. Other kinds have none of their own: an
    announcement takes none, an update a short one-line label (``update``, ``rolled back``)."""
    allowed = allowed_statuses(kind)
    if allowed is not None:
        if status not in allowed:
            raise ValueError(f"status {status!r} is not valid for {wording.a(kind)} (one of {', '.join(allowed)})")
    elif not update:
        raise ValueError(f"status {status!r} is not valid for {wording.a(kind)} (only incidents and maintenance have one)")
    elif not _LABEL.match(status):
        raise ValueError("a status is a short label: letters, digits, spaces, '-', '_' and '.'")
    return status


def _epoch(v: Any) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if not (_EARLIEST <= float(v) <= _LATEST):  # also refuses NaN and ±Infinity
            raise ValueError("not a time between 1970 and 9999 (Unix seconds or ISO 8601)")
        return float(v)
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp()
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("not a date-time (use ISO 8601, e.g. 2026-11-22T14:00:00Z)") from None
        ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
        if not (_EARLIEST <= ts <= _LATEST):
            raise ValueError("not a time between 1970 and 9999")
        return ts
    raise ValueError("not a date-time")


#: a promise this far ahead is not a "next update" (a week: longer is a plan, not a commitment)
NEXT_UPDATE_MAX = 7 * 86400.0
_RELATIVE = re.compile(r"^\s*\d+(\.\d+)?\s*(s|m|h|d)\s*$")


def next_update(v: Any) -> float | str | None:
    """``next_update_at`` as sent: an absolute time (ISO 8601 or Unix seconds, like
    ``publish_at``) becomes epoch seconds; a duration from now (``30m``, ``1h``) is kept as
    written — the service turns it into a time with its own clock."""
    if isinstance(v, str) and _RELATIVE.match(v):
        return v.strip()
    return _epoch(v)


class WindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    starts_at: float | str
    ends_at: float | str

    @field_validator("starts_at", "ends_at", mode="before")
    @classmethod
    def _time(cls, v: Any) -> float | None:
        return _epoch(v)

    @model_validator(mode="after")
    def _order(self) -> WindowIn:
        if float(self.ends_at) <= float(self.starts_at):
            raise ValueError("window.ends_at must be after window.starts_at")
        return self


class VariantIn(BaseModel):
    """One channel's own title or text, held to the same rules as the announcement's."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    title: Title | None = None
    body: Body | None = None


class AnnouncementIn(BaseModel):
    """What a user submits once. ``channels`` empty → the route for ``kind``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    kind: Annotated[str, AsSent] = Field(..., json_schema_extra={"enum": list(KINDS)})
    #: a configured template (``templates:``): fills the title, body (its phase's text), severity,
    #: components and next update the request leaves out; what the request gives wins
    template: Name | None = None
    title: Title = Field("", description="required unless the template gives one")
    body: Body = ""
    url: Url | None = None
    severity: Annotated[str, AsSent] | None = Field(None, json_schema_extra={"enum": [*SEVERITIES, None]})
    status: Status | None = None
    components: list[Name] = Field(default_factory=list, max_length=50)
    #: optional: a state per named component instead of the one its severity gives
    component_states: dict[Name, Annotated[str, AsSent]] = Field(
        default_factory=dict, max_length=50,
        json_schema_extra={"additionalProperties": {"enum": list(COMPONENT_STATES)}})
    publish_at: float | str | None = None
    #: incidents: when the next update is promised — a time, or a duration from now (``30m``)
    next_update_at: float | str | None = None
    window: WindowIn | None = None
    channels: list[ChannelName] = Field(default_factory=list, max_length=100)
    variants: dict[ChannelName, VariantIn] = Field(default_factory=dict)
    tags: list[Name] = Field(default_factory=list, max_length=20)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in KINDS:
            raise ValueError(f"must be one of {', '.join(KINDS)}")
        return v

    @field_validator("severity")
    @classmethod
    def _severity(cls, v: str | None) -> str | None:
        if v is not None and v not in SEVERITIES:
            raise ValueError(f"must be one of {', '.join(SEVERITIES)}")
        return v

    @field_validator("component_states")
    @classmethod
    def _component_states(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        bad = sorted({s for s in v.values() if s not in COMPONENT_STATES})
        if bad:
            raise ValueError(f"{bad[0]!r} is not a component state (one of {', '.join(COMPONENT_STATES)})")
        if v and info.data.get("kind") not in (None, "incident", "maintenance"):
            raise ValueError("only incidents and maintenance set component states")
        return v

    @field_validator("status")
    @classmethod
    def _status(cls, v: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if v is None or kind is None:  # no kind: its own error is reported
            return v
        return check_status(kind, v, update=False)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v or None

    @field_validator("publish_at", mode="before")
    @classmethod
    def _publish(cls, v: Any) -> float | None:
        return _epoch(v)

    @field_validator("next_update_at", mode="before")
    @classmethod
    def _next_update(cls, v: Any) -> float | str | None:
        return next_update(v)


class UpdateIn(BaseModel):
    """A follow-up. Whether ``status`` is known for the announcement's kind is checked by the
    service, which knows the kind; its shape and length are checked here."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    status: Status
    #: a configured template: the body its phase for ``status`` words, when ``body`` is left out
    template: Name | None = None
    body: Body = Field("", description="required unless the template words this status")
    title: Title | None = None
    components: list[Name] | None = Field(None, max_length=50)
    #: optional: a new state for some of the announcement's components (the rest keep theirs)
    component_states: dict[Name, Annotated[str, AsSent]] = Field(
        default_factory=dict, max_length=50,
        json_schema_extra={"additionalProperties": {"enum": list(COMPONENT_STATES)}})
    #: incidents: when the next update is promised — a time, or a duration from now (``30m``)
    next_update_at: float | str | None = None

    @field_validator("status")
    @classmethod
    def _label(cls, v: str) -> str:
        return check_status("", v, update=True)

    @field_validator("component_states")
    @classmethod
    def _component_states(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted({s for s in v.values() if s not in COMPONENT_STATES})
        if bad:
            raise ValueError(f"{bad[0]!r} is not a component state (one of {', '.join(COMPONENT_STATES)})")
        return v

    @field_validator("next_update_at", mode="before")
    @classmethod
    def _next_update(cls, v: Any) -> float | str | None:
        return next_update(v)


# ---------------------------------------------------------------- subscriber fields


def subscriber_field(value: Any) -> Any:
    """A subscriber's list, address, name or component names: one line each, no control
    characters, checked as sent (models use it ``mode="before"``, ahead of their trimming). The
    public form and the CSV import share it; the CSV export is read by spreadsheets and mail
    merges, and a name ends up in mail headers."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            one_line(item)
    return value


def check_subscriber(field: str, value: str | None) -> str | None:
    """:func:`subscriber_field` for callers outside a model: InvalidRequest naming ``field``."""
    if value is not None:
        problem = text_problem(value, one_line=True)  # as given: callers trim after, never before
        if problem:
            raise InvalidRequest(f"{field}: {problem}", field=field)
    return value


# ---------------------------------------------------------------- idempotency keys


def stored_key(prefix: str, key: str) -> str:
    """The form an Idempotency-Key is stored in under ``prefix`` (``update:<id>:``, ``web:``).

    The key itself is 1-255 characters without control characters (the web page's hidden field
    reaches here unchecked by the API's header rules). When prefix and key together would not fit
    the column, the key is stored as its SHA-256 — the same key always maps to the same row."""
    problem = text_problem(key, one_line=True)
    if problem or not key or len(key) > IDEMPOTENCY_KEY:
        raise InvalidRequest(f"Idempotency-Key: {problem or f'must be 1-{IDEMPOTENCY_KEY} characters'}",
                             field="Idempotency-Key")
    whole = prefix + key
    if len(whole) <= IDEMPOTENCY_KEY:
        return whole
    return prefix + "sha256:" + hashlib.sha256(key.encode()).hexdigest()


# ---------------------------------------------------------------- errors and hashes


def validation_problem(exc: ValidationError) -> InvalidRequest:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return InvalidRequest(f"{loc}: {msg}" if loc and not msg.startswith(f"{loc} ") else msg, field=loc or None)


def request_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()
