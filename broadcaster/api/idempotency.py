"""Idempotency-Key for the action POSTs (retract, cancel, retry), the client-idempotency guarantee (docs/reliability.md).

Submit and update get theirs from the service (the key is stored in the same transaction as the
announcement). The actions are idempotent in effect but not in their answer — a second retract
would report "0 cancelled" — so the first answer is stored with the key and a replay returns it
unchanged. Keys live in the ledger's one idempotency store (``Ledger.idempotency``), scoped by
token name, and are pruned by the scheduler (kept at least 24 h).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import InvalidRequest
from ..ledger import Ledger
from ..service import request_hash

MAX_KEY = 255


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY:
        raise InvalidRequest(f"Idempotency-Key must be 1-{MAX_KEY} characters", field="Idempotency-Key")
    return key


def stored(ledger: Ledger, scope: str, key: str, digest: str) -> dict[str, Any] | None:
    """The answer the first request with this key got, None for a new key."""
    found = ledger.idempotency.recall(scope, key, digest)
    return None if found is None else (found.response or {})


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
    if not ledger.idempotency.remember(scope, full_key, digest, target_id=target, response=response):
        # a concurrent request with the same key finished first: answer as it did
        previous = stored(ledger, scope, full_key, digest)
        if previous is not None:
            return previous, True
    return response, False
