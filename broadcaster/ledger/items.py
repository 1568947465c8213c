"""Per-item progress of a delivery: each recipient of a mailing, each part of a thread — so a
retry after a crash re-sends only what is not known to have gone, and an operator sees which.

Marks are written with the lease renewal that keeps a long send alive, in ONE transaction:
progress and "this worker is still at it" never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, update

from ..models import DeliveryState as S
from . import schema as t
from .prepared import Prepared

if TYPE_CHECKING:
    from .repository import Ledger

_D, _DI = t.deliveries, t.delivery_items
#: ``(items, state, detail)``: one mark of several items
ItemMark = tuple[Iterable[str], str, str | None]
_RENEW = (update(_D).where(_D.c.id == bindparam("d_id"), _D.c.lease_owner == bindparam("d_owner"),
                           _D.c.state == str(S.SENDING)).values(lease_until=bindparam("d_until")))


class Items:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def item_states(self, delivery_id: str) -> dict[str, tuple[str, str | None]]:
        """Each item's last mark: ``item → (state, detail)``."""
        with self.ledger.read() as conn:
            rows = conn.execute(select(_DI.c.item, _DI.c.state, _DI.c.detail).where(_DI.c.delivery_id == delivery_id))
            return {r.item: (r.state, r.detail) for r in rows}

    def mark_and_extend(self, delivery_id: str, owner: str | None, marks: Iterable[ItemMark],
                        lease: float | None = None) -> bool | None:
        """Record item marks ``(items, state, detail)`` — later marks of an item win, as if written
        one after another — and, when ``lease`` is given, renew ``owner``'s lease on the delivery,
        all in ONE transaction. Returns whether the lease was renewed, or None when no renewal
        was asked for.

        Items are upserted with one executemany of ``INSERT … ON CONFLICT (delivery_id, item) DO
        UPDATE`` — the same statement and outcome on SQLite and PostgreSQL (any other database:
        look up, then update or insert). The statement is built once: per-recipient progress of
        a large mailing calls this once per message."""
        now = self.ledger.clock()
        rows: dict[str, dict[str, Any]] = {}
        for items, state, detail in marks:
            for item in items:
                rows[item] = {"delivery_id": delivery_id, "item": item, "state": state, "detail": detail, "at": now}
        if not rows and lease is None:
            return None
        upsert = _upsert(self.ledger.engine.dialect.name)
        with self.ledger.tx() as conn:
            if rows and upsert is not None:
                upsert.run_many(conn, list(rows.values()))
            elif rows:
                existing = set(conn.execute(select(_DI.c.item).where(
                    _DI.c.delivery_id == delivery_id, _DI.c.item.in_(list(rows)))).scalars())
                for item in existing:
                    r = rows[item]
                    conn.execute(update(_DI).where(_DI.c.delivery_id == delivery_id, _DI.c.item == item)
                                 .values(state=r["state"], detail=r["detail"], at=now))
                new = [r for item, r in rows.items() if item not in existing]
                if new:
                    conn.execute(insert(_DI), new)
            if lease is None:
                return None
            res = conn.execute(_RENEW, {"d_id": delivery_id, "d_owner": owner, "d_until": now + lease})
            return res.rowcount == 1


@cache
def _upsert(dialect: str) -> Prepared | None:
    """``INSERT … ON CONFLICT (delivery_id, item) DO UPDATE`` for SQLite and PostgreSQL (None
    elsewhere), prepared (:mod:`.prepared`: a mailing writes its progress several times a second,
    and SQLAlchemy's per-row parameter processing cost more than the write); the dialect modules
    load only when progress is first written."""
    from sqlalchemy.dialects import postgresql, sqlite

    if dialect == "sqlite":
        lite = sqlite.insert(_DI)
        return Prepared(lite.on_conflict_do_update(index_elements=[_DI.c.delivery_id, _DI.c.item], set_={
            "state": lite.excluded.state, "detail": lite.excluded.detail, "at": lite.excluded.at}))
    if dialect == "postgresql":
        pg = postgresql.insert(_DI)
        return Prepared(pg.on_conflict_do_update(index_elements=[_DI.c.delivery_id, _DI.c.item], set_={
            "state": pg.excluded.state, "detail": pg.excluded.detail, "at": pg.excluded.at}))
    return None
