"""What a break-glass journal holds, and the ledger twin read back from it.

A journal (``var/breakglass.jsonl`` by default) is one JSON-lines file with two kinds of record:

- ``{"type": "ledger", …}`` — every transaction of the journalled
  :class:`~broadcaster.ledger.memory.MemoryLedger` break-glass runs the engine over (claims,
  outcomes, item progress), fsynced before anything is sent on the strength of it;
- ``{"type": "announcement", …}`` — a note per announcement: the Idempotency-Key, the request
  as given (with component names resolved) and its digest, so a re-run with the same key but a
  different announcement is refused.

Journals written before break-glass ran over the twin hold ``announcement`` notes and one
``delivery`` record per outcome instead; :func:`open_twin` turns those into ledger rows, so a
re-run or ``reconcile`` treats them like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .ledger.journal import Journal
from .ledger.memory import DELIVERY_COLUMNS, MemoryLedger
from .ledger.ports import once_key
from .models import DeliveryState

S = DeliveryState
DEFAULT_JOURNAL = "var/breakglass.jsonl"
NOTE = "announcement"


def notes(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The first note of each announcement (a re-run adds none)."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("type") == NOTE:
            out.setdefault(r["id"], r)
    return out


def open_twin(journal: Journal, *, clock: Callable[[], float] = time.time, follow: bool = True) -> MemoryLedger:
    """The ledger twin as ``journal`` left it (see :meth:`MemoryLedger.replay`), with any
    announcement an older break-glass journalled in its own format imported as rows."""
    twin = MemoryLedger.replay(journal, clock=clock, follow=follow)
    records = journal.records()
    known = set(twin.announcement_ids())
    for ann_id, note in notes(records).items():
        outcomes = [r for r in records if r.get("type") == "delivery" and r.get("announcement_id") == ann_id]
        if ann_id not in known and outcomes:
            twin.restore(_older_rows(note, outcomes, records))
    return twin


def _older_rows(note: dict[str, Any], outcomes: list[dict[str, Any]],
                records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """An older journal's announcement as ledger rows: its latest outcome per channel (a
    delivered one is final), each address or thread part that landed (final too)."""
    req, ann_id, at = note["request"], note["id"], note["at"]
    window = req.get("window") or {}
    rows: list[tuple[str, dict[str, Any]]] = [("announcements", {
        "id": ann_id, "kind": req["kind"], "title": req["title"], "body": req.get("body") or "", "url": req.get("url"),
        "severity": req.get("severity"), "components": list(req.get("components") or []),
        "tags": list(req.get("tags") or []), "channels": list(note.get("channels") or []),
        "variants": req.get("variants") or {}, "status": note.get("status"), "publish_at": None,
        "window_starts_at": window.get("starts_at"), "window_ends_at": window.get("ends_at"),
        "author": note.get("author"), "created_at": at, "updated_at": at, "retracted_at": None, "resolved_at": None,
        "allowed_channels": None, "component_states": None})]
    latest: dict[str, dict[str, Any]] = {}
    for r in outcomes:
        prev = latest.get(r["delivery_id"])
        if prev is None or prev.get("state") != "delivered":
            latest[r["delivery_id"]] = r
    for d in latest.values():
        state = {"delivered": S.DELIVERED, "unknown": S.UNKNOWN}.get(d["state"], S.FAILED)
        receipt = d.get("receipt") or None
        error = d.get("error")
        rows.append(("deliveries", dict.fromkeys(DELIVERY_COLUMNS) | {
            "id": d["delivery_id"], "announcement_id": ann_id, "channel": d["channel"], "state": str(state),
            "attempts": d.get("attempts", 0), "due_at": d["at"], "maybe_sent": state == S.UNKNOWN,
            "receipt": receipt, "remote_id": (receipt or {}).get("remote_id"), "remote_url": (receipt or {}).get("url"),
            "last_error": error, "created_at": at, "updated_at": d["at"], "settled_at": d["at"],
            "once_key": once_key(ann_id, None, d["channel"])}))
        rows.append(("delivery_events", {
            "delivery_id": d["delivery_id"], "at": d["at"], "from_state": None, "to_state": str(state),
            "attempt": d.get("attempts", 0), "response": None,
            "reason": f"published directly (break-glass): {d['state']}" + (f" — {error}" if error else "")}))
    items: dict[tuple[str, str], tuple[str, str | None, float]] = {}
    for r in records:
        if r.get("type") == "delivery" and r.get("delivery_id") in latest and r.get("items"):
            for item, (state, detail) in r["items"].items():
                if items.get((r["delivery_id"], item), ("",))[0] not in ("done", "refused"):  # landed is final
                    items[(r["delivery_id"], item)] = (state, detail, r["at"])
    rows += [("delivery_items", {"delivery_id": did, "item": item, "state": state, "detail": detail, "at": at})
             for (did, item), (state, detail, at) in items.items()]
    return rows
