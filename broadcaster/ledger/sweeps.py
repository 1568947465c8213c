"""The sweep's reads and writes (the scheduler's safety net): dead workers' leases, scheduled
work that became due, and due deliveries the broker has not been told about. Each sweep step is
one transaction, and every state it changes gets its event there."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select, update

from ..models import CLAIMABLE, DeliveryState as S
from . import schema as t
from .history import write_event

if TYPE_CHECKING:
    from .repository import Ledger

_D, _A = t.deliveries, t.announcements
_CLAIMABLE_NAMES = [str(s) for s in CLAIMABLE]


class Sweeps:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def take_due(self, requeue_after: float, limit: int = 500) -> list[tuple[str, str, float]]:
        """Claimable deliveries that are due and not recently enqueued; marks them enqueued.
        Returns ``(delivery_id, channel, due_at)``."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            rows = conn.execute(select(_D.c.id, _D.c.channel, _D.c.due_at).where(
                _D.c.state.in_(_CLAIMABLE_NAMES),
                or_(_D.c.due_at.is_(None), _D.c.due_at <= now),
                or_(_D.c.enqueued_at.is_(None), _D.c.enqueued_at < now - requeue_after),
            ).order_by(_D.c.due_at).limit(limit)).all()
            if rows:
                conn.execute(update(_D).where(_D.c.id.in_([r.id for r in rows])).values(enqueued_at=now))
        return [(r.id, r.channel, r.due_at or now) for r in rows]

    def forget_enqueued(self) -> int:
        """The broker lost its queues (e.g. Redis restarted empty): every waiting delivery counts as
        never enqueued, so the next sweep sends it again at once."""
        with self.ledger.tx() as conn:
            return conn.execute(update(_D).where(_D.c.state.in_(_CLAIMABLE_NAMES), _D.c.enqueued_at.is_not(None))
                                .values(enqueued_at=None)).rowcount

    def expire_leases(self) -> list[str]:
        """sending past its lease: the worker is gone. A delivery whose send had started (a single
        claim, or a batch-claimed one past its start mark) → ``retrying`` with ``maybe_sent`` and
        one more attempt counted: its outcome will be checked by its channel's rule. One its
        batch claim never started (``unstarted_by`` still names the lease's owner) → due again as
        it was before the claim (``pending``, or ``retrying`` after earlier attempts), attempts
        and ``maybe_sent`` unchanged: nothing of it was sent."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            rows = conn.execute(select(_D.c.id, _D.c.attempts, _D.c.lease_owner, _D.c.unstarted_by).where(
                _D.c.state == str(S.SENDING), _D.c.lease_until < now)).all()
            expired = []
            lapsed = (_D.c.state == str(S.SENDING), _D.c.lease_until < now)
            freed = {"lease_owner": None, "lease_until": None, "unstarted_by": None, "due_at": now,
                     "enqueued_at": None, "updated_at": now}
            for r in rows:
                if r.unstarted_by is not None and r.unstarted_by == r.lease_owner:
                    back = S.RETRYING if r.attempts else S.PENDING
                    # conditional on the mark too: a start committed since the read makes it "maybe sent"
                    res = conn.execute(update(_D).where(_D.c.id == r.id, *lapsed,
                                                        _D.c.unstarted_by == _D.c.lease_owner)
                                       .values(state=str(back), **freed))
                    if res.rowcount == 1:
                        write_event(conn, r.id, str(S.SENDING), str(back), r.attempts,
                                    f"lease of {r.lease_owner} expired before its send started: "
                                    "never attempted, due again", at=now)
                        expired.append(r.id)
                        continue
                res = conn.execute(update(_D).where(_D.c.id == r.id, *lapsed).values(
                    state=str(S.RETRYING), maybe_sent=True, attempts=_D.c.attempts + 1, **freed))
                if res.rowcount == 1:
                    write_event(conn, r.id, str(S.SENDING), str(S.RETRYING), r.attempts + 1,
                                f"lease of {r.lease_owner} expired: worker lost mid-send; outcome will be checked",
                                at=now)
                    expired.append(r.id)
        return expired

    def promote_scheduled(self, *, hold_kinds: Iterable[str] = (), limit: int = 500) -> list[str]:
        """scheduled and due → pending, except kinds held while an incident is open."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            q = select(_D.c.id, _D.c.attempts).where(_D.c.state == str(S.SCHEDULED), _D.c.due_at <= now).limit(limit)
            hold = list(hold_kinds)
            if hold:
                q = q.where(_D.c.announcement_id.in_(select(_A.c.id).where(_A.c.kind.not_in(hold))))
            promoted = []
            for r in conn.execute(q).all():
                res = conn.execute(update(_D).where(_D.c.id == r.id, _D.c.state == str(S.SCHEDULED))
                                   .values(state=str(S.PENDING), updated_at=now, enqueued_at=None))
                if res.rowcount == 1:  # another sweep (or a cancel) may have moved it since the read
                    write_event(conn, r.id, str(S.SCHEDULED), str(S.PENDING), r.attempts, "publish time reached",
                                at=now)
                    promoted.append(r.id)
        return promoted

    def open_incidents(self) -> int:
        """Incidents neither resolved nor retracted (quiet kinds wait while there is one)."""
        with self.ledger.read() as conn:
            return conn.execute(select(func.count()).select_from(_A).where(
                _A.c.kind == "incident", _A.c.resolved_at.is_(None), _A.c.retracted_at.is_(None),
                _A.c.status != "resolved")).scalar() or 0
