"""Client idempotency keys: every statement on the ``idempotency_keys`` table.

One store for every POST. A submit or an update remembers the id it created (in the same
transaction as the rows, so a replay can never see a key without its announcement); an action
(retract, cancel, retry, confirm) remembers the answer it gave, because a second retract would
otherwise answer "0 cancelled". A key is scoped by its token's name; the same key with a
different request is a conflict, never a silent replay. Keys are kept at least 24 hours (the
scheduler prunes older ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from ..errors import IdempotencyConflict
from . import schema as t
from .prepared import Prepared

if TYPE_CHECKING:
    from .repository import Ledger

_K = t.idempotency_keys
#: built once and run straight on the driver's cursor (every keyed POST writes one; see
#: prepared.py — a key already there is still an IntegrityError); a key without a response
#: leaves the column out, so it stays SQL NULL rather than JSON ``null``
_REMEMBER = Prepared(insert(_K))


@dataclass(frozen=True)
class Remembered:
    """What the first request with a key left behind."""

    target_id: str | None
    response: dict[str, Any] | None


class IdempotencyStore:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def recall(self, scope: str, key: str, request_hash: str) -> Remembered | None:
        """The first request's outcome, None if the key is new; ``IdempotencyConflict`` when the
        key was used with a different request."""
        with self.ledger.read() as conn:
            row = conn.execute(select(_K.c.request_hash, _K.c.target_id, _K.c.response).where(
                _K.c.scope == scope, _K.c.key == key)).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflict("this Idempotency-Key was already used with a different request; use a new key")
        return Remembered(target_id=row.target_id, response=row.response)

    def remember(self, scope: str, key: str, request_hash: str, *, target_id: str,
                 response: dict[str, Any] | None = None, conn: Connection | None = None) -> bool:
        """Store the key; False when a concurrent request stored it first (only without ``conn``:
        inside a caller's transaction the unique violation is the caller's to handle)."""
        row = {"scope": scope, "key": key, "request_hash": request_hash, "target_id": target_id[:40],
               "created_at": self.ledger.clock()}
        if response is not None:
            row["response"] = response
        if conn is not None:
            _REMEMBER.run(conn, row)
            return True
        try:
            with self.ledger.tx() as own:
                _REMEMBER.run(own, row)
        except IntegrityError:
            return False
        return True

    def prune(self, older_than: float) -> int:
        """Forget keys created before ``older_than`` (epoch seconds); how many went."""
        with self.ledger.tx() as conn:
            return conn.execute(delete(_K).where(_K.c.created_at < older_than)).rowcount
