"""``broadcaster reconcile``: a break-glass journal imported into the real ledger.

The journal is read back into its ledger twin (``breakglass_journal.open_twin``); each
announcement the ledger does not have yet is created through :meth:`Ledger.create_announcement`
with the twin's ids — so the one-delivery-per-(message, channel) key applies to break-glass posts
as to any other, fallbacks included — then what the twin knows of each delivery is added:

- delivered stays delivered (with its provider receipt), never re-posted;
- unknown stays unknown for an operator, fallen back stays fallen back (its fallback is imported
  too);
- anything else — failed, incomplete (subscriber lists not reached), still waiting — becomes
  pending for the workers, with the per-item progress break-glass made (addresses mailed,
  thread parts posted) so they skip what already landed; one whose send may have landed (the
  run stopped mid-send) becomes a "maybe sent" retry, looked up or left unknown by the engine.

Running it twice changes nothing the second time.
"""

from __future__ import annotations

from typing import Any

from .breakglass_journal import open_twin
from .config import Settings
from .errors import NotFound
from .ledger import Ledger
from .ledger.direct import DirectReceipt, record_receipts
from .ledger.journal import Journal
from .ledger.memory import MemoryLedger
from .models import Delivery, DeliveryState

S = DeliveryState
#: what the twin's state becomes in the ledger (anything else: pending, for the workers)
KEPT = {S.DELIVERED: S.DELIVERED, S.UNKNOWN: S.UNKNOWN, S.FALLEN_BACK: S.FALLEN_BACK}
#: the announcement columns an import copies
FIELDS = ("id", "kind", "title", "body", "url", "severity", "components", "tags", "channels", "variants", "status",
          "window_starts_at", "window_ends_at", "component_states", "allowed_channels", "next_update_at")


def reconcile(ledger: Ledger, settings: Settings, journal: Journal, *, actor: str = "reconcile") -> dict[str, int]:
    """Import every announcement of ``journal`` the ledger lacks. Returns counts of deliveries by
    what they became (``delivered``, ``unknown``, ``fallen_back``, ``pending``), of announcements
    imported and of those ``skipped`` (already in the ledger)."""
    twin = open_twin(journal, follow=False)
    counts = {"announcements": 0, "delivered": 0, "unknown": 0, "fallen_back": 0, "pending": 0, "skipped": 0}
    for ann_id in twin.announcement_ids():
        try:
            ledger.get_announcement(ann_id)
            counts["skipped"] += 1
            continue
        except NotFound:
            pass
        _import(ledger, settings, twin, ann_id, actor, counts)
        ledger.audit(actor, "announcement.reconcile", ann_id, {"journal": str(journal.path)})
        counts["announcements"] += 1
    return counts


def _import(ledger: Ledger, settings: Settings, twin: MemoryLedger, ann_id: str, actor: str,
            counts: dict[str, int]) -> None:
    row = twin.announcement_row(ann_id)
    now = ledger.clock()
    dels = twin.deliveries_of(ann_id)
    rows: list[dict[str, Any]] = []
    for d in dels:
        state = KEPT.get(d.state, S.PENDING)
        at = d.settled_at or d.updated_at
        reason = f"published directly (break-glass) at {at:.0f}: {d.state}" + (
            f" — {d.last_error}" if d.last_error else "")
        rows.append({"id": d.id, "channel": d.channel, "state": state, "due_at": now, "fallback_of": d.fallback_of,
                     "deadline_at": now + settings.deadline_for(row["kind"], d.channel)
                     if d.channel in settings.channels else now, "reason": reason})
        counts[str(state)] += 1
    fields = {k: row.get(k) for k in FIELDS} | {"publish_at": None}
    ledger.create_announcement(fields, rows, actor=row.get("author") or actor)
    record_receipts(ledger, [DirectReceipt(d.id, d.receipt.to_dict(), d.attempts, d.settled_at or d.updated_at)
                             for d in dels if d.receipt is not None and d.state in (S.DELIVERED, S.UNKNOWN)])
    for d in dels:
        _progress(ledger, twin, d)
        if KEPT.get(d.state) is None and (d.maybe_sent or d.state == S.SENDING):
            ledger.force(d.id, S.RETRYING, "break-glass may have sent it: checked before any second send",
                         actor=actor, from_states=[S.PENDING], due_at=now, maybe_sent=True)


def _progress(ledger: Ledger, twin: MemoryLedger, d: Delivery) -> None:
    """The delivery's item progress, one write per (state, detail)."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for item, (state, detail) in twin.item_states(d.id).items():
        groups.setdefault((state, detail), []).append(item)
    for (state, detail), items in groups.items():
        ledger.mark_items(d.id, items, state, detail)
