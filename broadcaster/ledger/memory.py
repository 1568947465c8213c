"""The ledger's memory twin: the delivery port (:mod:`broadcaster.ledger.ports`) in plain Python.

It keeps the same rows the SQL ledger keeps (announcements, deliveries, their events and item
progress) as dictionaries and makes the same promises, checked by the same contract tests
(``tests/contract/test_delivery_port.py``): one delivery per (message, channel) by
:func:`~broadcaster.ledger.ports.once_key`, claims only from a claimable, due state, outcomes
with an owner only under its lease, an event with every state change.

Every write is one transaction: its rows are worked out on a private copy, then — with a
:class:`~broadcaster.ledger.journal.Journal` — appended to the file as one fsynced line, and
only then made visible. :meth:`MemoryLedger.replay` rebuilds the twin from that file, so a
process that died mid-way (break-glass, ``post --direct``) resumes exactly where its last
recorded change left it, and ``reconcile`` reads from it what to import into the real ledger.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import Conflict, NotFound
from ..models import (
    CLAIMABLE,
    Announcement,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    Receipt,
    Update,
)
from . import rows
from .journal import Journal
from .ports import ItemMark, Outcome, once_key

S = DeliveryState
Row = dict[str, Any]

#: the columns of a delivery row, as the SQL ledger's ``deliveries`` table has them
DELIVERY_COLUMNS = ("id", "announcement_id", "update_id", "channel", "state", "attempts", "due_at", "deadline_at",
                    "lease_until", "lease_owner", "unstarted_by", "enqueued_at", "maybe_sent", "remote_id", "remote_url", "receipt",
                    "last_error", "fallback_of", "created_at", "updated_at", "settled_at", "once_key")
ANNOUNCEMENT_COLUMNS = ("id", "kind", "title", "body", "url", "severity", "components", "tags", "channels",
                        "variants", "status", "publish_at", "window_starts_at", "window_ends_at", "author",
                        "created_at", "updated_at", "retracted_at", "resolved_at", "allowed_channels",
                        "component_states", "next_update_at", "next_update_reminded")
#: the states a transition settles (``settled_at`` is set), as the SQL ledger has them
_SETTLES = frozenset({S.DELIVERED, S.FAILED, S.FALLEN_BACK, S.UNKNOWN, S.CANCELLED, S.RETRACTED})
#: the record type of the twin's transactions in a journal shared with other notes
RECORD = "ledger"


def announcement_of(m: Row) -> Announcement:
    """As the SQL ledger reads it (:mod:`.rows`), with its variants copied: the twin's rows are
    live dictionaries, and a caller must not change them through what it was given."""
    return rows.announcement_of({**m, "variants": copy.deepcopy(m["variants"])})


delivery_of = rows.delivery_of


def _new_id(prefix: str) -> str:
    from . import new_id  # the SQL ledger's ids: time-sortable, so both list rows in the same order

    return new_id(prefix)


class _Tx:
    """One transaction's private view: reads see its own writes first; nothing is visible to
    others (or journalled) until :meth:`MemoryLedger._commit`."""

    def __init__(self, ledger: MemoryLedger, now: float):
        self.ledger = ledger
        self.now = now
        self.changes: list[tuple[str, Row]] = []
        self._deliveries: dict[str, Row] = {}
        self._once: dict[str, str] = {}

    def delivery(self, delivery_id: str) -> Row | None:
        row = self._deliveries.get(delivery_id)
        if row is None:
            found = self.ledger._deliveries.get(delivery_id)
            row = None if found is None else dict(found)
        return row

    def holder(self, key: str) -> Row | None:
        """The delivery that carries ``key``'s message, if any."""
        did = self._once.get(key) or self.ledger._once.get(key)
        return None if did is None else self.delivery(did)

    def put_delivery(self, row: Row) -> None:
        holder = self._once.get(row["once_key"]) or self.ledger._once.get(row["once_key"])
        if holder is not None and holder != row["id"]:
            raise Conflict(f"a delivery of this message to {row['channel']} exists already ({holder})")
        self._deliveries[row["id"]] = row
        self._once[row["once_key"]] = row["id"]
        self.changes.append(("deliveries", row))

    def event(self, delivery_id: str, frm: str | None, to: str, attempt: int, reason: str,
              response: str | None = None) -> None:
        self.changes.append(("delivery_events", {
            "delivery_id": delivery_id, "at": self.now, "from_state": frm, "to_state": to, "attempt": attempt,
            "reason": reason[:2000], "response": (response or None) and response[:1000]}))

    def put(self, table: str, row: Row) -> None:
        self.changes.append((table, row))


class MemoryLedger:
    """The delivery port in memory, optionally journalled (see the module docstring)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, journal: Journal | None = None):
        self.clock = clock
        self.journal = journal
        self._lock = threading.RLock()
        self._announcements: dict[str, Row] = {}
        self._deliveries: dict[str, Row] = {}
        self._once: dict[str, str] = {}  # once_key → delivery id: the unique key
        self._events: list[Row] = []
        self._items: dict[str, dict[str, Row]] = {}  # delivery id → item → row
        self._audit: list[Row] = []

    @classmethod
    def replay(cls, journal: Journal, *, clock: Callable[[], float] = time.time,
               follow: bool = True) -> MemoryLedger:
        """The twin as ``journal`` left it. With ``follow`` its own changes are appended to the
        same file; without, it is a read-only picture (writes stay in memory)."""
        twin = cls(clock=clock)
        for record in journal.records():
            if record.get("type") == RECORD:
                twin._apply([(c["table"], c["row"]) for c in record["changes"]])
        twin.journal = journal if follow else None
        return twin

    def close(self) -> None:
        """Nothing to release (each journal write opens and closes the file)."""

    # ------------------------------------------------------------ transactions

    @contextmanager
    def _tx(self) -> Iterator[_Tx]:
        with self._lock:
            tx = _Tx(self, self.clock())
            yield tx
            self._commit(tx.changes)

    def _commit(self, changes: list[tuple[str, Row]]) -> None:
        if not changes:
            return
        if self.journal is not None:  # on disk before anyone can see it (or act on it)
            self.journal.append({"type": RECORD, "changes": [{"table": t, "row": r} for t, r in changes]})
        self._apply(changes)

    def _apply(self, changes: list[tuple[str, Row]]) -> None:
        for table, row in changes:
            row = copy.deepcopy(row)
            if table == "announcements":
                self._announcements[row["id"]] = row
            elif table == "deliveries":
                self._deliveries[row["id"]] = row
                self._once[row["once_key"]] = row["id"]
            elif table == "delivery_events":
                self._events.append(row)
            elif table == "delivery_items":
                self._items.setdefault(row["delivery_id"], {})[row["item"]] = row
            elif table == "audit_log":
                self._audit.append(row)
            else:
                raise ValueError(f"unknown table {table!r} in a ledger transaction")

    def restore(self, changes: Iterable[tuple[str, Row]]) -> None:
        """Write rows as given, in one transaction (importing rows made elsewhere, such as an
        older break-glass journal). No rule is checked but the unique key."""
        with self._tx() as tx:
            for table, row in changes:
                if table == "deliveries":
                    tx.put_delivery({c: row.get(c) for c in DELIVERY_COLUMNS})
                else:
                    tx.put(table, dict(row))

    # ------------------------------------------------------------ announcements

    def create_announcement(self, fields: dict[str, Any], deliveries: list[dict[str, Any]], *,
                            actor: str) -> tuple[str, bool]:
        """An announcement and its deliveries in one transaction, as the SQL ledger writes them
        (``(id, True)``; the twin keeps no Idempotency-Keys: break-glass derives its ids)."""
        channels = [d["channel"] for d in deliveries]
        if len(set(channels)) != len(channels):
            twice = sorted({c for c in channels if channels.count(c) > 1})
            raise ValueError(f"a message gets at most one delivery per channel; named twice: {', '.join(twice)}")
        with self._tx() as tx:
            now = tx.now
            row: Row = dict.fromkeys(ANNOUNCEMENT_COLUMNS) | {"components": [], "tags": [], "channels": [],
                                                              "variants": {}, "body": ""}
            row |= {k: v for k, v in fields.items() if v is not None}
            for k in ("components", "tags", "channels", "allowed_channels"):
                if row[k] is not None:
                    row[k] = list(row[k])
            ann_id = row["id"] = row["id"] or _new_id("ann")
            if ann_id in self._announcements:
                raise Conflict(f"announcement {ann_id!r} exists already")
            row.update(created_at=now, updated_at=now, author=actor)
            tx.put("announcements", row)
            for d in deliveries:
                self._new_delivery(tx, ann_id, None, d)
            tx.put("audit_log", {"at": now, "actor": actor, "action": "announcement.create", "target": ann_id,
                                 "details": {"kind": fields.get("kind"), "channels": channels}})
        return ann_id, True

    def _new_delivery(self, tx: _Tx, ann_id: str, update_id: str | None, d: dict[str, Any]) -> Row:
        did = d.get("id") or _new_id("dlv")
        if tx.delivery(did) is not None:
            raise Conflict(f"delivery {did!r} exists already")
        state = str(d.get("state", S.PENDING))
        row: Row = dict.fromkeys(DELIVERY_COLUMNS) | {
            "id": did, "announcement_id": ann_id, "update_id": update_id, "channel": d["channel"], "state": state,
            "attempts": 0, "due_at": d.get("due_at", tx.now), "deadline_at": d.get("deadline_at"),
            "maybe_sent": False, "fallback_of": d.get("fallback_of"), "created_at": tx.now, "updated_at": tx.now,
            "once_key": once_key(ann_id, update_id, d["channel"])}
        tx.put_delivery(row)
        tx.event(did, None, state, 0, d.get("reason", "accepted"))
        return row

    def set_announcement(self, ann_id: str, **values: Any) -> None:
        with self._tx() as tx:
            found = self._announcements.get(ann_id)
            if found is not None:
                tx.put("announcements", {**found, **values, "updated_at": tx.now})

    def get_announcement(self, ann_id: str) -> Announcement:
        with self._lock:
            row = self._announcements.get(ann_id)
            if row is None:
                raise NotFound(f"no announcement {ann_id!r}")
            return announcement_of(row)

    def announcement_ids(self) -> list[str]:
        """Every announcement, oldest first."""
        with self._lock:
            return [r["id"] for r in sorted(self._announcements.values(), key=lambda r: (r["created_at"], r["id"]))]

    def announcement_row(self, ann_id: str) -> Row:
        """The stored columns (``resolved_at``, the window's bounds…): what an import copies."""
        with self._lock:
            row = self._announcements.get(ann_id)
            if row is None:
                raise NotFound(f"no announcement {ann_id!r}")
            return copy.deepcopy(row)

    def get_update(self, upd_id: str) -> Update:
        raise NotFound(f"no update {upd_id!r}")  # the twin holds announcements only: nobody posts updates to it

    # ------------------------------------------------------------ deliveries: reading

    def get_delivery(self, delivery_id: str) -> Delivery:
        with self._lock:
            row = self._deliveries.get(delivery_id)
            if row is None:
                raise NotFound(f"no delivery {delivery_id!r}")
            return delivery_of(row)

    def deliveries_of(self, ann_id: str) -> list[Delivery]:
        with self._lock:
            rows = [r for r in self._deliveries.values() if r["announcement_id"] == ann_id]
            return [delivery_of(r) for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]))]

    def events_of(self, delivery_id: str) -> list[DeliveryEvent]:
        with self._lock:
            return [DeliveryEvent(**e) for e in self._events if e["delivery_id"] == delivery_id]

    def thread_receipts(self, ann_id: str, channel: str, before: float | None = None) -> list[Receipt]:
        with self._lock:
            rows = sorted((r for r in self._deliveries.values()
                           if r["announcement_id"] == ann_id and r["channel"] == channel
                           and r["state"] == str(S.DELIVERED) and (before is None or r["created_at"] <= before)),
                          key=lambda r: (r["created_at"], r["id"]))
            return [Receipt.from_dict(r["receipt"]) or Receipt(remote_id=r["remote_id"], url=r["remote_url"])
                    for r in rows]

    def count_by_state(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for r in self._deliveries.values():
                out[r["state"]] = out.get(r["state"], 0) + 1
            return out

    # ------------------------------------------------------------ claims

    def claim(self, delivery_id: str, owner: str, lease: float) -> Delivery | None:
        got = self.claim_with_announcement(delivery_id, owner, lease)
        return got and got[0]

    def claim_with_announcement(self, delivery_id: str, owner: str,
                                lease: float) -> tuple[Delivery, Announcement] | None:
        with self._tx() as tx:
            row = tx.delivery(delivery_id)
            if row is None or not self._claimable(row, tx.now) or row["announcement_id"] not in self._announcements:
                return None
            self._lease(tx, row, owner, lease, f"claimed by {owner}", unstarted_by=None)
            return delivery_of(row), announcement_of(self._announcements[row["announcement_id"]])

    def claim_batch(self, channel: str, owner: str, lease: float, limit: int, *,
                    start_first: bool = False) -> list[tuple[Delivery, Announcement]]:
        if limit < 1:
            return []
        with self._tx() as tx:
            due = sorted((r for r in self._deliveries.values() if r["channel"] == channel and self._claimable(r, tx.now)),
                         key=lambda r: (-float("inf") if r["due_at"] is None else r["due_at"], r["id"]))[:limit]
            out = []
            for i, found in enumerate(due):
                row = dict(found)
                self._lease(tx, row, owner, lease, f"claimed by {owner} (batch of {len(due)})",
                            unstarted_by=None if start_first and i == 0 else owner)
                out.append((delivery_of(row), announcement_of(self._announcements[row["announcement_id"]])))
            out.sort(key=lambda x: (x[0].due_at or 0.0, x[0].id))
            return out

    @staticmethod
    def _claimable(row: Row, now: float) -> bool:
        return S(row["state"]) in CLAIMABLE and (row["due_at"] is None or row["due_at"] <= now + 0.05)

    def start_send(self, delivery_id: str, owner: str, outcomes: Sequence[Outcome] = ()) -> tuple[bool, list[bool]]:
        with self._tx() as tx:
            recorded = [self._record(tx, d, to, reason, owner=owner, **opts) for d, to, reason, opts in outcomes]
            row = tx.delivery(delivery_id)
            if row is None or row["lease_owner"] != owner or row["state"] != str(S.SENDING) \
                    or row["lease_until"] is None or row["lease_until"] < tx.now:
                return False, recorded
            row["unstarted_by"] = None
            tx.put_delivery(row)
            return True, recorded

    @staticmethod
    def _lease(tx: _Tx, row: Row, owner: str, lease: float, reason: str, *, unstarted_by: str | None) -> None:
        prev = row["state"]
        row.update(state=str(S.SENDING), lease_owner=owner, lease_until=tx.now + lease, unstarted_by=unstarted_by,
                   updated_at=tx.now)
        tx.put_delivery(row)
        tx.event(row["id"], prev, str(S.SENDING), row["attempts"] + 1, reason)

    # ------------------------------------------------------------ outcomes

    def transition(self, delivery: Delivery, to: DeliveryState, reason: str, *, owner: str | None = None,
                   attempted: bool = False, due_at: float | None = None, receipt: Receipt | None = None,
                   response: str | None = None, error: str | None = None, maybe_sent: bool | None = None,
                   fallbacks: list[dict] | None = None) -> bool:
        with self._tx() as tx:
            return self._record(tx, delivery, to, reason, owner=owner, attempted=attempted, due_at=due_at,
                                receipt=receipt, response=response, error=error, maybe_sent=maybe_sent,
                                fallbacks=fallbacks)

    @contextmanager
    def pinned(self) -> Iterator[None]:
        yield  # no connections to share

    def transition_many(self, outcomes: list[Outcome], *, owner: str) -> list[bool]:
        if not outcomes:
            return []
        with self._tx() as tx:
            return [self._record(tx, d, to, reason, owner=owner, **opts) for d, to, reason, opts in outcomes]

    def _record(self, tx: _Tx, delivery: Delivery, to: DeliveryState, reason: str, *, owner: str | None = None,
                attempted: bool = False, due_at: float | None = None, receipt: Receipt | None = None,
                response: str | None = None, error: str | None = None, maybe_sent: bool | None = None,
                fallbacks: list[dict] | None = None) -> bool:
        row = tx.delivery(delivery.id)
        if row is None:
            return False
        if owner is not None and (row["lease_owner"] != owner or row["state"] != str(S.SENDING)):
            return False
        now = tx.now
        row.update(state=str(to), updated_at=now, lease_owner=None, lease_until=None)
        if attempted:  # under our lease nobody else changes the row, so the count is known here
            row["attempts"] = delivery.attempts + 1 if owner is not None else row["attempts"] + 1
        if due_at is not None:
            row.update(due_at=due_at, enqueued_at=None)
        if receipt is not None:
            row.update(receipt=receipt.to_dict(), remote_id=receipt.remote_id, remote_url=receipt.url)
        if error is not None:
            row["last_error"] = error[:2000]
        if maybe_sent is not None:
            row["maybe_sent"] = maybe_sent
        if to in _SETTLES:
            row["settled_at"] = now
        tx.put_delivery(row)
        if fallbacks:
            already: dict[str, Row] = {}  # channels that had the message before this outcome
            for ch in dict.fromkeys(f["channel"] for f in fallbacks):
                holder = tx.holder(once_key(delivery.announcement_id, delivery.update_id, ch))
                if holder is not None:
                    already[ch] = holder
            made: set[str] = set()
            for f in fallbacks:
                if f["channel"] not in already and f["channel"] not in made:
                    self._new_delivery(tx, delivery.announcement_id, delivery.update_id, f)
                    made.add(f["channel"])
            reason += "".join(f"; fallback {ch} already has it ({x['id']}, {x['state']}): not sent again"
                              for ch, x in already.items())
        tx.event(delivery.id, str(delivery.state), str(to), delivery.attempts + (1 if attempted else 0), reason,
                 response)
        return True

    def force(self, delivery_id: str, to: DeliveryState, reason: str, *, actor: str,
              from_states: Iterable[DeliveryState], due_at: float | None = None, maybe_sent: bool | None = None,
              deadline_at: float | None = None, remote_url: str | None = None, note: str | None = None,
              set_note: bool = False) -> bool:
        with self._tx() as tx:
            row = tx.delivery(delivery_id)
            if row is None:
                raise NotFound(f"no delivery {delivery_id!r}")
            if row["state"] not in {str(s) for s in from_states}:
                return False
            prev = row["state"]
            row.update(state=str(to), updated_at=tx.now, lease_owner=None, lease_until=None)
            if due_at is not None:
                row.update(due_at=due_at, enqueued_at=None)
            if maybe_sent is not None:
                row["maybe_sent"] = maybe_sent
            if deadline_at is not None:
                row["deadline_at"] = deadline_at
            if remote_url is not None:
                row["remote_url"] = remote_url
            if set_note:
                row["last_error"] = note
            if to in (S.CANCELLED, S.RETRACTED, S.DELIVERED):
                row["settled_at"] = tx.now
            elif to in (S.PENDING, S.RETRYING):
                row["settled_at"] = None
            tx.put_delivery(row)
            tx.event(delivery_id, prev, str(to), row["attempts"], f"{reason} (by {actor})")
            return True

    # ------------------------------------------------------------ per-item progress

    def item_states(self, delivery_id: str) -> dict[str, tuple[str, str | None]]:
        with self._lock:
            return {item: (r["state"], r["detail"]) for item, r in self._items.get(delivery_id, {}).items()}

    def mark_items(self, delivery_id: str, items: Iterable[str], state: str, detail: str | None = None) -> None:
        self.mark_items_and_extend(delivery_id, None, [(items, state, detail)])

    def mark_items_and_extend(self, delivery_id: str, owner: str | None, marks: Iterable[ItemMark],
                              lease: float | None = None) -> bool | None:
        with self._tx() as tx:
            rows: dict[str, Row] = {}
            for items, state, detail in marks:
                for item in items:
                    rows[item] = {"delivery_id": delivery_id, "item": item, "state": state, "detail": detail,
                                  "at": tx.now}
            if rows and tx.delivery(delivery_id) is None:
                raise NotFound(f"no delivery {delivery_id!r}")  # the SQL ledger's foreign key refuses it too
            for row in rows.values():
                tx.put("delivery_items", row)
            if lease is None:
                return None
            leased = tx.delivery(delivery_id)
            if leased is None or leased["lease_owner"] != owner or leased["state"] != str(S.SENDING):
                return False
            leased["lease_until"] = tx.now + lease
            tx.put_delivery(leased)
            return True

    # ------------------------------------------------------------ the sweep

    def expire_leases(self) -> list[str]:
        with self._tx() as tx:
            now = tx.now
            expired = [dict(r) for r in self._deliveries.values()
                       if r["state"] == str(S.SENDING) and r["lease_until"] is not None and r["lease_until"] < now]
            for row in expired:
                owner = row["lease_owner"]
                freed = {"lease_owner": None, "lease_until": None, "unstarted_by": None, "due_at": now,
                         "enqueued_at": None, "updated_at": now}
                if row.get("unstarted_by") is not None and row.get("unstarted_by") == owner:
                    back = S.RETRYING if row["attempts"] else S.PENDING
                    row.update(state=str(back), **freed)
                    tx.put_delivery(row)
                    tx.event(row["id"], str(S.SENDING), str(back), row["attempts"],
                             f"lease of {owner} expired before its send started: never attempted, due again")
                    continue
                row.update(state=str(S.RETRYING), maybe_sent=True, attempts=row["attempts"] + 1, **freed)
                tx.put_delivery(row)
                tx.event(row["id"], str(S.SENDING), str(S.RETRYING), row["attempts"],
                         f"lease of {owner} expired: worker lost mid-send; outcome will be checked")
            return [r["id"] for r in expired]

    def forget_enqueued(self) -> int:
        with self._tx() as tx:
            rows = [dict(r) for r in self._deliveries.values()
                    if S(r["state"]) in CLAIMABLE and r["enqueued_at"] is not None]
            for row in rows:
                row["enqueued_at"] = None
                tx.put_delivery(row)
            return len(rows)

    def open_incidents(self) -> int:
        with self._lock:  # as SQL compares it: a NULL status is not "!= 'resolved'"
            return sum(1 for a in self._announcements.values()
                       if a["kind"] == "incident" and a["resolved_at"] is None and a["retracted_at"] is None
                       and a["status"] is not None and a["status"] != "resolved")

    def promote_scheduled(self, *, hold_kinds: Iterable[str] = (), limit: int = 500) -> list[str]:
        hold = set(hold_kinds)
        with self._tx() as tx:
            rows = sorted((dict(r) for r in self._deliveries.values()
                           if r["state"] == str(S.SCHEDULED) and r["due_at"] is not None and r["due_at"] <= tx.now
                           and self._announcements[r["announcement_id"]]["kind"] not in hold),
                          key=lambda r: (r["due_at"], r["id"]))[:limit]
            for row in rows:
                row.update(state=str(S.PENDING), updated_at=tx.now, enqueued_at=None)
                tx.put_delivery(row)
                tx.event(row["id"], str(S.SCHEDULED), str(S.PENDING), row["attempts"], "publish time reached")
            return [r["id"] for r in rows]

    def take_due(self, requeue_after: float, limit: int = 500) -> list[tuple[str, str, float]]:
        with self._tx() as tx:
            now = tx.now
            rows = sorted((dict(r) for r in self._deliveries.values()
                           if S(r["state"]) in CLAIMABLE and (r["due_at"] is None or r["due_at"] <= now)
                           and (r["enqueued_at"] is None or r["enqueued_at"] < now - requeue_after)),
                          key=lambda r: (-float("inf") if r["due_at"] is None else r["due_at"], r["id"]))[:limit]
            for row in rows:
                row["enqueued_at"] = now
                tx.put_delivery(row)
            return [(r["id"], r["channel"], r["due_at"] or now) for r in rows]

    # ------------------------------------------------------------ audit

    def audit(self, actor: str, action: str, target: str | None = None, details: dict | None = None) -> None:
        with self._tx() as tx:
            tx.put("audit_log", {"at": tx.now, "actor": actor, "action": action, "target": target,
                                 "details": details or {}})

    def audit_entries(self) -> list[Row]:
        with self._lock:
            return copy.deepcopy(self._audit)
