"""Break-glass publishing: when our own API, broker or ledger is down, ``broadcaster post --direct``
sends straight from the CLI to the configured channels — same adapters, rendering and
idempotency keys — and appends every outcome to a local journal. ``broadcaster reconcile``
later imports the journal into the ledger without re-posting anything that landed; whatever
did not land becomes pending, so the recovered system finishes the job.

Ids are derived from the Idempotency-Key, so re-running the same ``--direct`` command after a
crash reuses the same provider keys (Mastodon Idempotency-Key, Bluesky record keys, webhook-id)
and skips channels the journal already shows as delivered.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import components as component_names
from .breakglass_audience import SubscriberSource, find_source, source_for
from .channels import channel_class
from .channels.base import MemoryProgress
from .channels.ports import ChannelPorts
from .compose import compose, message_for
from .config import Settings
from .errors import AmbiguousDelivery, DeliveryError, InvalidRequest, PermanentError, RateLimited
from .models import Announcement, DeliveryState, Message, Receipt, Window
from .service import AnnouncementIn, validation_problem

S = DeliveryState
DEFAULT_JOURNAL = "var/breakglass.jsonl"
MAX_WAIT = 30.0  # longest provider wait honoured inline; longer ones are left for reconcile


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]


@dataclass
class DirectOutcome:
    """One channel's result. ``incomplete``: what could be sent was sent, but part of the
    audience (subscriber lists) was not reached — never reported as delivered."""

    channel: str
    delivery_id: str
    state: str
    attempts: int = 0
    receipt: Receipt | None = None
    error: str | None = None
    note: str | None = None  # where the subscribers came from
    items: dict[str, tuple[str, str | None]] = field(default_factory=dict)


@dataclass
class DirectResult:
    announcement_id: str
    outcomes: list[DirectOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.state == str(S.DELIVERED) for o in self.outcomes)


class Journal:
    """Append-only JSON Lines, fsynced per record: it must survive the crash it is there for."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise InvalidRequest(f"{self.path}: line {n} is not valid JSON (a torn write?)") from None
        return out

    def delivered(self) -> set[str]:
        return {r["delivery_id"] for r in self.records()
                if r.get("type") == "delivery" and r.get("state") == "delivered"}

    def items(self) -> dict[str, dict[str, tuple[str, str | None]]]:
        """Per delivery, the latest per-item progress (mail recipients, thread parts) journalled."""
        out: dict[str, dict[str, tuple[str, str | None]]] = {}
        for r in self.records():
            if r.get("type") == "delivery" and r.get("items"):
                mine = out.setdefault(r["delivery_id"], {})
                for item, (state, detail) in r["items"].items():
                    if mine.get(item, ("",))[0] not in ("done", "refused"):  # landed is final
                        mine[item] = (state, detail)
        return out


def publish_direct(settings: Settings, payload: dict, *, key: str, journal: Journal, author: str = "break-glass",
                   clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                   channel_io: dict | None = None, attempts: int = 3,
                   on_progress: Callable[[DirectOutcome], None] | None = None,
                   subscribers_file: str | None = None) -> DirectResult:
    """Send ``payload`` to its channels now, journalling each outcome. Email channels with
    ``lists:`` reach the worker's audience from the ledger or ``subscribers_file`` (see
    ``breakglass_audience.py``), and say which — or that they could not."""
    try:
        req = AnnouncementIn.model_validate(payload)
    except Exception as exc:  # pydantic ValidationError
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            raise validation_problem(exc) from None
        raise
    channels = list(dict.fromkeys(req.channels)) or list(settings.route(req.kind))
    unknown = [c for c in channels if c not in settings.channels]
    if not channels or unknown:
        raise InvalidRequest(f"unknown channel(s): {', '.join(unknown)}" if unknown else
                             f"no channels given and no route for {req.kind!r}", field="channels")
    now = clock()
    ann_id = "ann_direct_" + _digest("ann", key)
    components = component_names.resolve(req.components, settings)
    ann = Announcement(
        id=ann_id, kind=req.kind, title=req.title, body=req.body, url=req.url, severity=req.severity,
        components=tuple(components), channels=tuple(channels),
        component_states=component_names.explicit_states(req.component_states, components, settings),
        tags=tuple(req.tags),
        variants={k: v.model_dump(exclude_none=True) for k, v in req.variants.items()},
        status=req.status or {"incident": "investigating", "maintenance": "scheduled"}.get(req.kind),
        window=Window(float(req.window.starts_at), float(req.window.ends_at)) if req.window else None,
        author=author, created_at=now,
    )
    already = journal.delivered()
    progress_before = journal.items()
    mailing = [n for n in channels if getattr(settings.channels[n], "kind", None) == "email"
               and getattr(settings.channels[n], "lists", ())]
    source = find_source(settings, subscribers_file) if mailing else None
    journal.append({"type": "announcement", "id": ann_id, "key": key, "at": now, "author": author,
                    "request": {**req.model_dump(mode="json"), "components": list(ann.components)},
                    "channels": channels, "status": ann.status})
    result = DirectResult(ann_id)
    message = message_for(settings, ann)
    try:
        for name in channels:
            delivery_id = "dlv_direct_" + _digest("dlv", key, name)
            if delivery_id in already:
                outcome = DirectOutcome(name, delivery_id, "delivered", error="already delivered (journal)")
            else:
                progress = MemoryProgress()
                for item, (state, detail) in progress_before.get(delivery_id, {}).items():
                    progress.mark([item], state, detail)
                outcome = _send_to(settings, name, delivery_id, message, attempts, clock, sleep, dict(channel_io or {}),
                                   progress, source)
                journal.append({"type": "delivery", "announcement_id": ann_id, "delivery_id": delivery_id,
                                "channel": name, "state": outcome.state, "attempts": outcome.attempts, "at": clock(),
                                "receipt": outcome.receipt.to_dict() if outcome.receipt else None,
                                "error": outcome.error, "note": outcome.note,
                                "items": {k: list(v) for k, v in outcome.items.items()}})
            result.outcomes.append(outcome)
            if on_progress:
                on_progress(outcome)
    finally:
        if source is not None:
            source.close()
    return result


def _send_to(settings: Settings, name: str, delivery_id: str, message: Message, attempts: int, clock, sleep,
             channel_io: dict, progress: MemoryProgress, source: SubscriberSource | None) -> DirectOutcome:
    """One channel; for an email channel with lists, first decide which lists can be reached."""
    cfg = settings.channels[name]
    lists = tuple(getattr(cfg, "lists", ()) or ()) if getattr(cfg, "kind", None) == "email" else ()
    if not lists or source is None:
        return _send_one(settings, name, delivery_id, message, attempts, clock, sleep, channel_io, progress)
    reached, missed = source.split(lists, message.announcement.kind, settings)
    channel_io["subscribers"] = source_for(source, message.announcement, settings, reached)
    note = f"subscribers of {', '.join(reached)} from {source.description}" if reached else None
    not_reached = "; ".join(f"lists: {n} NOT reached: {why}" for n, why in missed.items()) or None
    if not reached and not getattr(cfg, "recipients", ()):
        return DirectOutcome(name, delivery_id, "failed", 0, error=not_reached, note=note)
    outcome = _send_one(settings, name, delivery_id, message, attempts, clock, sleep, channel_io, progress)
    outcome.note = note
    if not_reached:
        outcome.error = "; ".join(x for x in (not_reached, outcome.error) if x)
        if outcome.state == "delivered":
            outcome.state = "incomplete"
    return outcome


def _send_one(settings: Settings, name: str, delivery_id: str, message: Message, attempts: int,
              clock, sleep, channel_io: dict, progress: MemoryProgress) -> DirectOutcome:
    outcome = _attempts(settings, name, delivery_id, message, attempts, clock, sleep, channel_io, progress)
    outcome.items = progress.states()
    return outcome


def _attempts(settings: Settings, name: str, delivery_id: str, message: Message, attempts: int,
              clock, sleep, channel_io: dict, progress: MemoryProgress) -> DirectOutcome:
    cfg = settings.channels[name]
    policy = settings.policy_for(name)
    cls = channel_class(cfg.kind)
    if cls is None:
        return DirectOutcome(name, delivery_id, "failed", 0, error=f"unknown channel kind {cfg.kind!r}")
    channel = cls(name, cfg, clock=clock, timeout=policy.timeout, on_too_long=policy.on_too_long,
                  http=channel_io.get("http"), ports=ChannelPorts.pick(channel_io))
    maybe_sent = False
    try:
        post = compose(channel, message, delivery_id=delivery_id, settings=settings)
        for attempt in range(1, attempts + 1):
            try:
                if maybe_sent and channel.can_lookup:
                    found = channel.lookup(post, key=delivery_id)
                    if found is not None:
                        return DirectOutcome(name, delivery_id, "delivered", attempt, found)
                receipt = channel.send(post, key=delivery_id, progress=progress)
                return DirectOutcome(name, delivery_id, "delivered", attempt, receipt)
            except PermanentError as exc:
                return DirectOutcome(name, delivery_id, "failed", attempt, error=str(exc))
            except AmbiguousDelivery as exc:
                if channel.public and not (channel.idempotent or channel.can_lookup):
                    return DirectOutcome(name, delivery_id, "unknown", attempt, error=str(exc))
                maybe_sent = True
                last = str(exc)
                wait = min(MAX_WAIT, 2.0 ** attempt)
            except RateLimited as exc:
                last = str(exc)
                wait = exc.retry_after if exc.retry_after is not None else 2.0 ** attempt
                if wait > MAX_WAIT:
                    break
            except DeliveryError as exc:
                last = str(exc)
                wait = min(MAX_WAIT, 2.0 ** attempt)
            if attempt < attempts:
                sleep(wait)
        return DirectOutcome(name, delivery_id, "unknown" if maybe_sent else "failed", attempts, error=last)
    except DeliveryError as exc:
        return DirectOutcome(name, delivery_id, "failed", 0, error=str(exc))
    finally:
        channel.close()


def reconcile(ledger, settings: Settings, journal: Journal, *, actor: str = "reconcile") -> dict[str, int]:
    """Import journal records into the ledger. Delivered stays delivered (never re-posted);
    unknown stays unknown for an operator; failed and incomplete (subscriber lists not reached)
    become pending so the workers finish them — with the per-item progress break-glass made
    (addresses mailed, thread parts posted), so the workers skip what already landed.
    Running it twice changes nothing the second time."""
    from .errors import NotFound
    from .ledger.direct import DirectReceipt, record_receipts

    records = journal.records()
    progress = journal.items()
    anns = {r["id"]: r for r in records if r.get("type") == "announcement"}
    latest: dict[str, dict] = {}
    for r in records:
        if r.get("type") == "delivery":
            prev = latest.get(r["delivery_id"])
            if prev is None or prev.get("state") != "delivered":  # delivered is final
                latest[r["delivery_id"]] = r
    counts = {"announcements": 0, "delivered": 0, "unknown": 0, "pending": 0, "skipped": 0}
    now = ledger.clock()
    for ann_id, rec in anns.items():
        try:
            ledger.get_announcement(ann_id)
            counts["skipped"] += 1
            continue
        except NotFound:
            pass
        req = rec["request"]
        fields = {"id": ann_id, "kind": req["kind"], "title": req["title"], "body": req.get("body") or "",
                  "url": req.get("url"), "severity": req.get("severity"), "components": req.get("components") or [],
                  "tags": req.get("tags") or [], "channels": rec["channels"], "variants": req.get("variants") or {},
                  "status": rec.get("status"), "publish_at": None,
                  "window_starts_at": (req.get("window") or {}).get("starts_at"),
                  "window_ends_at": (req.get("window") or {}).get("ends_at")}
        rows = []
        for d in (x for x in latest.values() if x["announcement_id"] == ann_id):
            state = {"delivered": S.DELIVERED, "unknown": S.UNKNOWN}.get(d["state"], S.PENDING)
            rows.append({"id": d["delivery_id"], "channel": d["channel"], "state": state, "due_at": now,
                         "deadline_at": now + settings.deadline_for(req["kind"], d["channel"])
                         if d["channel"] in settings.channels else now,
                         "reason": f"published directly (break-glass) at {d['at']:.0f}: {d['state']}"
                                   + (f" — {d['error']}" if d.get("error") else "")})
            counts[state.value] += 1
        ledger.create_announcement(fields, rows, actor=rec.get("author") or actor)
        record_receipts(ledger, [
            DirectReceipt(d["delivery_id"], d["receipt"], d.get("attempts", 1), d["at"])
            for d in latest.values() if d["announcement_id"] == ann_id and d.get("receipt")
            and d.get("state") in ("delivered", "unknown")])
        for delivery_id, items in progress.items():
            if delivery_id in latest and latest[delivery_id]["announcement_id"] == ann_id:
                groups: dict[tuple[str, str | None], list[str]] = {}
                for item, (item_state, detail) in items.items():
                    groups.setdefault((item_state, detail), []).append(item)
                for (item_state, detail), names in groups.items():
                    ledger.mark_items(delivery_id, names, item_state, detail)
        ledger.audit(actor, "announcement.reconcile", ann_id, {"journal": str(journal.path)})
        counts["announcements"] += 1
    return counts
