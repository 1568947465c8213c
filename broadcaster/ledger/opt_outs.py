"""SMS opt-outs in the ledger: numbers that said STOP, never to be messaged again.

A carrier or Twilio refuses a message to a number that replied STOP (Twilio error 21610). The
SMS channel records that number here the moment it sees the refusal, and every later delivery
on any SMS channel skips it before sending — so a STOP outlives the delivery, the process and
a restart. The record is kept until an operator removes it (after the person texted START).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from . import schema as t
from .repository import Ledger

_O = t.sms_opt_outs


class OptOutStore:
    """Typed access to ``sms_opt_outs`` (cheap to make: holds no state besides the ledger)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def opted_out(self, numbers: Iterable[str]) -> set[str]:
        """Which of ``numbers`` have opted out."""
        wanted = sorted(set(numbers))
        if not wanted:
            return set()
        with self.ledger.read() as conn:
            return set(conn.execute(select(_O.c.number).where(_O.c.number.in_(wanted))).scalars())

    def opt_out(self, number: str, *, channel: str, reason: str) -> None:
        """Record an opt-out (durably, before returning); a number already recorded stays as it was."""
        try:
            with self.ledger.tx() as conn:
                conn.execute(insert(_O).values(number=number, channel=channel, reason=reason[:500],
                                               at=self.ledger.clock()))
        except IntegrityError:
            pass  # recorded already (perhaps by another worker at the same moment)

    def remove(self, number: str) -> bool:
        """Forget an opt-out (the person opted back in); True if there was one."""
        with self.ledger.tx() as conn:
            return bool(conn.execute(delete(_O).where(_O.c.number == number)).rowcount)
