"""Outcomes: every change of a delivery's state after its claim — what an attempt ended in
(:meth:`Outcomes.record`, many of a batch in one transaction) and an action from outside the
attempt (:meth:`Outcomes.force`: an operator, a retraction, a review) — each with its event in
the same transaction.

An outcome recorded for an owner is conditional on that owner still holding the lease: a worker
whose lease expired (the sweep has already made the row ``retrying``) must not overwrite a newer
outcome. Fallbacks named by an outcome become deliveries of the same message in the same
transaction, except on a channel that already has it (see ``ledger/new_deliveries.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select, update

from ..errors import NotFound
from ..models import Delivery, DeliveryState, Receipt
from . import schema as t
from .history import write_event
from .inputs import NewDelivery
from .new_deliveries import insert_fallbacks

if TYPE_CHECKING:
    from .repository import Ledger

S = DeliveryState
_D = t.deliveries
_SETTLE_LEASED = update(_D).where(_D.c.id == bindparam("b_id"), _D.c.lease_owner == bindparam("b_owner"),
                                  _D.c.state == str(S.SENDING))
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

    def force(self, delivery_id: str, to: DeliveryState, reason: str, *, actor: str,
              from_states: Iterable[DeliveryState], due_at: float | None = None, maybe_sent: bool | None = None,
              deadline_at: float | None = None, remote_url: str | None = None, note: str | None = None,
              set_note: bool = False) -> bool:
        """Operator actions (retry, cancel, retract-mark, confirm): move only from ``from_states``.
        It changes the one row in place: no operator action ever adds a delivery. With
        ``set_note`` the row's ``last_error`` becomes ``note`` (None clears it): a retraction says
        there whether the post is still visible."""
        now = self.ledger.clock()
        values: dict[str, Any] = {"state": str(to), "updated_at": now, "lease_owner": None, "lease_until": None}
        if due_at is not None:
            values.update(due_at=due_at, enqueued_at=None)
        if maybe_sent is not None:
            values["maybe_sent"] = maybe_sent
        if deadline_at is not None:
            values["deadline_at"] = deadline_at
        if remote_url is not None:
            values["remote_url"] = remote_url
        if set_note:
            values["last_error"] = note
        if to in (S.CANCELLED, S.RETRACTED, S.DELIVERED):
            values["settled_at"] = now
        elif to in (S.PENDING, S.RETRYING):
            values["settled_at"] = None
        with self.ledger.tx() as conn:
            row = conn.execute(select(_D.c.state, _D.c.attempts).where(_D.c.id == delivery_id)).first()
            if row is None:
                raise NotFound(f"no delivery {delivery_id!r}")
            res = conn.execute(update(_D).where(_D.c.id == delivery_id, _D.c.state.in_([str(s) for s in from_states]))
                               .values(**values))
            if res.rowcount != 1:
                return False
            write_event(conn, delivery_id, row.state, str(to), row.attempts, f"{reason} (by {actor})", at=now)
        return True


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
        res = conn.execute(_SETTLE_LEASED, {"b_id": delivery.id, "b_owner": o.owner, **values})
    else:
        res = conn.execute(update(_D).where(_D.c.id == delivery.id).values(**values))
    if res.rowcount != 1:
        return False
    attempt = delivery.attempts + (1 if o.attempted else 0)
    if o.fallbacks:
        already = insert_fallbacks(conn, delivery.announcement_id, delivery.update_id, o.fallbacks, now)
        reason += "".join(f"; fallback {ch} already has it ({x.id}, {x.state}): not sent again"
                          for ch, x in already.items())
    write_event(conn, delivery.id, str(delivery.state), str(to), attempt, reason, at=now, response=o.response)
    return True
