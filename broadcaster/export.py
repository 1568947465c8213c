"""Leave with all your data: JSON Lines export/import of the whole ledger, CSV for subscribers.

JSON Lines (one object per line, ``type`` first):

    {"type": "meta", "format": "broadcaster-export", "version": 1}
    {"type": "announcement", ...every column...}
    {"type": "update", ...}
    {"type": "delivery", ..., "events": [{at, from_state, to_state, attempt, reason, response}], "items": [...]}
    {"type": "subscriber", ...}
    {"type": "audit", "at", "actor", "action", "target", "details"}
    {"type": "end", "counts": {"announcement": n, ...}}

The export streams in pages (keyset by primary key), so its memory does not grow with the
ledger. It carries no timestamp of its own and sorts every key, so exporting a restored ledger
gives a byte-identical file. The closing ``end`` line lets an import notice a file cut short.
API tokens and idempotency keys are not exported (credentials and 48-hour caches).

:func:`import_lines` restores an export into an EMPTY ledger (no announcements, updates,
deliveries or subscribers), in one transaction: it all lands or nothing does.

Subscribers CSV (``list,address,name,components,state,marketing,created_at,confirmed_at,
unsubscribed_at``; components separated by ``;``; times ISO 8601 UTC to the microsecond) exports
and re-imports losslessly. Import checks every row and reports bad ones by line number while
storing the rest; a row for an address already on the list updates it.

The CSV is opened in spreadsheets, and names come from a public form: a cell a spreadsheet
would run as a formula is written behind a single quote (:mod:`broadcaster.csvcells`); import
removes exactly that quote, so the round trip stays lossless. Control characters are refused
at intake (the form and the import alike).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError, StatementError

from . import subscribers as subs
from .config import Settings
from .csvcells import as_text_cell, from_text_cell
from .errors import Conflict, InvalidRequest
from .ledger import schema as t
from .requests import check_subscriber

FORMAT = "broadcaster-export"
VERSION = 1
PAGE = 500

#: JSON Lines type → table, in restore order (parents first)
TABLES = {
    "announcement": t.announcements,
    "update": t.updates,
    "delivery": t.deliveries,
    "subscriber": t.subscribers,
    "audit": t.audit_log,
}
EVENT_FIELDS = ("at", "from_state", "to_state", "attempt", "reason", "response")
ITEM_FIELDS = ("item", "state", "detail", "at")
AUDIT_FIELDS = ("at", "actor", "action", "target", "details")


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str, list, dict)):
        return value
    return str(value)


def _row(kind: str, row, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {"type": kind}
    for k, v in row._mapping.items():
        if k not in skip:
            out[k] = _plain(v)
    return out


def _pages(ledger, table, key, *, page: int = PAGE) -> Iterator[list]:
    """Rows of ``table`` ordered by ``key`` (unique), one short read per page."""
    last = None
    while True:
        q = select(table).order_by(key).limit(page)
        if last is not None:
            q = q.where(key > last)
        with ledger.read() as conn:
            rows = conn.execute(q).all()
        if not rows:
            return
        yield rows
        last = rows[-1]._mapping[key.name]
        if len(rows) < page:
            return


def export_lines(ledger, *, page: int = PAGE) -> Iterator[str]:
    """The whole ledger as JSON Lines, streamed."""
    counts = {k: 0 for k in TABLES}
    yield _line({"type": "meta", "format": FORMAT, "version": VERSION})
    for rows in _pages(ledger, t.announcements, t.announcements.c.id, page=page):
        for r in rows:
            counts["announcement"] += 1
            yield _line(_row("announcement", r))
    for rows in _pages(ledger, t.updates, t.updates.c.id, page=page):
        for r in rows:
            counts["update"] += 1
            yield _line(_row("update", r))
    e, di = t.delivery_events, t.delivery_items
    for rows in _pages(ledger, t.deliveries, t.deliveries.c.id, page=page):
        ids = [r.id for r in rows]
        events: dict[str, list] = {i: [] for i in ids}
        items: dict[str, list] = {i: [] for i in ids}
        with ledger.read() as conn:
            for ev in conn.execute(select(e).where(e.c.delivery_id.in_(ids)).order_by(e.c.delivery_id, e.c.id)):
                events[ev.delivery_id].append({k: _plain(ev._mapping[k]) for k in EVENT_FIELDS})
            for it in conn.execute(select(di).where(di.c.delivery_id.in_(ids)).order_by(di.c.delivery_id, di.c.item)):
                items[it.delivery_id].append({k: _plain(it._mapping[k]) for k in ITEM_FIELDS})
        for r in rows:
            counts["delivery"] += 1
            out = _row("delivery", r)
            out["events"] = events[r.id]
            out["items"] = items[r.id]
            yield _line(out)
    for rows in _pages(ledger, t.subscribers, t.subscribers.c.id, page=page):
        for r in rows:
            counts["subscriber"] += 1
            yield _line(_row("subscriber", r))
    for rows in _pages(ledger, t.audit_log, t.audit_log.c.id, page=page):
        for r in rows:
            counts["audit"] += 1
            yield _line(_row("audit", r, skip=("id",)))
    yield _line({"type": "end", "counts": counts})


def write_export(ledger, fp: IO[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in export_lines(ledger):
        fp.write(line)
        if line.startswith('{"counts"'):
            counts = json.loads(line)["counts"]
    return counts


# ---------------------------------------------------------------- restore


def is_empty(ledger) -> bool:
    with ledger.read() as conn:
        for table in (t.announcements, t.updates, t.deliveries, t.subscribers):
            if conn.execute(select(func.count()).select_from(table)).scalar():
                return False
    return True


def _columns(table, obj: dict[str, Any], line: int, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in table.columns:
        if col.name in skip:
            continue
        if col.name not in obj:
            if col.nullable:
                out[col.name] = None
                continue
            raise InvalidRequest(f"line {line}: {obj.get('type')} lacks {col.name!r}")
        out[col.name] = obj[col.name]
    return out


def import_lines(ledger, lines: Iterable[str], *, batch: int = PAGE) -> dict[str, int]:
    """Restore an export into an empty ledger, in one transaction. Returns counts by type."""
    if not is_empty(ledger):
        raise Conflict("the ledger is not empty: an export can only be imported into a fresh ledger "
                       "(no announcements, deliveries or subscribers)")
    counts = {k: 0 for k in TABLES}
    pending: dict[str, list] = {"announcement": [], "update": [], "delivery": [], "event": [], "item": [],
                                "subscriber": [], "audit": []}
    targets = {"announcement": t.announcements, "update": t.updates, "delivery": t.deliveries,
               "event": t.delivery_events, "item": t.delivery_items, "subscriber": t.subscribers,
               "audit": t.audit_log}
    try:
        return _restore(ledger, lines, batch, counts, pending, targets)
    except IntegrityError:
        raise InvalidRequest("the file's rows do not fit together (a duplicate id, or a reference to a row the "
                             "file does not hold); nothing was imported") from None
    except StatementError as exc:
        raise InvalidRequest(f"the database refused a row of the file ({type(getattr(exc, 'orig', exc)).__name__}); "
                             "nothing was imported") from None


def _restore(ledger, lines, batch, counts, pending, targets) -> dict[str, int]:
    seen_meta = seen_end = False

    def flush(conn) -> None:
        for kind, rows in pending.items():
            if rows:
                conn.execute(insert(targets[kind]), rows)
                rows.clear()

    with ledger.tx() as conn:
        n = 0
        for n, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            if seen_end:
                raise InvalidRequest(f"line {n}: data after the end line")
            try:
                obj = json.loads(raw)
            except ValueError:
                raise InvalidRequest(f"line {n}: not JSON") from None
            kind = obj.get("type") if isinstance(obj, dict) else None
            if not seen_meta:
                if kind != "meta" or obj.get("format") != FORMAT:
                    raise InvalidRequest("line 1: not a broadcaster export (no meta line)")
                if obj.get("version") != VERSION:
                    raise InvalidRequest(f"line 1: export version {obj.get('version')!r} is not supported "
                                         f"(this version reads {VERSION})")
                seen_meta = True
                continue
            if kind == "end":
                expected = obj.get("counts") or {}
                if {k: expected.get(k, 0) for k in counts} != counts:
                    raise InvalidRequest(f"line {n}: the end line counts {expected} but the file holds {counts}")
                seen_end = True
                continue
            if kind not in TABLES:
                raise InvalidRequest(f"line {n}: unknown type {kind!r}")
            counts[kind] += 1
            if kind == "delivery":
                row = _columns(t.deliveries, obj, n, skip=("once_key",))
                # exports made before the at-most-once key lack it: it follows from the row
                row["once_key"] = obj.get("once_key") or t.once_key(row["announcement_id"], row["update_id"],
                                                                    row["channel"])
                pending["delivery"].append(row)
                for ev in obj.get("events") or ():
                    pending["event"].append({"delivery_id": obj["id"], **{k: ev.get(k) for k in EVENT_FIELDS}})
                for it in obj.get("items") or ():
                    pending["item"].append({"delivery_id": obj["id"], **{k: it.get(k) for k in ITEM_FIELDS}})
            elif kind == "audit":
                pending["audit"].append({k: obj.get(k) for k in AUDIT_FIELDS})
            else:
                pending[kind].append(_columns(TABLES[kind], obj, n))
            if sum(len(v) for v in pending.values()) >= batch:
                flush(conn)
        if not seen_meta:
            raise InvalidRequest("the file is empty")
        if not seen_end:
            raise InvalidRequest(f"the file ends at line {n} without its end line: was the export cut short? "
                                 "nothing was imported")
        flush(conn)
    return counts


# ---------------------------------------------------------------- subscribers CSV

CSV_FIELDS = ("list", "address", "name", "components", "state", "marketing", "created_at", "confirmed_at",
              "unsubscribed_at")
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}


def _iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _epoch(text: str, name: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: not a date-time (ISO 8601, e.g. 2026-01-31T12:00:00Z)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def subscriber_csv_lines(ledger, *, list_name: str | None = None, page: int = PAGE) -> Iterator[str]:
    """The subscribers as CSV text, streamed, ordered by list and address. A bad ``list_name``
    is refused here, before the stream starts (an HTTP answer cannot turn into an error later)."""
    check_subscriber("list", list_name)
    return _subscriber_csv(ledger, list_name, page)


def _subscriber_csv(ledger, list_name: str | None, page: int) -> Iterator[str]:
    buf = io.StringIO()
    # CRLF line ends (RFC 4180): the csv module quotes a cell holding any character of the line
    # terminator, so with a bare "\n" a CR in a stored name was written unquoted and broke the file
    w = csv.writer(buf, lineterminator="\r\n")

    def take() -> str:
        out = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return out

    w.writerow(CSV_FIELDS)
    yield take()
    s = t.subscribers
    last: tuple[str, str] | None = None
    while True:
        q = select(s).order_by(s.c.list, s.c.address).limit(page)
        if list_name is not None:
            q = q.where(s.c.list == list_name)
        if last is not None:
            q = q.where((s.c.list > last[0]) | ((s.c.list == last[0]) & (s.c.address > last[1])))
        with ledger.read() as conn:
            rows = conn.execute(q).all()
        for r in rows:
            w.writerow([as_text_cell(v) for v in (
                r.list, r.address, r.name or "", ";".join(r.components or ()), r.state,
                "true" if r.marketing else "false", _iso(r.created_at), _iso(r.confirmed_at), _iso(r.unsubscribed_at))])
        if rows:
            yield take()
            last = (rows[-1].list, rows[-1].address)
        if len(rows) < page:
            return


def export_subscribers_csv(ledger, fp: IO[str], *, list_name: str | None = None) -> None:
    for chunk in subscriber_csv_lines(ledger, list_name=list_name):
        fp.write(chunk)


@dataclass
class CsvImport:
    inserted: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return self.inserted + self.updated

    def to_dict(self) -> dict[str, Any]:
        return {"inserted": self.inserted, "updated": self.updated,
                "errors": [{"line": n, "message": m} for n, m in self.errors]}


def _csv_row(values: dict[str, str], list_name: str | None, now: float,
             settings: Settings | None = None) -> dict[str, Any]:
    """One CSV row → column values, or ValueError saying what is wrong."""
    values = {k: from_text_cell(v) for k, v in values.items()}
    try:
        for column in ("list", "address", "name", "components"):
            check_subscriber(column, values.get(column))
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from None
    row_list = (values.get("list") or "").strip()
    if list_name and row_list and row_list != list_name:
        raise ValueError(f"list is {row_list!r} but --list is {list_name!r}")
    name_of_list = list_name or row_list
    if not name_of_list:
        raise ValueError("no list: give a list column or --list")
    try:
        name_of_list = subs.check_list(name_of_list)
        address = subs.check_address(values.get("address") or "")
        named = [c for c in (values.get("components") or "").split(";") if c.strip()]
        components = (subs.known_components(named, settings) if settings is not None
                      else subs.check_components(named))
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from None
    name = values.get("name") or None
    if name is not None and len(name) > subs.MAX_NAME:
        raise ValueError(f"name: at most {subs.MAX_NAME} characters")
    state = (values.get("state") or "confirmed").strip().lower()
    if state not in subs.STATES:
        raise ValueError(f"state: {state!r} is not one of {', '.join(subs.STATES)}")
    mk = (values.get("marketing") or "").strip().lower()
    if mk and mk not in _TRUE | _FALSE:
        raise ValueError(f"marketing: {mk!r} is not true or false")
    created = _epoch(values.get("created_at") or "", "created_at")
    return {"list": name_of_list, "address": address, "name": name, "components": list(components), "state": state,
            "marketing": mk not in _FALSE if mk else True, "created_at": now if created is None else created,
            "confirmed_at": _epoch(values.get("confirmed_at") or "", "confirmed_at"),
            "unsubscribed_at": _epoch(values.get("unsubscribed_at") or "", "unsubscribed_at")}


def import_subscribers_csv(ledger, fp: IO[str], *, list_name: str | None = None, actor: str = "cli",
                           batch: int = PAGE, settings: Settings | None = None) -> CsvImport:
    """Store every good row; report each bad one as ``(line number, message)``. With
    ``settings``, a row naming a component no status channel declares is a bad row (as at the
    public form); the configured spelling is stored."""
    from .ledger.repository import new_id

    report = CsvImport()
    reader = csv.reader(fp)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidRequest("the CSV file is empty (expected a header line with at least 'address')") from None
    except csv.Error as exc:
        raise InvalidRequest(f"line 1: not CSV ({exc})") from None
    header = [h.strip().lower().lstrip("\ufeff") for h in header]
    unknown = [h for h in header if h not in CSV_FIELDS]
    if "address" not in header or unknown:
        raise InvalidRequest("line 1: the header must name columns among " + ", ".join(CSV_FIELDS)
                             + (f" (unknown: {', '.join(unknown)})" if unknown else " (address is required)"))
    if len(set(header)) != len(header):
        raise InvalidRequest("line 1: a column is named twice")
    list_name = subs.check_list(check_subscriber("list", list_name) or "") if list_name else None
    now = ledger.clock()
    seen: dict[tuple[str, str], int] = {}
    chunk: list[dict[str, Any]] = []
    s = t.subscribers

    def store(rows: list[dict[str, Any]]) -> None:
        with ledger.tx() as conn:
            for lst in {r["list"] for r in rows}:
                addrs = [r["address"] for r in rows if r["list"] == lst]
                existing = {a: i for a, i in conn.execute(select(s.c.address, s.c.id).where(
                    s.c.list == lst, s.c.address.in_(addrs)))}
                new = [r for r in rows if r["list"] == lst and r["address"] not in existing]
                if new:
                    conn.execute(insert(s), [{"id": new_id("sub"), **r} for r in new])
                    report.inserted += len(new)
                for r in rows:
                    if r["list"] == lst and r["address"] in existing:
                        conn.execute(update(s).where(s.c.id == existing[r["address"]]).values(**r))
                        report.updated += 1

    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.errors.append((start, f"not valid CSV ({exc})"))
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            report.errors.append((start, f"has {len(values)} fields, the header has {len(header)}"))
            continue
        try:
            row = _csv_row(dict(zip(header, values, strict=True)), list_name, now, settings)
        except ValueError as exc:
            report.errors.append((start, str(exc)))
            continue
        key = (row["list"], row["address"])
        if key in seen:
            report.errors.append((start, f"{row['address']} is already on line {seen[key]} for list {row['list']!r}"))
            continue
        seen[key] = start
        chunk.append(row)
        if len(chunk) >= batch:
            store(chunk)
            chunk = []
    if chunk:
        store(chunk)
    ledger.audit(actor, "subscribers.import", list_name, {"inserted": report.inserted, "updated": report.updated,
                                                          "errors": len(report.errors)})
    return report
