"""Outcomes: what an attempt ended in, recorded after its claim (:meth:`Outcomes.record`: one,
or every outcome of a drain's batch in one transaction), each with its event in the same
transaction. Changes made from outside an attempt (an operator, a retraction) are
``ledger/actions.py``'s.

An outcome recorded for an owner is conditional on that owner still holding the lease: a worker
whose lease expired (the sweep has already made the row ``retrying``) must not overwrite a newer
outcome. Fallbacks named by an outcome become deliveries of the same message in the same
transaction, except on a channel that already has it (see ``ledger/new_deliveries.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, update

from ..models import Delivery, DeliveryState, Receipt
from . import schema as t
from .claims import start
from .history import write_event
from .inputs import NewDelivery
from .new_deliveries import insert_fallbacks
from .prepared import Prepared

if TYPE_CHECKING:
    from .repository import Ledger

S = DeliveryState
_D = t.deliveries
_SETTLE_LEASED = Prepared(update(_D).where(_D.c.id == bindparam("b_id"), _D.c.lease_owner == bindparam("b_owner"),
                                           _D.c.state == str(S.SENDING)))
_SETTLED_BY_OUTCOME = (S.DELIVERED, S.FAILED, S.FALLEN_BACK, S.UNKNOWN, S.CANCELLED, S.RETRACTED)


@dataclass(frozen=True)
class Outcome:
    """What an attempt ended in, beyond the new state and its reason."""

    #: only while this worker holds the lease (None: unconditionally)
    owner: str | None = None
    #: an attempt was made (counts towards ``attempts``)
    attempted: bool = False
    #: when to try again (clears the enqueued mark, so the sweep wakes a worker then)
    due_at: float | None = None
    receipt: Receipt | None = None
    #: the provider's answer, for the event
    response: str | None = None
    error: str | None = None
    maybe_sent: bool | None = None
    fallbacks: Sequence[NewDelivery] = ()


class Outcomes:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def record(self, changes: Sequence[tuple[Delivery, DeliveryState, str, Outcome]]) -> list[bool]:
        """Record each ``(delivery, to, reason, outcome)`` in ONE transaction; per change,
        whether it was recorded (False: the row moved on, or the lease is someone else's)."""
        if not changes:
            return []
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            return [_record(conn, d, to, reason, now, o) for d, to, reason, o in changes]

    def record_then_start(self, changes: Sequence[tuple[Delivery, DeliveryState, str, Outcome]], delivery_id: str,
                          owner: str) -> tuple[bool, list[bool]]:
        """Outcomes of a batch recorded so far, then the start of the next send of the batch
        (``claims.start``), in ONE transaction: whether the send may start (``owner`` still holds
        its lease), and per outcome whether it was recorded. So the write a drain makes before
        each send also settles the sends before it: after a kill, only the send in flight is
        left "maybe sent"."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            recorded = [_record(conn, d, to, reason, now, o) for d, to, reason, o in changes]
            return start(conn, delivery_id, owner, now), recorded


def _record(conn: Connection, delivery: Delivery, to: DeliveryState, reason: str, now: float, o: Outcome) -> bool:
    values: dict[str, Any] = {"state": str(to), "updated_at": now, "lease_owner": None, "lease_until": None}
    if o.attempted:
        # under our lease nobody else changes the row, so the count is known here
        values["attempts"] = delivery.attempts + 1 if o.owner is not None else _D.c.attempts + 1
    if o.due_at is not None:
        values["due_at"] = o.due_at
        values["enqueued_at"] = None
    if o.receipt is not None:
        values.update(receipt=o.receipt.to_dict(), remote_id=o.receipt.remote_id, remote_url=o.receipt.url)
    if o.error is not None:
        values["last_error"] = o.error[:2000]
    if o.maybe_sent is not None:
        values["maybe_sent"] = o.maybe_sent
    if to in _SETTLED_BY_OUTCOME:
        values["settled_at"] = now
    if o.owner is not None:
        hit = _SETTLE_LEASED.run(conn, {"b_id": delivery.id, "b_owner": o.owner, **values})
    else:
        hit = conn.execute(update(_D).where(_D.c.id == delivery.id).values(**values)).rowcount
    if hit != 1:
        return False
    attempt = delivery.attempts + (1 if o.attempted else 0)
    if o.fallbacks:
        already = insert_fallbacks(conn, delivery.announcement_id, delivery.update_id, o.fallbacks, now)
        reason += "".join(f"; fallback {ch} already has it ({x.id}, {x.state}): not sent again"
                          for ch, x in already.items())
    write_event(conn, delivery.id, str(delivery.state), str(to), attempt, reason, at=now, response=o.response)
    return True
