"""The whole ledger as records and back: every statement of the export and of its restore.

A record is one row of a table with every column, as stored — the export writes each column a
table has, so a column added later is carried without touching this module. A delivery's
record also holds its attempt events and per-item progress (they have no meaning apart from
it). Audit entries leave their numeric id behind: a restored log numbers itself again, so the
id sequence of the new database stays right.

Reading goes by pages (keyset on the primary key, one short read each), so an export's memory
does not grow with the ledger. A restore writes into an empty ledger in ONE transaction, in
batches, while its records are still being read: whatever the reader raises, or the database
refuses, nothing stays. The file format (JSON Lines, the meta and end lines) is
``broadcaster.export``'s; this module knows tables, not files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, Table, func, insert, select
from sqlalchemy.exc import IntegrityError, StatementError

from ..errors import InvalidRequest
from . import schema as t

if TYPE_CHECKING:
    from .repository import Ledger

Kind = Literal["announcement", "update", "delivery", "subscriber", "subscriber_endpoint", "sms_opt_out", "audit"]

#: the kinds of record, in restore order (parents first). Subscribers' own webhooks and the
#: numbers that replied STOP are the audience's data as much as the mailing lists are: an
#: installation restored without them would post to no webhook and text people who said STOP.
KINDS: tuple[Kind, ...] = ("announcement", "update", "delivery", "subscriber", "subscriber_endpoint", "sms_opt_out",
                           "audit")
_TABLES: dict[str, Table] = {"announcement": t.announcements, "update": t.updates, "delivery": t.deliveries,
                              "subscriber": t.subscribers, "subscriber_endpoint": t.subscriber_endpoints,
                              "sms_opt_out": t.sms_opt_outs, "audit": t.audit_log}
#: what ``is_empty`` looks at: every table a restore writes rows with their own keys into
_RESTORED = (t.announcements, t.updates, t.deliveries, t.subscribers, t.subscriber_endpoints, t.sms_opt_outs)
EVENT_FIELDS = ("at", "from_state", "to_state", "attempt", "reason", "response")
ITEM_FIELDS = ("item", "state", "detail", "at")
AUDIT_FIELDS = ("at", "actor", "action", "target", "details")


@dataclass(frozen=True)
class Record:
    """One row of the ledger: ``values`` maps each column to its value (for a delivery, also
    its ``events`` and ``items``, each a mapping of :data:`EVENT_FIELDS` / :data:`ITEM_FIELDS`)."""

    kind: Kind
    values: Mapping[str, Any]
    events: tuple[Mapping[str, Any], ...] = ()
    items: tuple[Mapping[str, Any], ...] = ()


class MissingColumn(ValueError):
    """A record to restore lacks a column its table requires."""

    def __init__(self, kind: str, column: str):
        super().__init__(f"{kind} lacks {column!r}")
        self.kind, self.column = kind, column


def record(kind: Kind, obj: Mapping[str, Any]) -> Record:
    """The record ``obj`` describes (keys beyond the table's columns are ignored; a column that
    may be empty may be left out); :class:`MissingColumn` when a required one is absent."""
    if kind == "audit":
        return Record(kind, {k: obj.get(k) for k in AUDIT_FIELDS})
    if kind != "delivery":
        return Record(kind, _columns(kind, obj))
    values = _columns(kind, obj, skip=("once_key",))
    # exports made before the at-most-once key lack it: it follows from the row
    values["once_key"] = obj.get("once_key") or t.once_key(values["announcement_id"], values["update_id"],
                                                           values["channel"])
    return Record(kind, values, tuple({k: ev.get(k) for k in EVENT_FIELDS} for ev in obj.get("events") or ()),
                  tuple({k: it.get(k) for k in ITEM_FIELDS} for it in obj.get("items") or ()))


def _columns(kind: Kind, obj: Mapping[str, Any], *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in _TABLES[kind].columns:
        if col.name in skip:
            continue
        if col.name not in obj:
            if not col.nullable:
                raise MissingColumn(kind, col.name)
            out[col.name] = None
        else:
            out[col.name] = obj[col.name]
    return out


class LedgerArchive:
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    # ------------------------------------------------------------ reading

    def pages(self, kind: Kind, *, page: int) -> Iterator[list[Record]]:
        """Every record of ``kind`` in primary-key order, ``page`` per read."""
        table = _TABLES[kind]
        (key,) = table.primary_key.columns  # one column each: id, or an opt-out's number
        last = None
        while True:
            q = select(table).order_by(key).limit(page)
            if last is not None:
                q = q.where(key > last)
            with self.ledger.read() as conn:
                rows = [dict(r._mapping) for r in conn.execute(q)]
                if not rows:
                    return
                if kind == "delivery":
                    records = self._deliveries(conn, rows)
                elif kind == "audit":
                    records = [Record(kind, {k: r[k] for k in AUDIT_FIELDS}) for r in rows]
                else:
                    records = [Record(kind, r) for r in rows]
            yield records
            if len(rows) < page:
                return
            last = rows[-1][key.name]

    @staticmethod
    def _deliveries(conn: Connection, rows: list[dict[str, Any]]) -> list[Record]:
        e, di = t.delivery_events, t.delivery_items
        ids = [r["id"] for r in rows]
        events: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        items: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for ev in conn.execute(select(e).where(e.c.delivery_id.in_(ids)).order_by(e.c.delivery_id, e.c.id)):
            events[ev.delivery_id].append({k: ev._mapping[k] for k in EVENT_FIELDS})
        for it in conn.execute(select(di).where(di.c.delivery_id.in_(ids)).order_by(di.c.delivery_id, di.c.item)):
            items[it.delivery_id].append({k: it._mapping[k] for k in ITEM_FIELDS})
        return [Record("delivery", r, tuple(events[r["id"]]), tuple(items[r["id"]])) for r in rows]

    def is_empty(self) -> bool:
        """No announcement, update, delivery, subscriber, subscriber endpoint or SMS opt-out (what
        a restore needs)."""
        with self.ledger.read() as conn:
            for table in _RESTORED:
                if conn.execute(select(func.count()).select_from(table)).scalar():
                    return False
        return True

    # ------------------------------------------------------------ restoring

    def restore(self, records: Iterable[Record], *, batch: int) -> None:
        """Write ``records`` (parents before the rows that refer to them) in ONE transaction,
        ``batch`` rows per statement. ``records`` may be read lazily: an exception it raises
        ends the restore with nothing written, as does a row the database refuses
        (:class:`InvalidRequest`)."""
        try:
            self._restore(records, batch)
        except IntegrityError:
            raise InvalidRequest("the rows do not fit together (a duplicate id, or a reference to a row that is "
                                 "not there); nothing was imported") from None
        except StatementError as exc:
            raise InvalidRequest(f"the database refused a row ({type(getattr(exc, 'orig', exc)).__name__}); "
                                 "nothing was imported") from None

    def _restore(self, records: Iterable[Record], batch: int) -> None:
        targets: dict[str, Table] = {**_TABLES, "event": t.delivery_events, "item": t.delivery_items}
        pending: dict[str, list[Mapping[str, Any]]] = {k: [] for k in (*KINDS[:3], "event", "item", *KINDS[3:])}
        with self.ledger.tx() as conn:

            def flush() -> None:
                for kind, rows in pending.items():
                    if rows:
                        conn.execute(insert(targets[kind]), rows)
                        rows.clear()

            for rec in records:
                pending[rec.kind].append(rec.values)
                did = rec.values.get("id")
                pending["event"] += [{"delivery_id": did, **ev} for ev in rec.events]
                pending["item"] += [{"delivery_id": did, **it} for it in rec.items]
                if sum(len(v) for v in pending.values()) >= batch:
                    flush()
            flush()
