"""Idempotency-Key for the action POSTs (retract, cancel, retry), PRODUCT.md guarantee 3.

Submit and update get theirs from the service (the key is stored in the same transaction as the
announcement). The actions are idempotent in effect but not in their answer — a second retract
would report "0 cancelled" — so the first answer is stored with the key and a replay returns it
unchanged. Keys live in the ledger's ``idempotency_keys`` table, scoped by token name, and are
pruned by the ledger's retention (kept at least 24 h).
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ..errors import IdempotencyConflict
from ..ledger import Ledger
from ..ledger import schema as t
from ..service import request_hash

MAX_KEY = 255


def check_key(key: str | None) -> str | None:
    from ..errors import InvalidRequest

    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY:
        raise InvalidRequest(f"Idempotency-Key must be 1-{MAX_KEY} characters", field="Idempotency-Key")
    return key


def stored(ledger: Ledger, scope: str, key: str, digest: str) -> dict | None:
    with ledger.read() as conn:
        row = conn.execute(select(t.idempotency_keys.c.request_hash, t.idempotency_keys.c.response).where(
            t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key)).first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request; use a new key")
    return row.response or {}


def once(ledger: Ledger, *, scope: str, key: str | None, action: str, target: str, request: dict[str, Any],
         run: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Run ``run`` once per (scope, key); returns ``(response, replayed)``."""
    if key is None:
        return run(), False
    full_key = f"{action}:{target}:{key}"[:MAX_KEY]
    digest = request_hash({"action": action, "target": target, **request})
    previous = stored(ledger, scope, full_key, digest)
    if previous is not None:
        return previous, True
    response = run()
    try:
        with ledger.tx() as conn:
            conn.execute(insert(t.idempotency_keys).values(scope=scope, key=full_key, request_hash=digest,
                                                           target_id=target[:40], response=response,
                                                           created_at=ledger.clock()))
    except IntegrityError:
        # a concurrent request with the same key finished first: answer as it did
        previous = stored(ledger, scope, full_key, digest)
        if previous is not None:
            return previous, True
    return response, False
