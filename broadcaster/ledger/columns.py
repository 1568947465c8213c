"""The lengths of the ledger's VARCHAR(n) columns that intake must check before the database.

Read from the schema itself, so a check and its column cannot drift apart (SQLite would store
any length; PostgreSQL refuses the statement). ``broadcaster.limits`` applies them.
"""

from __future__ import annotations

from sqlalchemy import Column

from . import schema as t


def length_of(*columns: Column) -> int:
    """The shortest declared length among ``columns`` (a value stored in all of them must fit each)."""
    lengths = [getattr(c.type, "length", None) for c in columns]
    if any(n is None for n in lengths):
        raise TypeError(f"not a VARCHAR(n) column among {[c.name for c in columns]}")
    return min(n for n in lengths if n is not None)


#: an id in a path or a filter (announcements, updates, deliveries, subscribers, cursors)
ID = length_of(t.announcements.c.id, t.updates.c.id, t.deliveries.c.id, t.subscribers.c.id)
#: an announcement's or an update's status
STATUS = length_of(t.announcements.c.status, t.updates.c.status)
#: a channel name (deliveries are keyed by it)
CHANNEL = length_of(t.deliveries.c.channel)
#: a token name: it becomes the author, the audit actor and the idempotency scope, and the
#: target of the token's own audit rows
TOKEN_NAME = length_of(t.tokens.c.name, t.audit_log.c.target, t.audit_log.c.actor, t.announcements.c.author,
                       t.idempotency_keys.c.scope)
SUBSCRIBER_LIST = length_of(t.subscribers.c.list)
SUBSCRIBER_ADDRESS = length_of(t.subscribers.c.address, t.delivery_items.c.item)
IDEMPOTENCY_KEY = length_of(t.idempotency_keys.c.key)
