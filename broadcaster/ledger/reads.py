"""Reading announcements, their updates and deliveries: what the API, the page, the CLI and the
worker show or build a message from. Every read runs on the reader connection (no write lock on
SQLite, autocommit on PostgreSQL); a missing row is ``NotFound``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select

from ..errors import NotFound
from ..models import Announcement, Delivery, DeliveryEvent, DeliveryState, Receipt, Update
from . import schema as t
from .rows import announcement_of, delivery_of, event_of, update_of

if TYPE_CHECKING:
    from .repository import Ledger

_A, _U, _D, _E = t.announcements, t.updates, t.deliveries, t.delivery_events

#: an announcement with its updates, its deliveries and each delivery's events
Snapshot = tuple[Announcement, list[Update], list[Delivery], dict[str, list[DeliveryEvent]]]


class Reads:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def get_announcement(self, ann_id: str) -> Announcement:
        with self.ledger.read() as conn:
            row = conn.execute(select(_A).where(_A.c.id == ann_id)).first()
        if row is None:
            raise NotFound(f"no announcement {ann_id!r}")
        return announcement_of(row._mapping)

    def list_announcements(self, *, kind: str | None = None, status: str | None = None, state: str | None = None,
                           since: float | None = None, until: float | None = None, before: str | None = None,
                           open_only: bool = False, limit: int = 50) -> list[Announcement]:
        """Newest first; ``before`` is the last id of the previous page."""
        q = select(_A).order_by(_A.c.created_at.desc(), _A.c.id.desc()).limit(limit)
        if kind:
            q = q.where(_A.c.kind == kind)
        if status:
            q = q.where(_A.c.status == status)
        if since is not None:
            q = q.where(_A.c.created_at >= since)
        if until is not None:
            q = q.where(_A.c.created_at < until)
        if open_only:
            q = q.where(_A.c.resolved_at.is_(None), _A.c.retracted_at.is_(None))
        if state:
            q = q.where(_A.c.id.in_(select(_D.c.announcement_id).where(_D.c.state == state)))
        with self.ledger.read() as conn:
            if before:
                cursor = conn.execute(select(_A.c.created_at).where(_A.c.id == before)).scalar()
                if cursor is None:
                    q = q.where(_A.c.id < before)
                else:  # the same order as the listing: (created_at, id) descending
                    q = q.where(or_(_A.c.created_at < cursor, and_(_A.c.created_at == cursor, _A.c.id < before)))
            return [announcement_of(r._mapping) for r in conn.execute(q)]

    def get_update(self, upd_id: str) -> Update:
        with self.ledger.read() as conn:
            row = conn.execute(select(_U).where(_U.c.id == upd_id)).first()
        if row is None:
            raise NotFound(f"no update {upd_id!r}")
        return update_of(row._mapping)

    def get_delivery(self, delivery_id: str) -> Delivery:
        with self.ledger.read() as conn:
            row = conn.execute(select(_D).where(_D.c.id == delivery_id)).first()
        if row is None:
            raise NotFound(f"no delivery {delivery_id!r}")
        return delivery_of(row._mapping)

    def deliveries_of(self, ann_id: str) -> list[Delivery]:
        """Oldest first (created, then id)."""
        return self.deliveries_for([ann_id])[ann_id]

    def deliveries_for(self, ann_ids: list[str]) -> dict[str, list[Delivery]]:
        """Each announcement's deliveries, oldest first, in one query."""
        out: dict[str, list[Delivery]] = {a: [] for a in ann_ids}
        if not ann_ids:
            return out
        with self.ledger.read() as conn:
            for r in conn.execute(select(_D).where(_D.c.announcement_id.in_(ann_ids))
                                  .order_by(_D.c.created_at, _D.c.id)):
                out[r.announcement_id].append(delivery_of(r._mapping))
        return out

    def events_of(self, delivery_id: str) -> list[DeliveryEvent]:
        """The attempt log, in the order written."""
        with self.ledger.read() as conn:
            rows = conn.execute(select(_E).where(_E.c.delivery_id == delivery_id).order_by(_E.c.id))
            return [event_of(r._mapping) for r in rows]

    def snapshot(self, ann_id: str) -> Snapshot:
        """An announcement with its updates, deliveries and their events: one connection, four
        queries, whatever the number of channels (what the API, CLI and web page show)."""
        with self.ledger.read() as conn:
            row = conn.execute(select(_A).where(_A.c.id == ann_id)).first()
            if row is None:
                raise NotFound(f"no announcement {ann_id!r}")
            upds = [update_of(r._mapping) for r in conn.execute(
                select(_U).where(_U.c.announcement_id == ann_id).order_by(_U.c.created_at, _U.c.id))]
            dels = [delivery_of(r._mapping) for r in conn.execute(
                select(_D).where(_D.c.announcement_id == ann_id).order_by(_D.c.created_at, _D.c.id))]
            events: dict[str, list[DeliveryEvent]] = {x.id: [] for x in dels}
            if dels:
                of_ann = select(_D.c.id).where(_D.c.announcement_id == ann_id)
                for r in conn.execute(select(_E).where(_E.c.delivery_id.in_(of_ann)).order_by(_E.c.id)):
                    events.setdefault(r.delivery_id, []).append(event_of(r._mapping))
        return announcement_of(row._mapping), upds, dels, events

    def thread_receipts(self, ann_id: str, channel: str, before: float | None = None) -> list[Receipt]:
        """Receipts of delivered posts of this announcement on this channel, oldest first."""
        q = select(_D.c.receipt, _D.c.remote_id, _D.c.remote_url).where(
            _D.c.announcement_id == ann_id, _D.c.channel == channel, _D.c.state == str(DeliveryState.DELIVERED)
        ).order_by(_D.c.created_at, _D.c.id)
        if before is not None:
            q = q.where(_D.c.created_at <= before)
        with self.ledger.read() as conn:
            return [Receipt.from_dict(r.receipt) or Receipt(remote_id=r.remote_id, url=r.remote_url)
                    for r in conn.execute(q)]
