"""Break-glass publishing: when our own API, broker or ledger is down, ``broadcaster post --direct``
sends straight from the CLI to the configured channels — through the worker's own pipeline.

The announcement and its deliveries are written to a memory twin of the ledger
(:class:`~broadcaster.ledger.memory.MemoryLedger`) journalled to an fsynced file, and each
delivery goes through :func:`broadcaster.engine.attempt` exactly as a worker sends it: the same
claim and lease, rendering and signature, breaker and rate limit, look-up before a re-send,
per-item progress and :func:`broadcaster.delivery.decide` — the one retry policy. Break-glass only
waits where a worker would hand the delivery back to the ledger: it sleeps until the next one
is due (at most ``MAX_WAIT`` at a time and ``BUDGET`` in all), then attempts again. What is due
later is left in the journal for ``reconcile`` (``breakglass_reconcile.py``), which imports it
into the real ledger under the same ids and the same one-delivery-per-channel key.

Ids are derived from the Idempotency-Key, so re-running the same ``--direct`` command replays
the journal and carries on: nothing delivered is sent again, a send the last run may have made
is looked up or left ``unknown`` (as the engine decides for an expired lease), and what failed
is tried again. Every adapter gets the worker's own collaborators — the status site's trust
files (so a break-glass post's signature is published with it), subscribers, SMS opt-outs and
subscriber endpoints, read from the ledger when it can be read (``breakglass_ports.py``); email
channels with ``lists:`` mail the workers' audience (``breakglass_audience.py``); each line says
what its channel could not reach. Among deliveries due together, the status site goes first: the
other posts carry a Verify link to the signature it publishes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import components as component_names, engine, promises, templates
from .breakglass_audience import SubscriberSource, check_file, find_source, source_for
from .breakglass_journal import DEFAULT_JOURNAL, NOTE, notes, open_twin
from .breakglass_ports import Reach
from .channels.ports import ChannelPorts
from .channels.registry import channel_class
from .config import Settings
from .errors import InvalidRequest
from .ledger.journal import Journal
from .ledger.memory import MemoryLedger
from .ledger.repository import default_owner
from .models import CLAIMABLE, SETTLED, Delivery, DeliveryState, Receipt
from .resilience import MemoryBreaker, MemoryRateLimiter
from .runtime import Runtime
from .service import AnnouncementIn, promised_variants, validation_problem

__all__ = ["BUDGET", "DEFAULT_JOURNAL", "MAX_WAIT", "DirectOutcome", "DirectResult", "Journal", "publish_direct"]

S = DeliveryState
MAX_WAIT = 30.0  # the longest single wait break-glass sits through; a later retry is left to the workers
BUDGET = 120.0  # the longest it waits in all before leaving the rest to the workers


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]


@dataclass
class DirectOutcome:
    """One delivery's result. ``incomplete``: what could be sent was sent, but part of the
    audience (subscriber lists) was not reached — never reported as delivered."""

    channel: str
    delivery_id: str
    state: str
    attempts: int = 0
    receipt: Receipt | None = None
    error: str | None = None
    note: str | None = None  # what its ports rest on: where the subscribers or endpoints came from…
    items: dict[str, tuple[str, str | None]] = field(default_factory=dict)


@dataclass
class DirectResult:
    announcement_id: str
    outcomes: list[DirectOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every channel has it (a fallen-back one through its fallback, listed too)."""
        return all(o.state in (str(S.DELIVERED), str(S.FALLEN_BACK)) for o in self.outcomes)


def publish_direct(settings: Settings, payload: dict, *, key: str, journal: Journal, author: str = "break-glass",
                   clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                   channel_io: dict | None = None, on_progress: Callable[[DirectOutcome], None] | None = None,
                   subscribers_file: str | None = None, max_wait: float = MAX_WAIT,
                   budget: float = BUDGET, on_start: Callable[[], None] | None = None) -> DirectResult:
    """Send ``payload`` to its channels now through the engine, over the journalled twin.
    ``on_start`` is called once the input has been checked, just before anything is sent: a
    refused request says only why (no "sending…" first)."""
    req = templates.expand(settings, _validated(payload))
    channels = list(dict.fromkeys(req.channels)) or list(settings.route(req.kind))
    unknown = [c for c in channels if c not in settings.channels]
    if not channels or unknown:
        raise InvalidRequest(f"unknown channel(s): {', '.join(unknown)}" if unknown else
                             f"no channels given and no route for {req.kind!r}", field="channels")
    components = component_names.resolve(req.components, settings)
    request = {**req.model_dump(mode="json"), "components": list(components)}
    asked = _digest("request", json.dumps(request, sort_keys=True))
    ann_id = "ann_direct_" + _digest("ann", key)
    io = dict(channel_io or {})
    mailing = [n for n in channels if _lists(settings, n)]
    subscriber_file = check_file(subscribers_file) if mailing else None  # a bad file is refused before anything
    if on_start is not None:
        on_start()
    reach = Reach(settings, channels, ChannelPorts.pick(io))
    try:
        source = find_source(reach.ledger, reach.why, subscriber_file) if mailing else None
        with journal.exclusive():
            twin = open_twin(journal, clock=clock)
            if ann_id in twin.announcement_ids():
                _same_request(journal, ann_id, asked, key)
                _again(twin, ann_id, settings)
            else:
                _create(twin, journal, settings, req, request, channels, components, ann_id=ann_id, key=key,
                        asked=asked, author=author)
            audience = _Audience(settings, twin, ann_id, source, reach)
            # the SQL ledger (when it can be read) serves the worker's ports; deliveries live in the twin
            runtime = Runtime(settings, ledger=reach.ledger, deliveries=twin, breaker=MemoryBreaker(clock),
                              limiter=MemoryRateLimiter(clock), clock=clock, http=io.get("http"),
                              ports=reach.ports(audience.port() if source is not None else None))
            try:
                run = _Run(runtime, twin, ann_id, audience, sleep=sleep, max_wait=max_wait, budget=budget,
                           on_progress=on_progress)
                return DirectResult(ann_id, run.all())
            finally:
                runtime.close()
    finally:
        reach.close()


def _validated(payload: dict) -> AnnouncementIn:
    from pydantic import ValidationError

    try:
        return AnnouncementIn.model_validate(payload)
    except ValidationError as exc:
        raise validation_problem(exc) from None


def _lists(settings: Settings, channel: str) -> tuple[str, ...]:
    cfg = settings.channels[channel]
    return tuple(getattr(cfg, "lists", ()) or ()) if getattr(cfg, "kind", None) == "email" else ()


def _create(twin: MemoryLedger, journal: Journal, settings: Settings, req: AnnouncementIn, request: dict[str, Any],
            channels: list[str], components: list[str], *, ann_id: str, key: str, asked: str, author: str) -> None:
    """The note, then the announcement and one delivery per channel, as the intake writes them."""
    now = twin.clock()
    status = req.status or {"incident": "investigating", "maintenance": "scheduled"}.get(req.kind)
    promise = promises.resolve(req.next_update_at, now)
    promises.check(req.kind, status, promise, now)
    journal.append({"type": NOTE, "id": ann_id, "key": key, "at": now, "author": author, "request": request,
                    "request_digest": asked, "channels": channels, "status": status})
    fields = {
        "id": ann_id, "kind": req.kind, "title": req.title, "body": promises.with_promise(req.body, promise),
        "url": req.url, "severity": req.severity, "next_update_at": promise,
        "components": components, "tags": req.tags, "channels": channels, "status": status,
        "component_states": component_names.explicit_states(req.component_states, components, settings) or None,
        "variants": promised_variants(req, promise),
        "window_starts_at": float(req.window.starts_at) if req.window else None,
        "window_ends_at": float(req.window.ends_at) if req.window else None,
    }
    twin.create_announcement(fields, [
        {"id": "dlv_direct_" + _digest("dlv", key, ch), "channel": ch, "due_at": now,
         "deadline_at": now + settings.deadline_for(req.kind, ch), "reason": "published directly (break-glass)"}
        for ch in channels], actor=author)


def _same_request(journal: Journal, ann_id: str, asked: str, key: str) -> None:
    """A key names one announcement: a re-run must ask for the same one (as the API's
    Idempotency-Key does)."""
    note = notes(journal.records()).get(ann_id) or {}
    if note.get("request_digest") not in (None, asked):
        raise InvalidRequest(f"the idempotency key {key!r} was used for a different announcement in {journal.path}; "
                             "choose another key (or repeat the first command as it was)", field="idempotency_key")


def _again(twin: MemoryLedger, ann_id: str, settings: Settings) -> None:
    """A re-run of the same command: a send the last run was making when it stopped may have
    landed (as after a worker's lease expired: looked up, or left unknown, never re-posted
    blindly); what failed is tried again with a fresh deadline, as an operator retry does."""
    now = twin.clock()
    kind = twin.get_announcement(ann_id).kind
    for d in twin.deliveries_of(ann_id):
        if d.state == S.SENDING:
            twin.force(d.id, S.RETRYING, "an earlier break-glass run stopped while sending: it may have landed",
                       actor="break-glass", from_states=[S.SENDING], due_at=now, maybe_sent=True)
        elif d.state == S.FAILED:
            twin.force(d.id, S.PENDING, "break-glass run again", actor="break-glass", from_states=[S.FAILED],
                       due_at=now, deadline_at=now + settings.deadline_for(kind, d.channel))


class _Audience:
    """Which subscriber lists this run can reach (the same for every email channel: a list is
    reached or not whatever channel names it), and the subscriber port the email adapters get;
    for other channels, what :class:`~.breakglass_ports.Reach` says their ports reach."""

    def __init__(self, settings: Settings, twin: MemoryLedger, ann_id: str, source: SubscriberSource | None,
                 reach: Reach):
        self.settings, self.source, self.reach = settings, source, reach
        self.announcement = twin.get_announcement(ann_id)
        wanted = [x for ch in self.announcement.channels if ch in settings.channels for x in _lists(settings, ch)]
        self.reached: list[str] = []
        self.missed: dict[str, str] = {}
        if source is not None:
            self.reached, self.missed = source.split(wanted, self.announcement.kind, settings)

    def port(self) -> Callable[..., Any]:
        assert self.source is not None
        return source_for(self.source, self.announcement, self.settings, self.reached)

    def of(self, channel: str) -> tuple[str | None, str | None]:
        """``(note, not_reached)`` for ``channel``: where its subscribers (or endpoints…) came
        from, and which of its lists were not reached."""
        lists = _lists(self.settings, channel)
        if not lists:
            return self.reach.of(channel)
        if self.source is None:
            return None, None
        reached = [x for x in dict.fromkeys(lists) if x in self.reached]
        note = f"subscribers of {', '.join(reached)} from {self.source.description}" if reached else None
        missed = "; ".join(f"lists: {x} NOT reached: {self.missed[x]}" for x in dict.fromkeys(lists) if x in self.missed)
        return note, missed or None

    def nobody(self, channel: str) -> bool:
        """Nothing at all to mail: no static recipients and no list reached."""
        note, missed = self.of(channel)
        return missed is not None and note is None and not getattr(self.settings.channels[channel], "recipients", ())


class _Run:
    """One ``post --direct``: attempts the announcement's deliveries (fallbacks included, as
    the engine adds them) in the order they fall due — among those due together, a channel that
    publishes signatures first — waiting in between, and reports each once it is settled or left
    for later."""

    def __init__(self, runtime: Runtime, twin: MemoryLedger, ann_id: str, audience: _Audience, *,
                 sleep: Callable[[float], None], max_wait: float, budget: float,
                 on_progress: Callable[[DirectOutcome], None] | None):
        self.runtime, self.twin, self.ann_id, self.audience = runtime, twin, ann_id, audience
        self.sleep, self.max_wait, self.on_progress = sleep, max_wait, on_progress
        self.clock = runtime.clock
        self.deadline = self.clock() + budget
        self.owner = f"break-glass:{default_owner()}"
        self.settled_before = {d.id for d in twin.deliveries_of(ann_id) if d.state in SETTLED}
        self.incomplete: set[str] = set()  # delivered to all it could reach, but lists were not reached
        self.unreached: set[str] = set()  # nobody to mail at all: failed without sending
        self.left: dict[str, float] = {}  # delivery id → seconds until it is due, when left for later
        self.started: set[str] = set()
        # the status site first: every other post carries a Verify link to the signature it publishes
        settings = runtime.settings
        self.signs = {n for n, cfg in settings.channels.items()
                      if getattr(channel_class(cfg.kind), "carries_signatures", False)}

    def all(self) -> list[DirectOutcome]:
        out: dict[str, DirectOutcome] = {}
        while True:
            live = []
            for d in self.twin.deliveries_of(self.ann_id):
                if d.id in out:
                    continue
                if d.state in CLAIMABLE and d.id not in self.left:
                    live.append(d)
                else:
                    out[d.id] = self._report(d)
            if not live:
                return list(out.values())
            self._next(min(live, key=lambda x: (x.due_at or 0.0, x.channel not in self.signs, x.id)))

    def _next(self, d: Delivery) -> None:
        if d.id not in self.started:
            self.started.add(d.id)
            if self.audience.nobody(d.channel):
                _note, missed = self.audience.of(d.channel)
                self.twin.force(d.id, S.FAILED, f"{missed}; nothing was sent", actor="break-glass",
                                from_states=list(CLAIMABLE), note=missed, set_note=True)
                self.unreached.add(d.id)
                return
        wait = max(0.0, (d.due_at or 0.0) - self.clock())
        if wait > self.max_wait or self.clock() + wait > self.deadline:
            self.left[d.id] = wait
            return
        if wait:
            self.sleep(wait)
        word = engine.attempt(self.runtime, d.id, owner=self.owner, channel=d.channel)
        if word == "skipped" and not wait:  # not ours to send (another run holds it, or it changed)
            self.left[d.id] = 0.0
        elif word == str(S.DELIVERED):
            _note, missed = self.audience.of(d.channel)
            if missed and self.twin.force(d.id, S.FAILED, missed, actor="break-glass", from_states=[S.DELIVERED],
                                          note=missed, set_note=True):
                self.incomplete.add(d.id)

    def _report(self, d: Delivery) -> DirectOutcome:
        note, missed = self.audience.of(d.channel)
        state = "incomplete" if d.id in self.incomplete else str(d.state)
        error: str | None
        if d.state == S.DELIVERED:
            error = "already delivered (journal)" if d.id in self.settled_before else None
        elif d.id in self.incomplete:
            error = missed
        elif d.id in self.unreached:
            error = f"{missed}; nothing was sent"
        else:  # the recorded reason: the policy's words (redacted by the engine), fuller than the error alone
            events = self.twin.events_of(d.id)
            error = events[-1].reason if events else d.last_error
        if d.id in self.left:
            error = (f"{error}; next try in {self.left[d.id]:.0f} s — run this again then, or `broadcaster "
                     "reconcile` hands it to the workers")
        outcome = DirectOutcome(d.channel, d.id, state, d.attempts, d.receipt, error, note,
                                self.twin.item_states(d.id))
        if self.on_progress:
            self.on_progress(outcome)
        return outcome
