"""Subscribers in the ledger: every statement that reads or writes the ``subscribers`` table.

The rules (who may change what, which state follows which) live in ``broadcaster.subscribers``;
this module only makes each change one conditional statement in one transaction, so two API
processes answering the same address at once cannot both win.

A pending subscription carries ``requested_at``, the moment its current request began. The
confirmation link signs it, so restarting a subscription (after an unsubscribe, or once every
link of a stale request has expired) makes every older link worthless. ``confirm_sent_at`` is
when its last confirmation mail was handed to the mailer: at most one per address per interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import NotFound
from . import schema as t
from .repository import Ledger, new_id

_S = t.subscribers


@dataclass(frozen=True)
class Subscriber:
    id: str
    list: str
    address: str
    name: str | None
    components: tuple[str, ...]
    state: str
    marketing: bool
    created_at: float
    confirmed_at: float | None
    unsubscribed_at: float | None
    requested_at: float | None = None
    confirm_sent_at: float | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> Subscriber:
        m = row._mapping
        return cls(id=m["id"], list=m["list"], address=m["address"], name=m["name"],
                   components=tuple(m["components"] or ()), state=m["state"], marketing=bool(m["marketing"]),
                   created_at=m["created_at"], confirmed_at=m["confirmed_at"], unsubscribed_at=m["unsubscribed_at"],
                   requested_at=m["requested_at"], confirm_sent_at=m["confirm_sent_at"])

    def to_dict(self) -> dict[str, Any]:
        """The public shape (admin listing, exports): the bookkeeping of the opt-in stays inside."""
        return {"id": self.id, "list": self.list, "address": self.address, "name": self.name,
                "components": list(self.components), "state": self.state, "marketing": self.marketing,
                "created_at": self.created_at, "confirmed_at": self.confirmed_at,
                "unsubscribed_at": self.unsubscribed_at}


@dataclass(frozen=True)
class Request:
    """What someone asked for on the public form or the API (already validated)."""

    list: str
    address: str
    name: str | None
    components: tuple[str, ...]
    marketing: bool


@dataclass(frozen=True)
class AudienceRow:
    id: str
    list: str
    address: str
    components: tuple[str, ...]


@dataclass(frozen=True)
class Imported:
    """A subscriber as an import file states it: every choice and date (an address already on the
    list takes all of them)."""

    list: str
    address: str
    name: str | None
    components: tuple[str, ...]
    state: str
    marketing: bool
    created_at: float
    confirmed_at: float | None
    unsubscribed_at: float | None


#: states in which a request starts over (the old choices were ended by their owner or a bounce)
RESTARTABLE = ("unsubscribed", "opted_out", "bounced")


class SubscriberStore:
    """Typed access to the ``subscribers`` table of one ledger (cheap to make: holds no state)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    # ------------------------------------------------------------ reading

    def get(self, subscriber_id: str) -> Subscriber:
        with self.ledger.read() as conn:
            row = conn.execute(select(_S).where(_S.c.id == subscriber_id)).first()
        if row is None:
            raise NotFound("no such subscriber")
        return Subscriber.from_row(row)

    def find(self, list_name: str, address: str) -> Subscriber | None:
        with self.ledger.read() as conn:
            row = conn.execute(select(_S).where(_S.c.list == list_name, _S.c.address == address)).first()
        return Subscriber.from_row(row) if row else None

    def page(self, *, list_name: str | None = None, state: str | None = None, after: str | None = None,
             limit: int = 100) -> list[Subscriber]:
        q = select(_S).order_by(_S.c.id).limit(limit)
        if list_name:
            q = q.where(_S.c.list == list_name)
        if state:
            q = q.where(_S.c.state == state)
        if after:
            q = q.where(_S.c.id > after)
        with self.ledger.read() as conn:
            return [Subscriber.from_row(r) for r in conn.execute(q)]

    def by_address(self, *, list_name: str | None = None, after: tuple[str, str] | None = None,
                   limit: int = 500) -> list[Subscriber]:
        """Ordered by list, then address (the CSV export's order); ``after`` is the last
        ``(list, address)`` of the previous page."""
        q = select(_S).order_by(_S.c.list, _S.c.address).limit(limit)
        if list_name is not None:
            q = q.where(_S.c.list == list_name)
        if after is not None:
            q = q.where((_S.c.list > after[0]) | ((_S.c.list == after[0]) & (_S.c.address > after[1])))
        with self.ledger.read() as conn:
            return [Subscriber.from_row(r) for r in conn.execute(q)]

    def audience(self, lists: Sequence[str], states: Sequence[str], *, marketing_only: bool) -> Iterator[AudienceRow]:
        """Rows of ``lists`` in ``states`` (with marketing consent if asked), by list then id."""
        q = select(_S.c.id, _S.c.list, _S.c.address, _S.c.components).where(
            _S.c.list.in_(list(lists)), _S.c.state.in_(list(states))).order_by(_S.c.list, _S.c.id)
        if marketing_only:
            q = q.where(_S.c.marketing.is_(True))
        with self.ledger.read() as conn:
            rows = conn.execute(q).all()
        for r in rows:
            yield AudienceRow(r.id, r.list, r.address, tuple(r.components or ()))

    def refused_items(self, channels: Sequence[str], after: float) -> list[tuple[str, str | None, float]]:
        """``(address, detail, at)`` of recipients an email channel saw refused for good since ``after``."""
        di, d = t.delivery_items, t.deliveries
        with self.ledger.read() as conn:
            rows = conn.execute(select(di.c.item, di.c.detail, di.c.at).where(
                di.c.state == "refused", di.c.at > after,
                di.c.delivery_id.in_(select(d.c.id).where(d.c.channel.in_(list(channels))))).order_by(di.c.at)).all()
        return [(r.item, r.detail, r.at) for r in rows]

    # ------------------------------------------------------------ writing

    def add(self, req: Request, *, state: str, actor: str) -> Subscriber:
        """An administrator's add (or import): creates the row or sets it to ``state`` with these choices."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            row = conn.execute(select(_S).where(_S.c.list == req.list, _S.c.address == req.address)).first()
            values = {"state": state, "components": list(req.components), "marketing": req.marketing,
                      "confirmed_at": now if state == "confirmed" else None, "unsubscribed_at": None,
                      "requested_at": now if state == "pending" else None}
            if row is None:
                sid = new_id("sub")
                conn.execute(insert(_S).values(id=sid, list=req.list, address=req.address, name=req.name,
                                               created_at=now, confirm_sent_at=None, **values))
                self.ledger.audit(actor, "subscriber.add", sid, {"list": req.list, "state": state}, conn)
            else:
                sid = row.id
                conn.execute(update(_S).where(_S.c.id == sid).values(
                    name=req.name if req.name is not None else row.name, **values))
                self.ledger.audit(actor, "subscriber.renew", sid, {"list": req.list, "from": row.state,
                                                                   "state": state}, conn)
            return Subscriber.from_row(conn.execute(select(_S).where(_S.c.id == sid)).one())

    def import_rows(self, rows: Sequence[Imported]) -> tuple[int, int]:
        """Store imported rows in ONE transaction: a new address is inserted, one already on its
        list takes every field of the row. Returns ``(inserted, updated)``."""
        inserted = updated = 0
        with self.ledger.tx() as conn:
            for lst in dict.fromkeys(r.list for r in rows):
                mine = [r for r in rows if r.list == lst]
                existing = {a: i for a, i in conn.execute(select(_S.c.address, _S.c.id).where(
                    _S.c.list == lst, _S.c.address.in_([r.address for r in mine])))}
                new = [_imported_values(r) | {"id": new_id("sub")} for r in mine if r.address not in existing]
                if new:
                    conn.execute(insert(_S), new)
                    inserted += len(new)
                for r in mine:
                    if r.address in existing:
                        conn.execute(update(_S).where(_S.c.id == existing[r.address]).values(**_imported_values(r)))
                        updated += 1
        return inserted, updated

    def request(self, req: Request, *, stale_before: float, actor: str = "public") -> Subscriber:
        """The public subscribe: a new address becomes pending with these choices; a pending one
        keeps its own choices (only its link may change them) unless every link it was sent has
        expired (its last mail or its request is older than ``stale_before``); an ended one
        (unsubscribed, opted out, bounced) starts over; a confirmed one is left as it is."""
        try:
            return self._request(req, stale_before, actor)
        except IntegrityError:  # the same new address at the same moment in another process: it won
            return self._request(req, stale_before, actor)

    def _request(self, req: Request, stale_before: float, actor: str) -> Subscriber:
        now = self.ledger.clock()
        pending = {"state": "pending", "components": list(req.components), "marketing": req.marketing,
                   "name": req.name, "confirmed_at": None, "unsubscribed_at": None, "requested_at": now,
                   "confirm_sent_at": None}
        with self.ledger.tx() as conn:
            row = conn.execute(select(_S).where(_S.c.list == req.list, _S.c.address == req.address)
                               .with_for_update()).first()
            if row is None:
                sid = new_id("sub")
                conn.execute(insert(_S).values(id=sid, list=req.list, address=req.address, created_at=now, **pending))
                self.ledger.audit(actor, "subscriber.request", sid, {"list": req.list}, conn)
            else:
                sid = row.id
                last = max(row.requested_at or row.created_at, row.confirm_sent_at or 0.0)
                if row.state in RESTARTABLE or (row.state == "pending" and last < stale_before):
                    conn.execute(update(_S).where(_S.c.id == sid, _S.c.state == row.state).values(**pending))
                    self.ledger.audit(actor, "subscriber.request", sid, {"list": req.list, "from": row.state}, conn)
            return Subscriber.from_row(conn.execute(select(_S).where(_S.c.id == sid)).one())

    def claim_confirmation_mail(self, subscriber_id: str, address: str, *, not_since: float) -> bool:
        """Note that a confirmation mail goes out now, unless one went to ``address`` (on any
        list) after ``not_since``. True when the caller may send it."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            # lock every row of the address (on PostgreSQL; SQLite has one writer anyway), so two
            # requests for it — on one list or several — take turns, and the second sees the first's mark
            sent = conn.execute(select(_S.c.confirm_sent_at).where(_S.c.address == address)
                                .with_for_update()).scalars().all()
            if any(at is not None and at > not_since for at in sent):
                return False
            res = conn.execute(update(_S).where(
                _S.c.id == subscriber_id, _S.c.state == "pending",
                or_(_S.c.confirm_sent_at.is_(None), _S.c.confirm_sent_at <= not_since)).values(confirm_sent_at=now))
            return res.rowcount == 1

    def release_confirmation_mail(self, subscriber_id: str, sent_at: float) -> None:
        """The mail noted at ``sent_at`` did not go out: let the next request try again."""
        with self.ledger.tx() as conn:
            conn.execute(update(_S).where(_S.c.id == subscriber_id, _S.c.confirm_sent_at == sent_at)
                         .values(confirm_sent_at=None))

    def confirm(self, subscriber_id: str, requested_at: float, marketing: bool | None) -> Subscriber | None:
        """pending → confirmed, only for the request the link was made for; ``marketing`` (when
        given) is the owner's own answer on the confirmation page. None if there is no such row."""
        now = self.ledger.clock()
        values: dict[str, Any] = {"state": "confirmed", "confirmed_at": now}
        if marketing is not None:
            values["marketing"] = marketing
        with self.ledger.tx() as conn:
            # rows imported from CSV have no requested_at: their links sign created_at
            this_request = or_(_S.c.requested_at == requested_at,
                               and_(_S.c.requested_at.is_(None), _S.c.created_at == requested_at))
            res = conn.execute(update(_S).where(_S.c.id == subscriber_id, _S.c.state == "pending", this_request)
                               .values(**values))
            if res.rowcount == 1:
                self.ledger.audit("public", "subscriber.confirm", subscriber_id,
                                  {} if marketing is None else {"marketing": marketing}, conn)
            row = conn.execute(select(_S).where(_S.c.id == subscriber_id)).first()
        return Subscriber.from_row(row) if row else None

    def withdraw_marketing(self, subscriber_id: str, *, actor: str, reason: str) -> Subscriber | None:
        """The consent to promotions ends; every other notice keeps coming."""
        with self.ledger.tx() as conn:
            res = conn.execute(update(_S).where(_S.c.id == subscriber_id, _S.c.marketing.is_(True))
                               .values(marketing=False))
            if res.rowcount == 1:
                self.ledger.audit(actor, "subscriber.marketing_withdrawn", subscriber_id, {"reason": reason}, conn)
            row = conn.execute(select(_S).where(_S.c.id == subscriber_id)).first()
        return Subscriber.from_row(row) if row else None

    def set_state(self, subscriber_id: str, state: str, *, keep: Iterable[str], actor: str,
                  reason: str = "") -> Subscriber | None:
        """Move to ``state`` unless the row is in one of ``keep`` (a final state is not undone)."""
        now = self.ledger.clock()
        values: dict[str, Any] = {"state": state}
        if state in ("unsubscribed", "opted_out"):
            values["unsubscribed_at"] = now
        if state == "opted_out":
            values["marketing"] = False
        if state == "confirmed":
            values.update(confirmed_at=now, unsubscribed_at=None)
        with self.ledger.tx() as conn:
            res = conn.execute(update(_S).where(_S.c.id == subscriber_id, _S.c.state.not_in(list(keep)))
                               .values(**values))
            if res.rowcount == 1:
                self.ledger.audit(actor, f"subscriber.{state}", subscriber_id, {"reason": reason} if reason else {},
                                  conn)
            row = conn.execute(select(_S).where(_S.c.id == subscriber_id)).first()
        return Subscriber.from_row(row) if row else None

    def mark_bounced(self, address: str, *, list_name: str | None, actor: str, reason: str) -> int:
        cond = [_S.c.address == address, _S.c.state.in_(("pending", "confirmed"))]
        if list_name:
            cond.append(_S.c.list == list_name)
        with self.ledger.tx() as conn:
            ids = list(conn.execute(select(_S.c.id).where(*cond)).scalars())
            if not ids:
                return 0
            conn.execute(update(_S).where(_S.c.id.in_(ids), _S.c.state.in_(("pending", "confirmed")))
                         .values(state="bounced"))
            for sid in ids:
                self.ledger.audit(actor, "subscriber.bounced", sid, {"reason": reason[:200]} if reason else {}, conn)
        return len(ids)


def _imported_values(r: Imported) -> dict[str, Any]:
    return {"list": r.list, "address": r.address, "name": r.name, "components": list(r.components),
            "state": r.state, "marketing": r.marketing, "created_at": r.created_at,
            "confirmed_at": r.confirmed_at, "unsubscribed_at": r.unsubscribed_at}
