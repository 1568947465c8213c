"""Draining one channel: the worker's batched hot path.

A wake-up names a channel; the worker claims up to ``worker.batch`` due deliveries of it in one
conditional statement (:meth:`~broadcaster.ledger.ports.DeliveryLedger.claim_batch`), asks the breaker and the
shared rate limiter once for the batch (taking as many permits as it will use), sends them
over the channel's kept-alive client (one after another, or concurrently with
``worker.batch_threads``), and records the outcomes. It repeats while full batches keep coming.

Why this keeps every promise of a single attempt (``engine.attempt``): the guarantees live on
each delivery row, not on the message. Each claimed delivery has its own lease, idempotency key
(its id), ``maybe_sent`` rule, deadline, per-item progress and its own ``delivery.decide``
outcome — the very functions ``engine.attempt`` uses.

What a kill leaves: the batch claim leases every delivery it takes and starts only the first
(the one sent first — claimed alone, it is exactly a single attempt's claim). Just before each
later delivery's remote call the drain makes one durable write
(:meth:`~broadcaster.ledger.ports.DeliveryLedger.start_send`): the outcomes of the batch so
far, then that delivery's start mark. A worker killed mid-batch
therefore leaves the delivery it was sending (with threads: those in flight, and any finished
since the last write) ``sending`` and started — the sweep makes it ``retrying`` with
``maybe_sent``, exactly where a killed single attempt leaves its one delivery — while the
deliveries it never started go back to being due, never attempted, and are sent normally once.
The rest of the outcomes (the last send's, and those settled without a send) are recorded in
one transaction at the end of the batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import delivery as policy_mod
from .channels.base import Channel
from .config import ChannelPolicy
from .engine import (
    LedgerProgress,
    _breaker_refused,
    _enqueue_new_fallbacks,
    _ids,
    _nothing_sent,
    _rate_limited,
    _render,
    _send_one,
    _shared,
    lease_for,
    limit_at_provider,
    settled_before_sending,
    with_fallbacks,
)
from .ledger.repository import default_owner
from .models import Announcement, Delivery, DeliveryState, Post
from .resilience.breaker import Permit
from .runtime import Runtime

log = logging.getLogger(__name__)
S = DeliveryState

#: a drain stops after this many seconds of full batches (the rest is left to the next wake-up
#: or the sweep) so one busy channel cannot hold a worker thread for ever
DRAIN_BUDGET = 10.0

#: rate-limit windows shorter than this (seconds) get batches of at most a quarter of the limit
SHORT_WINDOW = 5.0

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _senders(runtime: Runtime) -> ThreadPoolExecutor:
    """The process's send threads (``worker.batch_threads`` per worker thread); a send that
    waited too long for one is given back unsent (see :func:`_send_all`)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            w = runtime.settings.worker
            _pool = ThreadPoolExecutor(max_workers=min(512, w.concurrency * w.batch_threads),
                                       thread_name_prefix="bc-send")
        return _pool


def batch_size(runtime: Runtime, channel: str) -> int:
    """How many deliveries one claim takes: ``worker.batch``, but never more than the channel's
    rate limit lets out in one window (a limit of 1/s means a batch of 1) — and on a window
    shorter than :data:`SHORT_WINDOW`, no more than a quarter of it. The permits are taken for the
    whole batch when it is claimed and its sends follow one after another; on a short window a
    large batch's last sends reach the provider after the next window's first ones were granted
    (measured: 16 in one sliding second at a 10/s limit with batches of 8, though never more than
    10 were granted), more than the window's margin (``engine.limit_at_provider``) absorbs."""
    size = runtime.settings.worker.batch
    pol = runtime.settings.policy_for(channel)
    if pol.rate_limit:
        limit, per = pol.rate_limit
        size = min(size, limit if per >= SHORT_WINDOW else limit // 4)
    return max(1, size)


@dataclass
class _Outcome:
    delivery: Delivery
    state: DeliveryState
    reason: str
    options: dict[str, Any]


@dataclass
class DrainReport:
    claimed: int = 0
    states: dict[str, int] = field(default_factory=dict)

    def word(self) -> str:
        """A word for logs: ``drained 8 (delivered 7, retrying 1)``, or ``idle``."""
        if not self.claimed:
            return "idle"
        return f"drained {self.claimed} (" + ", ".join(f"{k} {v}" for k, v in sorted(self.states.items())) + ")"


def drain(runtime: Runtime, channel: str, owner: str | None = None, *, budget: float = DRAIN_BUDGET) -> DrainReport:
    """Send what is due on ``channel`` in batches until a claim comes back short, the breaker or
    the rate limit holds some back, or ``budget`` seconds have passed."""
    report = DrainReport()
    if channel not in runtime.settings.channels:
        log.warning("drain for unknown channel %r ignored", channel)
        return report
    owner = owner or default_owner()
    try:  # built (imports, client) before anything is claimed: that time is not the leases'
        runtime.channel(channel)
    except Exception:  # each delivery meets the same error again in _render, and is given back
        log.warning("channel %s could not be built before claiming", channel, exc_info=True)
    size = batch_size(runtime, channel)
    lease = lease_for(runtime, channel)
    # before the first claim: a wake-up published from now on is not coalesced into this drain
    # (it may be for rows committed after this drain's claims; see wakeup_redis.py)
    runtime.drain_started(channel)
    with runtime.deliveries.pinned():  # the claims, start marks and outcomes share one connection
        _drain_loop(runtime, channel, owner, size, lease, budget, report)
    return report


def _drain_loop(runtime: Runtime, channel: str, owner: str, size: int, lease: float, budget: float,
                report: DrainReport) -> None:
    started = time.monotonic()
    while True:
        claimed = runtime.deliveries.claim_batch(channel, owner, lease, size, start_first=True)
        if not claimed:
            break
        report.claimed += len(claimed)
        held_back = _one_batch(runtime, claimed, owner, lease, report, full=len(claimed) >= size)
        if len(claimed) < size or held_back:
            break
        if time.monotonic() - started >= budget:
            # more may be due: hand the rest to a fresh wake-up (the queue's turn for the others
            # first) rather than to the sweep's requeue_after; the id only names the channel
            runtime.enqueue([(claimed[-1][0].id, channel)])
            break


def _one_batch(runtime: Runtime, claimed: list[tuple[Delivery, Announcement]], owner: str, lease: float,
               report: DrainReport, *, full: bool = False) -> bool:
    """One claimed batch of one channel, end to end. Returns whether the breaker or the rate limit
    held any back (then the drain stops: what is left is not due yet).

    ``full``: the claim came back full, so more may be due. Once the breaker and the rate limit
    let the whole batch go, a wake-up for the channel is handed on *before* sending (coalesced:
    nothing is published while a drain is queued), so an idle worker thread claims the next
    batch while this one sends: a backlog on a slow provider is worked by as many threads as
    it has full batches, as when every announcement published its own wake-up."""
    channel = claimed[0][0].channel
    pol = runtime.settings.policy_for(channel)
    now = runtime.clock()
    recorder = _Recorder(runtime, owner, report)

    def finisher(d: Delivery, ann: Announcement) -> Callable[..., str]:
        def finish(state: DeliveryState, reason: str, **kw: Any) -> str:
            state, reason, fallbacks = with_fallbacks(pol, d, ann, state, reason, kw.pop("fall_back", False))
            if fallbacks is not None:
                kw["fallbacks"] = fallbacks
            recorder.add(_Outcome(d, state, reason, kw))
            return str(state)
        return finish

    finishes = {d.id: finisher(d, ann) for d, ann in claimed}
    live = [(d, ann) for d, ann in claimed if settled_before_sending(runtime, d, ann, now, finishes[d.id]) is None]
    held_back = False
    go: list[tuple[Delivery, Channel[Any], Post, Permit]] = []
    if live:
        permit = _shared(runtime.breaker.allow, Permit(True), channel, pol.breaker.failures, pol.breaker.cooldown)
        if not permit.allowed:
            held_back = True
            for d, _ann in live:
                _breaker_refused(d, permit, pol, now, finishes[d.id])
            live = []
        elif permit.probe and len(live) > 1:  # half-open: one probe at a time, the rest shortly after
            held_back = True
            for d, _ann in live[1:]:
                finishes[d.id](S.RETRYING if d.attempts else S.PENDING,
                               "circuit breaker half-open: another delivery is probing the channel",
                               due_at=now + 1.0)
            live = live[:1]
        if live and pol.rate_limit:
            granted, wait = _shared(runtime.limiter.acquire_many, (len(live), 0.0), channel,
                                    *limit_at_provider(pol.rate_limit),
                                    len(live))
            for d, _ann in live[granted:]:
                held_back = True
                _rate_limited(d, pol, now, wait, finishes[d.id])
            live = live[:granted]
        if full and live and not held_back:
            runtime.enqueue([(claimed[-1][0].id, channel)])
        for d, ann in live:
            try:
                prepared = _render(runtime, d, ann, pol, permit, finishes[d.id])
            except Exception as exc:  # nothing was sent: give the claim back, never "maybe sent"
                log.exception("delivery %s: internal error before sending", d.id, extra=_ids(d))
                _nothing_sent(runtime, d, exc, pol, finishes[d.id])
                continue
            if not isinstance(prepared, str):
                go.append((d, *prepared))
    _send_all(runtime, go, owner, lease, pol, finishes, now, recorder, started=claimed[0][0].id)
    recorder.flush()
    return held_back


def _send_all(runtime: Runtime, go: list[tuple[Delivery, Channel[Any], Post, Permit]], owner: str, lease: float,
              pol: ChannelPolicy, finishes: dict[str, Callable[..., str]], claimed_at: float,
              recorder: _Recorder, started: str | None = None) -> None:
    """Each delivery's one remote attempt: one after another in this thread, or over the
    process's send threads when ``worker.batch_threads`` > 1. Each starts with its start mark
    (:meth:`_Recorder.start`); a delivery whose lease is no longer this worker's is not sent.

    A send starts only while it can still end inside its lease (``lease_for`` = 2 × timeout +
    ``scheduler.lease``): once ``timeout`` + half of ``scheduler.lease`` has passed since the
    claim, the rest of the batch is given back unsent, due at once, rather than left waiting
    for the sweep. (A start mark refused — the lease ran out, the sweep may have given the
    delivery back — is never followed by a send either.) ``started``: the delivery the claim
    itself started (the batch's first); it needs no mark of its own."""
    cutoff = claimed_at + pol.timeout + runtime.settings.scheduler.lease / 2

    def one(item: tuple[Delivery, Channel[Any], Post, Permit]) -> str:
        d, adapter, post, permit = item
        if runtime.clock() > cutoff:
            return finishes[d.id](S.RETRYING if d.attempts else S.PENDING,
                                  "not sent: its batch ran long; given back, due now", due_at=runtime.clock())
        try:
            if d.id != started and not recorder.start(d):
                return "lease_lost"
        except Exception:  # the ledger: nothing was sent, and the lease expiry gives it back unstarted
            log.exception("delivery %s: could not mark its send started; not sent", d.id, extra=_ids(d))
            return "error"
        try:
            return _send_one(runtime, d, adapter, post, permit, LedgerProgress(runtime, d, owner, lease), pol,
                             finishes[d.id])
        except Exception:  # recording failed (the ledger): the lease expiry settles it
            log.exception("delivery %s: could not finish the attempt", d.id, extra=_ids(d))
            return "error"

    if runtime.settings.worker.batch_threads > 1 and len(go) > 1:
        list(_senders(runtime).map(one, go))
    else:  # measured faster on a small, busy machine: the sends are mostly Python, and the GIL is one
        for item in go:
            one(item)


class _Recorder:
    """A batch's outcomes on their way to the ledger, and each send's start mark.

    Outcomes wait here until the next write: the start mark of the next send (one transaction:
    the outcomes so far, then the mark — so a send is recorded before the next one starts) or
    :meth:`flush` at the end of the batch. Wake-ups they call for (a short retry, new
    fallbacks) are published once, after the batch's last write. Thread-safe: with
    ``worker.batch_threads`` several sends start at once."""

    def __init__(self, runtime: Runtime, owner: str, report: DrainReport):
        self.runtime = runtime
        self.owner = owner
        self.report = report
        self._lock = threading.Lock()
        self._waiting: list[_Outcome] = []
        self._soon: list[tuple[str, str]] = []
        self._latest_due = 0.0
        self._fallen_back: list[Delivery] = []

    def add(self, outcome: _Outcome) -> None:
        with self._lock:
            self._waiting.append(outcome)

    def _take(self) -> list[_Outcome]:
        with self._lock:
            taken, self._waiting = self._waiting, []
            return taken

    def _give_back(self, taken: list[_Outcome]) -> None:
        """Outcomes a failed write did not record: the next write (or flush) tries them again."""
        with self._lock:
            self._waiting[:0] = taken

    def start(self, d: Delivery) -> bool:
        """The outcomes so far, then ``d``'s start mark, in one write. False: ``d``'s lease is
        no longer ours — it must not be sent."""
        taken = self._take()
        try:
            started, oks = self.runtime.deliveries.start_send(d.id, self.owner, _rows(taken))
        except BaseException:
            self._give_back(taken)
            raise
        self._recorded(taken, oks)
        if not started:
            log.warning("delivery %s: lease lost before its send started; not sent", d.id, extra=_ids(d))
            with self._lock:
                self.report.states["lease_lost"] = self.report.states.get("lease_lost", 0) + 1
        return started

    def flush(self) -> None:
        """Every outcome not yet recorded, in one transaction; then the wake-ups of the batch."""
        taken = self._take()
        if taken:
            self._recorded(taken, self.runtime.deliveries.transition_many(_rows(taken), owner=self.owner))
        for d in self._fallen_back:
            _enqueue_new_fallbacks(self.runtime, d)
        if self._soon:  # one wake-up for the lot: by then every one of them is due
            self.runtime.enqueue(self._soon, countdown=max(0.0, self._latest_due - self.runtime.clock()))
        self._fallen_back, self._soon, self._latest_due = [], [], 0.0

    def _recorded(self, outcomes: list[_Outcome], oks: list[bool]) -> None:
        runtime, states = self.runtime, self.report.states
        with self._lock:
            for o, ok in zip(outcomes, oks, strict=True):
                d, state = o.delivery, o.state
                if not ok:
                    log.warning("delivery %s: lease lost before recording %s", d.id, state, extra=_ids(d, state))
                    states["lease_lost"] = states.get("lease_lost", 0) + 1
                    continue
                states[str(state)] = states.get(str(state), 0) + 1
                log.info("delivery %s to %s: %s (%s)", d.id, d.channel, state, o.reason[:200], extra=_ids(d, state))
                if o.options.get("fallbacks"):
                    self._fallen_back.append(d)
                due = o.options.get("due_at")
                if state in (S.RETRYING, S.PENDING) and due is not None \
                        and due - runtime.clock() <= policy_mod.SHORT_WAIT:
                    self._soon.append((d.id, d.channel))
                    self._latest_due = max(self._latest_due, due)


def _rows(outcomes: list[_Outcome]) -> list[tuple[Delivery, DeliveryState, str, dict[str, Any]]]:
    return [(o.delivery, o.state, o.reason, o.options) for o in outcomes]
