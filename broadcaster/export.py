"""Leave with all your data: JSON Lines export/import of the whole ledger, CSV for subscribers.

JSON Lines (one object per line, ``type`` first):

    {"type": "meta", "format": "broadcaster-export", "version": 1}
    {"type": "announcement", ...every column...}
    {"type": "update", ...}
    {"type": "delivery", ..., "events": [{at, from_state, to_state, attempt, reason, response}], "items": [...]}
    {"type": "subscriber", ...}
    {"type": "subscriber_endpoint", ...}   (a subscriber's own webhook: its URL is a credential)
    {"type": "sms_opt_out", "number", "channel", "reason", "at"}
    {"type": "audit", "at", "actor", "action", "target", "details"}
    {"type": "end", "counts": {"announcement": n, ...}}

The export streams in pages (keyset by primary key), so its memory does not grow with the
ledger. It carries no timestamp of its own and sorts every key, so exporting a restored ledger
gives a byte-identical file. The closing ``end`` line lets an import notice a file cut short.
API tokens and idempotency keys are not exported (credentials and 48-hour caches).

:func:`import_lines` restores an export into an EMPTY ledger (no announcements, updates,
deliveries, subscribers, subscriber endpoints or SMS opt-outs), in one transaction: it all lands
or nothing does. An export made before endpoints and opt-outs were exported imports as it is.

Subscribers CSV (``list,address,name,components,state,marketing,created_at,confirmed_at,
unsubscribed_at``; components separated by ``;``; times ISO 8601 UTC to the microsecond) exports
and re-imports losslessly. Import checks every row and reports bad ones by line number while
storing the rest; a row for an address already on the list updates it. A row without a
``marketing`` value has no consent to promotions (unless the importer says everyone does).

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

from . import subscribers as subs
from .config import Settings
from .csvcells import as_text_cell, from_text_cell
from .errors import Conflict, InvalidRequest
from .ledger import Ledger
from .ledger.archive import KINDS, MissingColumn, Record, record
from .ledger.subscribers import Imported, SubscriberStore
from .requests import check_subscriber

FORMAT = "broadcaster-export"
VERSION = 1
PAGE = 500


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str, list, dict)):
        return value
    return str(value)


def _object(rec: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"type": rec.kind, **{k: _plain(v) for k, v in rec.values.items()}}
    if rec.kind == "delivery":
        out["events"] = [{k: _plain(v) for k, v in ev.items()} for ev in rec.events]
        out["items"] = [{k: _plain(v) for k, v in it.items()} for it in rec.items]
    return out


def export_lines(ledger: Ledger, *, page: int = PAGE) -> Iterator[str]:
    """The whole ledger as JSON Lines, streamed."""
    counts = dict.fromkeys(KINDS, 0)
    yield _line({"type": "meta", "format": FORMAT, "version": VERSION})
    for kind in KINDS:
        for records in ledger.archive.pages(kind, page=page):
            for rec in records:
                counts[kind] += 1
                yield _line(_object(rec))
    yield _line({"type": "end", "counts": counts})


def write_export(ledger: Ledger, fp: IO[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in export_lines(ledger):
        fp.write(line)
        if line.startswith('{"counts"'):
            counts = json.loads(line)["counts"]
    return counts


# ---------------------------------------------------------------- restore


def is_empty(ledger: Ledger) -> bool:
    return ledger.archive.is_empty()


def import_lines(ledger: Ledger, lines: Iterable[str], *, batch: int = PAGE) -> dict[str, int]:
    """Restore an export into an empty ledger, in one transaction. Returns counts by type."""
    if not ledger.archive.is_empty():
        raise Conflict("the ledger is not empty: an export can only be imported into a fresh ledger "
                       "(no announcements, deliveries, subscribers, subscriber endpoints or SMS opt-outs)")
    counts: dict[str, int] = dict.fromkeys(KINDS, 0)
    ledger.archive.restore(_records(lines, counts), batch=batch)
    return counts


def _records(lines: Iterable[str], counts: dict[str, int]) -> Iterator[Record]:
    """The records of an export file, checked line by line (counted into ``counts``); raises
    :class:`InvalidRequest` naming the line — which ends the restore with nothing written."""
    seen_meta = seen_end = False
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
        if kind not in KINDS:
            raise InvalidRequest(f"line {n}: unknown type {kind!r}")
        counts[kind] += 1
        try:
            rec = record(kind, obj)
        except MissingColumn as exc:
            raise InvalidRequest(f"line {n}: {exc}") from None
        yield rec
    if not seen_meta:
        raise InvalidRequest("the file is empty")
    if not seen_end:
        raise InvalidRequest(f"the file ends at line {n} without its end line: was the export cut short? "
                             "nothing was imported")


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


def subscriber_csv_lines(ledger: Ledger, *, list_name: str | None = None, page: int = PAGE) -> Iterator[str]:
    """The subscribers as CSV text, streamed, ordered by list and address. A bad ``list_name``
    is refused here, before the stream starts (an HTTP answer cannot turn into an error later)."""
    check_subscriber("list", list_name)
    return _subscriber_csv(ledger, list_name, page)


def _subscriber_csv(ledger: Ledger, list_name: str | None, page: int) -> Iterator[str]:
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
    store = SubscriberStore(ledger)
    last: tuple[str, str] | None = None
    while True:
        rows = store.by_address(list_name=list_name, after=last, limit=page)
        for r in rows:
            w.writerow([as_text_cell(v) for v in (
                r.list, r.address, r.name or "", ";".join(r.components), r.state,
                "true" if r.marketing else "false", _iso(r.created_at), _iso(r.confirmed_at), _iso(r.unsubscribed_at))])
        if rows:
            yield take()
            last = (rows[-1].list, rows[-1].address)
        if len(rows) < page:
            return


def export_subscribers_csv(ledger: Ledger, fp: IO[str], *, list_name: str | None = None) -> None:
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
             settings: Settings | None = None, marketing: bool = False) -> Imported:
    """One CSV row → the subscriber it states, or ValueError saying what is wrong. Consent to
    promotions is never assumed: a row gets it only from its own ``marketing`` cell, or, when
    that is empty or absent, from ``marketing`` (the importer's ``--marketing``: "everyone in
    this file consented")."""
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
    return Imported(list=name_of_list, address=address, name=name, components=tuple(components), state=state,
                    marketing=mk in _TRUE if mk else marketing, created_at=now if created is None else created,
                    confirmed_at=_epoch(values.get("confirmed_at") or "", "confirmed_at"),
                    unsubscribed_at=_epoch(values.get("unsubscribed_at") or "", "unsubscribed_at"))


def import_subscribers_csv(ledger: Ledger, fp: IO[str], *, list_name: str | None = None, actor: str = "cli",
                           batch: int = PAGE, settings: Settings | None = None,
                           marketing: bool = False) -> CsvImport:
    """Store every good row; report each bad one as ``(line number, message)``. With
    ``settings``, a row naming a component no status channel declares is a bad row (as at the
    public form); the configured spelling is stored. Marketing consent is false unless the row's
    ``marketing`` cell says true, or the cell is empty or absent and ``marketing`` is true."""
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
    chunk: list[Imported] = []
    store = SubscriberStore(ledger)

    def flush(rows: list[Imported]) -> None:
        inserted, updated = store.import_rows(rows)
        report.inserted += inserted
        report.updated += updated

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
            row = _csv_row(dict(zip(header, values, strict=True)), list_name, now, settings, marketing)
        except ValueError as exc:
            report.errors.append((start, str(exc)))
            continue
        key = (row.list, row.address)
        if key in seen:
            report.errors.append((start, f"{row.address} is already on line {seen[key]} for list {row.list!r}"))
            continue
        seen[key] = start
        chunk.append(row)
        if len(chunk) >= batch:
            flush(chunk)
            chunk = []
    if chunk:
        flush(chunk)
    ledger.audit(actor, "subscribers.import", list_name, {"inserted": report.inserted, "updated": report.updated,
                                                          "errors": len(report.errors)})
    return report
