"""Every way a delivery row comes to be: routed with a new message (an announcement or an
update) and added as a fallback. Both meet the at-most-once key.

Every delivery row carries ``once_key`` = announcement / update (or ``-``) / channel under a
UNIQUE index, so the database itself refuses a second delivery of one message to one channel.
Routing refuses a channel named twice before the database would, more clearly; a fallback to a
channel that already has the message adds nothing and the caller says so in its event.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Executable, insert, select

from ..models import Delivery
from . import schema as t
from .history import INSERT_EVENT, event_row
from .ids import new_id
from .inputs import NewDelivery
from .prepared import Prepared
from .rows import delivery_of

_D = t.deliveries
#: every accepted message writes its deliveries and their first events with these (one
#: executemany each, straight on the driver's cursor; each row gives every defaulted column)
_INSERT = Prepared(insert(_D))
_INSERT_EVENTS = Prepared(INSERT_EVENT)


def delivery_row(ann_id: str, update_id: str | None, d: NewDelivery, now: float) -> tuple[dict[str, Any],
                                                                                          dict[str, Any]]:
    """The row of a new delivery and its first event (both as they will be stored)."""
    did = d.id or new_id("dlv")
    state = str(d.state)
    row = {"id": did, "announcement_id": ann_id, "update_id": update_id, "channel": d.channel, "state": state,
           "attempts": 0, "due_at": now if d.due_at == "now" else d.due_at, "deadline_at": d.deadline_at,
           "maybe_sent": False, "fallback_of": d.fallback_of, "created_at": now, "updated_at": now,
           "once_key": t.once_key(ann_id, update_id, d.channel)}
    return row, event_row(did, None, state, 0, d.reason, at=now)


def insert_routed(conn: Connection, ann_id: str, update_id: str | None, deliveries: Sequence[NewDelivery],
                  now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two statements whatever the number of channels (rows, then their first events); returns
    both as inserted. For a message that has no deliveries yet (a new announcement or update):
    a channel named twice is a caller's bug, refused before the database's unique key would
    refuse it less clearly."""
    if not deliveries:
        return [], []
    channels = [d.channel for d in deliveries]
    if len(set(channels)) != len(channels):
        twice = sorted({c for c in channels if channels.count(c) > 1})
        raise ValueError(f"a message gets at most one delivery per channel; named twice: {', '.join(twice)}")
    rows, events = [], []
    for d in deliveries:
        row, event = delivery_row(ann_id, update_id, d, now)
        rows.append(row)
        events.append(event)
    _INSERT.run_many(conn, rows)
    _INSERT_EVENTS.run_many(conn, events)
    return rows, events


def insert_fallbacks(conn: Connection, ann_id: str, update_id: str | None, fallbacks: Sequence[NewDelivery],
                     now: float) -> dict[str, Delivery]:
    """Add fallback deliveries for a message, except on channels that already have one (routed
    there directly, or an earlier fallback): the unique key decides, so a racing writer on
    PostgreSQL loses quietly too (``ON CONFLICT DO NOTHING``). Returns the channels skipped,
    each with the delivery that already carries the message there."""

    def holders(channels: list[str]) -> dict[str, Delivery]:
        keys = [t.once_key(ann_id, update_id, ch) for ch in channels]
        return {r.channel: delivery_of(r._mapping) for r in conn.execute(select(_D).where(_D.c.once_key.in_(keys)))}

    already = holders(list(dict.fromkeys(f.channel for f in fallbacks)))
    made: set[str] = set()
    insert_once = _insert_once(conn.dialect.name)
    for f in fallbacks:
        if f.channel in already or f.channel in made:
            continue
        row, event = delivery_row(ann_id, update_id, f, now)
        if conn.execute(insert_once, row).first() is None:  # a concurrent writer made it meanwhile
            already.update(holders([f.channel]))
            continue
        made.add(f.channel)
        conn.execute(INSERT_EVENT, event)
    return already


@cache
def _insert_once(dialect: str) -> Executable:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (the same words on SQLite and
    PostgreSQL), built once; the dialect modules load only when a fallback is first written."""
    from sqlalchemy.dialects import postgresql, sqlite

    if dialect == "postgresql":
        return postgresql.insert(_D).on_conflict_do_nothing().returning(_D.c.id)
    return sqlite.insert(_D).on_conflict_do_nothing().returning(_D.c.id)
