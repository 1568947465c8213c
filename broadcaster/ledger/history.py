"""What happened, written beside the change itself: a delivery's events and the audit log.

Both are written on the caller's connection, so a state change and its record commit together
or not at all — the events are the attempt log operators read, and every state a delivery ever
had is in them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert

from . import schema as t
from .prepared import Prepared

#: built once: the worker's hot path writes one per claim and per outcome
INSERT_EVENT = insert(t.delivery_events)
#: one event (the drain writes one per delivery): straight on the driver's cursor
_WRITE_EVENT = Prepared(INSERT_EVENT)
_INSERT_AUDIT = insert(t.audit_log)
#: every audit entry gives every column: straight on the driver's cursor too
_WRITE_AUDIT = Prepared(_INSERT_AUDIT)


def event_row(delivery_id: str, frm: str | None, to: str, attempt: int, reason: str, *, at: float,
              response: str | None = None) -> dict[str, Any]:
    """An event's column values (reason and response cut to what operators read)."""
    return {"delivery_id": delivery_id, "at": at, "from_state": frm, "to_state": to, "attempt": attempt,
            "reason": reason[:2000], "response": (response or None) and response[:1000]}


def write_event(conn: Connection, delivery_id: str, frm: str | None, to: str, attempt: int, reason: str, *,
                at: float, response: str | None = None) -> None:
    _WRITE_EVENT.run(conn, event_row(delivery_id, frm, to, attempt, reason, at=at, response=response))


def write_audit(conn: Connection, *, at: float, actor: str, action: str, target: str | None,
                details: Mapping[str, Any] | None) -> None:
    _WRITE_AUDIT.run(conn, {"at": at, "actor": actor, "action": action, "target": target,
                            "details": dict(details or {})})
