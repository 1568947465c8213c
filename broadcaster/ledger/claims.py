"""Claims: a due delivery becomes ``sending``, leased to one worker — by conditional UPDATEs,
so two workers can never both own a delivery.

A single claim (:meth:`Claims.claim_with_announcement`, one attempt) is one lock-free read —
the row's state and its announcement; duplicate and late tasks stop here — then ``UPDATE …
WHERE id = ? AND state = <the state just read> AND due … RETURNING *`` and its event, in one
short transaction. A batch (:meth:`Claims.claim_batch`, a drain) claims up to ``n`` due
deliveries of one channel at once, each with its own lease and its own claim event; everything
after the claim is per delivery, exactly as for a single claim.

A single claim is also the start of its one attempt: the send follows at once. A batch claim
only leases: each row carries ``unstarted_by = <owner>`` until :func:`start` clears it in the
write just before that delivery's remote call. So a worker killed mid-batch leaves the one
delivery it was sending (and any sent but not yet recorded) "maybe sent", while the ones it
never started still carry the mark, and the sweep gives them back as never attempted
(``sweeps.py``). The mark counts only while it names the lease's owner: a claim by a version
that does not know it changes the owner and so reads as "may have been sent", the cautious way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, bindparam, or_, select, text, update

from ..models import CLAIMABLE, Announcement, Delivery, DeliveryState as S
from . import schema as t
from .history import INSERT_EVENT, write_event
from .prepared import Prepared
from .rows import announcement_of, delivery_of

if TYPE_CHECKING:
    from .repository import Ledger

# The worker's hot path runs these for every delivery: built once, with the values passed at
# execution (building a statement costs more Python than running it on SQLite).
_D, _A = t.deliveries, t.announcements
#: a claim counts as due this much early: a wake-up timed for ``due_at`` must not just miss it
_EARLY = 0.05
_PEEK = select(_D.c.state, _D.c.due_at, _D.c.announcement_id).where(_D.c.id == bindparam("b_id"))
_ANNOUNCEMENT = select(_A).where(_A.c.id == bindparam("b_id"))
_DUE = or_(_D.c.due_at.is_(None), _D.c.due_at <= bindparam("b_due"))
_CLAIM = update(_D).where(_D.c.id == bindparam("b_id"), _D.c.state == bindparam("b_state"), _DUE).returning(*_D.c)
# a batch: the due rows of one channel, oldest first
_CLAIMABLE_NAMES = [str(s) for s in CLAIMABLE]
# the states as literals, as the partial index ix_deliveries_claimable names them: the claim
# then reads the batch it takes in index order, not the channel's whole backlog and a sort
_DUE_OF_CHANNEL = select(_D.c.id, _D.c.state, _D.c.announcement_id).where(
    _D.c.channel == bindparam("b_channel"), text("deliveries." + t.CLAIMABLE_SQL), _DUE,
).order_by(_D.c.due_at, _D.c.id).limit(bindparam("b_limit"))
_CLAIM_IDS = update(_D).where(_D.c.id.in_(bindparam("b_ids", expanding=True)), _D.c.state == bindparam("b_state"),
                              _DUE).returning(*_D.c)
_PICKED = _DUE_OF_CHANNEL.with_for_update(skip_locked=True).cte("picked")
_CLAIM_BATCH_PG = (update(_D).where(_D.c.id == _PICKED.c.id, _D.c.state.in_(_CLAIMABLE_NAMES))
                   .returning(*_D.c, _PICKED.c.state.label("b_prev_state")))
_ANNOUNCEMENTS = select(_A).where(_A.c.id.in_(bindparam("b_ids", expanding=True)))
# the start of a batch-claimed delivery's send: only by the lease's owner, before it expires
_START = Prepared(update(_D).where(_D.c.id == bindparam("b_id"), _D.c.lease_owner == bindparam("b_owner"),
                                   _D.c.state == str(S.SENDING), _D.c.lease_until >= bindparam("b_now")
                                   ).values(unstarted_by=None))


def start(conn: Connection, delivery_id: str, owner: str, now: float) -> bool:
    """Mark the send of ``delivery_id`` as started (clears ``unstarted_by``), on the caller's
    transaction: only while ``owner`` holds an unexpired lease on it. False: the lease is lost
    or over — the delivery must not be sent by this worker."""
    return _START.run(conn, {"b_id": delivery_id, "b_owner": owner, "b_now": now}) == 1


class Claims:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def claim_with_announcement(self, delivery_id: str, owner: str,
                                lease: float) -> tuple[Delivery, Announcement] | None:
        """pending/retrying and due → sending, leased to ``owner``, with the announcement as read
        just before the claim. None if someone else has it, it is settled, or it is not yet due.

        One read (the row's state, and its announcement, without the write lock: duplicate and
        late tasks stop here) and one write of two statements: a conditional ``UPDATE …
        RETURNING`` that only succeeds if the row is still in the state that was read, and its
        event."""
        now = self.ledger.clock()
        with self.ledger.read() as conn:
            peek = conn.execute(_PEEK, {"b_id": delivery_id}).first()
            if peek is None or S(peek.state) not in CLAIMABLE or (peek.due_at is not None
                                                                 and peek.due_at > now + _EARLY):
                return None
            ann_row = conn.execute(_ANNOUNCEMENT, {"b_id": peek.announcement_id}).first()
        if ann_row is None:  # the foreign key forbids it; a claim without its announcement cannot proceed
            return None
        with self.ledger.tx() as conn:
            fresh = conn.execute(_CLAIM, {"b_id": delivery_id, "b_state": peek.state, "b_due": now + _EARLY,
                                          "state": str(S.SENDING), "lease_owner": owner, "lease_until": now + lease,
                                          "unstarted_by": None, "updated_at": now}).first()
            if fresh is None:
                return None
            write_event(conn, delivery_id, peek.state, str(S.SENDING), fresh.attempts + 1, f"claimed by {owner}",
                        at=now)
        return delivery_of(fresh._mapping), announcement_of(ann_row._mapping)

    def claim_batch(self, channel: str, owner: str, lease: float, limit: int, *,
                    start_first: bool = False) -> list[tuple[Delivery, Announcement]]:
        """Claim up to ``limit`` due deliveries of ``channel`` for ``owner`` at once, each with its
        own lease (``sending``, ``lease_owner``, ``lease_until``) and its own claim event, and
        return them with their announcements — oldest due first. Each is leased, not started:
        ``unstarted_by`` names ``owner`` until :func:`start` (see the module docstring).

        PostgreSQL: ONE conditional statement, ``WITH picked AS (SELECT … FOR UPDATE SKIP
        LOCKED LIMIT n) UPDATE … FROM picked … RETURNING``: rows another worker is claiming
        are skipped, never waited for nor taken twice. SQLite: a lock-free read of the due rows,
        then, under its one writer (``BEGIN IMMEDIATE``), ``UPDATE … WHERE id IN (…) AND state =
        <the state read> AND due … RETURNING`` — a row another worker took meanwhile is simply
        not returned. Either way a row is claimed by one owner only. ``start_first``: in the same
        transaction the first claimed (oldest due: the first sent) is started, as a single
        claim is."""
        if limit < 1:
            return []
        now = self.ledger.clock()
        params: dict[str, Any] = {"b_channel": channel, "b_due": now + _EARLY, "b_limit": limit,
                                  "state": str(S.SENDING), "lease_owner": owner, "lease_until": now + lease,
                                  "unstarted_by": owner, "updated_at": now}
        if self.ledger.engine.dialect.name == "postgresql":
            with self.ledger.tx() as conn:
                picked = [(r, r.b_prev_state) for r in conn.execute(_CLAIM_BATCH_PG, params).all()]
                return _claimed(conn, picked, owner, now, start_first=start_first)
        # SQLite: as claim_with_announcement, one lock-free read (the due rows, their states and
        # announcements: a drain that finds nothing takes no write lock), then per state read one
        # conditional UPDATE … WHERE id IN (…) AND state = <read> AND due, under the one writer
        with self.ledger.read() as conn:
            due = conn.execute(_DUE_OF_CHANNEL, params).all()
            if not due:
                return []
            anns = _announcements_of(conn, {r.announcement_id for r in due})
        with self.ledger.tx() as conn:
            rows: list[tuple[Row[Any], str]] = []
            for state in sorted({r.state for r in due}):
                ids = [r.id for r in due if r.state == state]
                rows += [(r, state) for r in conn.execute(_CLAIM_IDS, {**params, "b_ids": ids, "b_state": state})]
            return _claimed(conn, rows, owner, now, anns, start_first=start_first)


def _announcements_of(conn: Connection, ids: Iterable[str]) -> dict[str, Announcement]:
    return {a.id: announcement_of(a._mapping) for a in conn.execute(_ANNOUNCEMENTS, {"b_ids": list(ids)}).all()}


def _claimed(conn: Connection, rows: list[tuple[Row[Any], str]], owner: str, now: float,
             anns: dict[str, Announcement] | None = None, *,
             start_first: bool = False) -> list[tuple[Delivery, Announcement]]:
    """The claim events of a batch (one executemany) and the claimed rows with their
    announcements, oldest due first; with ``start_first`` the first of them started."""
    if not rows:
        return []
    conn.execute(INSERT_EVENT, [
        {"delivery_id": r.id, "at": now, "from_state": prev, "to_state": str(S.SENDING),
         "attempt": r.attempts + 1, "reason": f"claimed by {owner} (batch of {len(rows)})", "response": None}
        for r, prev in rows])
    if anns is None:
        anns = _announcements_of(conn, {r.announcement_id for r, _ in rows})
    out = [(delivery_of(r._mapping), anns[r.announcement_id]) for r, _ in rows]
    out.sort(key=lambda x: (x[0].due_at or 0.0, x[0].id))
    if start_first:
        start(conn, out[0][0].id, owner, now)
    return out
