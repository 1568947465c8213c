"""One delivery attempt, end to end: claim → deadline → breaker → rate limit → render →
(look up) → send → record. Celery's ``deliver`` task is a thin wrapper around :func:`attempt`.

The ledger row, not the broker message, decides whether a send already happened: a duplicate
or late task finds the row settled or leased and does nothing.

It reaches the ledger only through the delivery port, ``runtime.deliveries``
(:class:`~broadcaster.ledger.ports.DeliveryLedger`): the SQL ledger in a running system, the
journalled memory twin in break-glass (``breakglass.py``) — one pipeline, one policy
(:func:`broadcaster.delivery.decide`), wherever it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import compose, delivery as policy_mod
from .channels._reply import UNTHREADED
from .channels.base import Channel, io_reset, io_started
from .config import ChannelPolicy, redact
from .errors import AmbiguousDelivery, ChannelUnavailable, DeliveryError, PermanentError
from .ledger.ports import DeliveryLedger
from .ledger.repository import default_owner
from .models import Announcement, Delivery, DeliveryState, Message, Post, Receipt
from .resilience.breaker import Permit
from .runtime import Runtime

log = logging.getLogger(__name__)
S = DeliveryState

#: what building a message from the text raises when the text itself is the problem (a header
#: with a line break, a value the payload cannot hold); any other error before sending is ours
#: and is retried
CONTENT_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, LookupError)


class LedgerProgress:
    """:class:`~broadcaster.channels.base.Progress` on the ledger. Marks also renew the lease, so
    a long mailing is not mistaken for a dead worker — in the same transaction, and at most every
    ``RENEW_EVERY`` seconds (and at least four times per lease), not on every mark."""

    RENEW_EVERY = 2.0

    def __init__(self, runtime: Runtime, delivery: Delivery, owner: str, lease: float):
        import time

        self._clock = time.monotonic  # paces renewals only; the lease itself is on the ledger's clock
        self.ledger: DeliveryLedger = runtime.deliveries
        self.delivery_id = delivery.id
        self.owner = owner
        self.lease = lease
        self.renew_every = min(self.RENEW_EVERY, lease / 4)
        self._renewed_at: float | None = None  # time.monotonic() of the last renewal

    def states(self):
        return self.ledger.item_states(self.delivery_id)

    def mark(self, items, state, detail=None):
        self.mark_all([(items, state, detail)])

    def pinned(self):
        """Meanwhile this thread's marks share one ledger connection (a mailing's writer)."""
        return self.ledger.pinned()

    def mark_all(self, marks):
        """Several marks (``(items, state, detail)``, applied in order) in one durable write."""
        now = self._clock()
        renew = self._renewed_at is None or now - self._renewed_at >= self.renew_every
        self.ledger.mark_items_and_extend(self.delivery_id, self.owner, marks, self.lease if renew else None)
        if renew:
            self._renewed_at = now


def build_message(runtime: Runtime, d: Delivery, ann: Announcement | None = None) -> Message:
    """The message delivery ``d`` carries, read from the ledger (its update and the thread of
    earlier receipts on its channel), composed as the preview and break-glass compose it."""
    ledger = runtime.deliveries
    ann = ann if ann is not None else ledger.get_announcement(d.announcement_id)
    upd = ledger.get_update(d.update_id) if d.update_id else None
    thread: tuple[Receipt, ...] = ()
    if upd is not None:
        thread = tuple(ledger.thread_receipts(d.announcement_id, d.channel, before=d.created_at))
    return compose.message_for(runtime.settings, ann, upd, thread)


def fallback_targets(fallback: tuple[str, ...] | list[str], ann: Announcement) -> tuple[list[str], list[str]]:
    """Split a channel's fallbacks into those this announcement may reach and those outside the
    channels its author's token was limited to (the intake refuses such posts; this holds for
    announcements accepted before it did, or under a configuration changed since)."""
    limit = ann.allowed_channels
    if limit is None:
        return list(fallback), []
    return [c for c in fallback if c in limit], [c for c in fallback if c not in limit]


def with_fallbacks(pol: ChannelPolicy, d: Delivery, ann: Announcement, state: DeliveryState, reason: str,
                   fall_back: bool) -> tuple[DeliveryState, str, list[dict[str, Any]] | None]:
    """The outcome to record when the policy says ``fall_back``: the fallback deliveries to add
    (only to channels the announcement's token may reach — a fallen-back delivery with none
    left fails instead), and the reason naming those left out."""
    if not fall_back:
        return state, reason, None
    targets, outside = fallback_targets(pol.fallback, ann)
    if outside:
        reason += (f"; not falling back to {', '.join(outside)}: the token that posted this "
                   "announcement may not post there")
        if not targets and state == S.FALLEN_BACK:
            state = S.FAILED
    return state, reason, [{"channel": fb, "fallback_of": d.id, "deadline_at": d.deadline_at,
                            "reason": f"fallback for {d.channel} ({d.id})"} for fb in targets]


def lease_for(runtime: Runtime, channel: str) -> float:
    return runtime.settings.policy_for(channel).timeout * 2 + runtime.settings.scheduler.lease


def attempt(runtime: Runtime, delivery_id: str, owner: str | None = None, channel: str | None = None) -> str:
    """Try delivery ``delivery_id`` once. Returns a word for logs: the new state or ``skipped``.
    ``channel`` (carried by the task message) saves a read before the claim."""
    owner = owner or default_owner()
    ledger = runtime.deliveries
    name = channel
    if name is None or name not in runtime.settings.channels:
        d0 = _peek(runtime, delivery_id)
        if d0 is None:
            return "skipped"
        name = d0.channel
    lease = lease_for(runtime, name)
    claimed = ledger.claim_with_announcement(delivery_id, owner, lease)
    if claimed is None:
        return "skipped"
    d, ann = claimed
    settings = runtime.settings
    pol = settings.policy_for(d.channel)
    now = runtime.clock()

    def finish(state, reason, **kw) -> str:
        state, reason, fallbacks = with_fallbacks(pol, d, ann, state, reason, kw.pop("fall_back", False))
        if state in (S.FAILED, S.UNKNOWN) and kw.get("error") is None:
            # no provider error to quote (a deadline, a post that may have landed, a channel
            # gone): the reason is what an operator must read next to it (status NOTE, page, API)
            kw["error"] = reason
        ok = ledger.transition(d, state, reason, owner=owner, fallbacks=fallbacks, **kw)
        if not ok:
            log.warning("delivery %s: lease lost before recording %s", d.id, state, extra=_ids(d, state))
            return "lease_lost"
        log.info("delivery %s to %s: %s (%s)", d.id, d.channel, state, reason[:200], extra=_ids(d, state))
        if fallbacks:
            _enqueue_new_fallbacks(runtime, d)
        due = kw.get("due_at")
        if state in (S.RETRYING, S.PENDING) and due is not None and due - runtime.clock() <= policy_mod.SHORT_WAIT:
            runtime.enqueue([(d.id, d.channel)], countdown=max(0.0, due - runtime.clock()))
        return str(state)

    settled = settled_before_sending(runtime, d, ann, now, finish)
    if settled is not None:
        return settled

    try:
        prepared = _prepare(runtime, d, ann, pol, now, finish)
    except Exception as exc:  # nothing was sent: give the claim back, never "maybe sent"
        log.exception("delivery %s: internal error before sending", d.id, extra=_ids(d))
        return _nothing_sent(runtime, d, exc, pol, finish)
    if isinstance(prepared, str):
        return prepared
    adapter, post, permit = prepared

    return _send_one(runtime, d, adapter, post, permit, LedgerProgress(runtime, d, owner, lease), pol, finish)


def _send_one(runtime: Runtime, d: Delivery, adapter: Channel[Any], post: Post, permit: Permit,
              progress: LedgerProgress, pol: ChannelPolicy, finish: Callable[..., str]) -> str:
    """The one remote attempt of a claimed, rendered delivery (look-up first when an earlier
    attempt may have landed) and its outcome. Runs on any thread: the I/O marker is per thread."""
    io_reset()
    try:
        if d.maybe_sent:
            if adapter.can_lookup:
                found = adapter.lookup(post, key=d.key)
                if found is not None:
                    _shared(runtime.breaker.success, None, d.channel)
                    return finish(S.DELIVERED, "found on the channel by look-up: the earlier attempt had landed",
                                  receipt=found, attempted=True, maybe_sent=False)
            elif not adapter.idempotent and adapter.public:
                return finish(S.UNKNOWN, "an earlier attempt may have been posted and this channel offers no way "
                                         "to check; not re-sent — check the channel", maybe_sent=True)
        receipt = adapter.send(post, key=d.key, progress=progress)
    except DeliveryError as exc:
        return _after_error(runtime, d, exc, pol, adapter, finish)
    except Exception as exc:  # an adapter bug: the request may have gone out…
        if adapter.marks_io and not io_started():  # …unless nothing left yet (see channels.base)
            if isinstance(exc, CONTENT_ERRORS):
                return _content_failed(runtime, d, exc, finish, "could not be built for sending")
            log.exception("delivery %s: internal error in %s before sending", d.id, d.channel, extra=_ids(d))
            return _nothing_sent(runtime, d, exc, pol, finish)
        log.exception("delivery %s: unexpected error in %s adapter", d.id, d.channel, extra=_ids(d))
        err = AmbiguousDelivery(f"internal error in the {adapter.kind} adapter ({type(exc).__name__})")
        return _after_error(runtime, d, err, pol, adapter, finish)
    if permit.failures or permit.probe or permit.opened_at is not None:
        _shared(runtime.breaker.success, None, d.channel)  # a healthy closed breaker needs no reset round trip
    note = "delivered" + (" (provider reported an identical earlier post)" if receipt.extra.get("duplicate") else "")
    if receipt.extra.get(UNTHREADED):  # an update whose thread was deleted: said in its events
        note += f"; {receipt.extra[UNTHREADED]}"
    return finish(S.DELIVERED, note, receipt=receipt, attempted=True, maybe_sent=False)


def settled_before_sending(runtime: Runtime, d: Delivery, ann: Announcement, now: float,
                           finish: Callable[..., str]) -> str | None:
    """A claimed delivery that must not be sent at all (deadline passed, announcement retracted,
    channel gone): its recorded outcome; else None."""
    settings = runtime.settings
    if d.deadline_at is not None and now > d.deadline_at:
        if d.maybe_sent:  # an earlier attempt may have landed: never report that as "not delivered"
            return finish(S.UNKNOWN, "deadline passed; not re-sent late, but an earlier attempt may have landed — "
                                     "check the channel", maybe_sent=True)
        return finish(S.FAILED, "deadline passed before it could be sent; not delivered late")
    if ann.retracted_at:
        return finish(S.CANCELLED, "announcement was retracted before this was sent")
    if d.channel not in settings.channels or not settings.channels[d.channel].enabled:
        return finish(S.FAILED, f"channel {d.channel!r} is no longer configured or is disabled")
    return None


def limit_at_provider(rate: tuple[int, float]) -> tuple[int, float]:
    """The rate limit as the shared limiter applies it: ``limit`` per a window a little longer
    than the provider's (5 %, at most 0.25 s). Permits are granted at the Redis clock and the
    requests reach the provider a few milliseconds later, each a little differently; without the
    margin, a send delayed at the end of one window and a prompt one at the start of the next
    were 11 in one second at the provider at a 10/s limit. The price: 10/s becomes 9.5/s."""
    limit, per = rate
    return limit, per + min(0.25, per * 0.05)


def _shared(fn, default, *args):
    """Call the shared Redis state (breaker, rate limit) failing open: when Redis is unreachable,
    announcements still go out (providers' own limits are still honoured from their answers)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001
        log.warning("shared resilience state unavailable (%s: %s); continuing without it", type(exc).__name__, exc)
        return default


def _prepare(runtime: Runtime, d: Delivery, ann: Announcement, pol: ChannelPolicy, now: float,
             finish: Callable[..., str]) -> str | tuple[Channel[Any], Post, Permit]:
    """Breaker, rate limit and rendering: everything before the one remote attempt. Returns the
    recorded outcome (a str) when the attempt must not happen now, else (channel, post, permit)."""

    # breaker: do not even try a channel that is down; fall back once it has been down too long
    permit = _shared(runtime.breaker.allow, Permit(True), d.channel, pol.breaker.failures, pol.breaker.cooldown)
    if not permit.allowed:
        return _breaker_refused(d, permit, pol, now, finish)

    # shared rate limit: wait in the ledger, not in the worker
    if pol.rate_limit:
        wait = _shared(runtime.limiter.acquire, 0.0, d.channel, *limit_at_provider(pol.rate_limit))
        if wait > 0:
            return _rate_limited(d, pol, now, wait, finish)
    return _render(runtime, d, ann, pol, permit, finish)


def _breaker_refused(d: Delivery, permit: Permit, pol: ChannelPolicy, now: float, finish: Callable[..., str]) -> str:
    """The channel's breaker is open: retry at the probe time, or fall back once it has been
    open for ``fallback_after``."""
    if permit.opened_at is not None and policy_mod.breaker_fallback_due(permit.opened_at, now, pol):
        return finish(S.FALLEN_BACK, f"circuit breaker open for {now - permit.opened_at:.0f}s "
                                     f"(fallback_after {pol.fallback_after:.0f}s)", fall_back=True)
    dec = policy_mod.decide(ChannelUnavailable(retry_after=permit.retry_after), attempt=d.attempts, now=now,
                            deadline_at=d.deadline_at, policy=pol, idempotent=False, can_lookup=False)
    return finish(dec.state, dec.reason, due_at=dec.due_at, fall_back=dec.fall_back)


def _rate_limited(d: Delivery, pol: ChannelPolicy, now: float, wait: float, finish: Callable[..., str]) -> str:
    """No slot in the shared rate limit: back to the ledger, due when the next slot frees."""
    assert pol.rate_limit is not None
    return finish(S.RETRYING if d.attempts else S.PENDING, f"rate limit {pol.rate_limit[0]} per "
                  f"{pol.rate_limit[1]:.0f}s reached; waiting {wait:.2f}s", due_at=now + wait)


def _render(runtime: Runtime, d: Delivery, ann: Announcement, pol: ChannelPolicy, permit: Permit,
            finish: Callable[..., str]) -> str | tuple[Channel[Any], Post, Permit]:
    """The post this delivery sends (pure rendering, after the ledger reads its message needs),
    or the recorded outcome when the text cannot become one."""
    channel = runtime.channel(d.channel)
    message = build_message(runtime, d, ann)  # ledger reads: an outage here is retried, not a content error
    try:
        rendered = channel.render(message)
    except PermanentError as exc:
        return _content_failed(runtime, d, exc, finish, "cannot be rendered")
    except DeliveryError as exc:
        return _after_error(runtime, d, exc, pol, channel, finish)
    except CONTENT_ERRORS as exc:
        return _content_failed(runtime, d, exc, finish, "cannot be rendered")
    return channel, compose.stamp(channel, rendered, message, delivery_id=d.id, settings=runtime.settings), permit


def _content_failed(runtime: Runtime, d: Delivery, exc: Exception, finish, what: str) -> str:
    """The text cannot become this channel's message (too long, a line break in a mail header…):
    nothing was sent and trying again cannot help, so the delivery fails at once — not counted
    against the channel's breaker (the provider is fine) and never "maybe sent"."""
    secrets = runtime.secrets_of(d.channel)
    detail = str(exc) if isinstance(exc, PermanentError) else f"{type(exc).__name__}: {exc}"
    detail = redact(detail, secrets) or detail
    return finish(S.FAILED, f"{what} for {d.channel}: {detail}; nothing was sent", error=detail,
                  maybe_sent=False)


def _nothing_sent(runtime: Runtime, d: Delivery, exc: Exception, pol, finish) -> str:
    """An internal failure (not the content's) before anything left: the claim goes back."""
    return finish(S.RETRYING if d.attempts else S.PENDING,
                  f"internal error before sending ({type(exc).__name__}); nothing was sent, will retry",
                  due_at=runtime.clock() + policy_mod.backoff(d.attempts + 1, pol))


def _after_error(runtime: Runtime, d: Delivery, exc: DeliveryError, pol, channel, finish) -> str:
    if policy_mod.counts_against_breaker(exc):
        _shared(runtime.breaker.failure, None, d.channel, pol.breaker.failures, pol.breaker.cooldown)
    secrets = runtime.secrets_of(d.channel)
    dec = policy_mod.decide(exc, attempt=d.attempts + 1, now=runtime.clock(), deadline_at=d.deadline_at, policy=pol,
                            idempotent=bool(channel.idempotent), can_lookup=bool(channel.can_lookup),
                            public=bool(channel.public))
    return finish(dec.state, redact(dec.reason, secrets), due_at=dec.due_at, attempted=dec.attempted,
                  response=redact(exc.response, secrets), error=redact(str(exc), secrets),
                  maybe_sent=dec.maybe_sent, fall_back=dec.fall_back)


def _ids(d: Delivery, state=None) -> dict:
    """Structured log fields (see broadcaster.logs)."""
    out = {"delivery_id": d.id, "announcement_id": d.announcement_id, "channel": d.channel}
    if state is not None:
        out["state"] = str(state)
    return out


def _peek(runtime: Runtime, delivery_id: str) -> Delivery | None:
    from .errors import NotFound

    try:
        return runtime.deliveries.get_delivery(delivery_id)
    except NotFound:
        log.warning("task for unknown delivery %s ignored", delivery_id)
        return None


def _enqueue_new_fallbacks(runtime: Runtime, original: Delivery) -> None:
    fresh = [x for x in runtime.deliveries.deliveries_of(original.announcement_id)
             if x.fallback_of == original.id and x.state == S.PENDING]
    runtime.enqueue([(x.id, x.channel) for x in fresh])


def retract_one(runtime: Runtime, delivery_id: str) -> str:
    """Delete one delivered post where the channel can, and mark the delivery retracted.

    ``retracted`` alone means the post is gone. Where it is not — the channel cannot delete
    (e-mail, Slack and generic webhooks), or the delete was refused — the row says so in its
    note (``last_error``, shown as ``current_error``): "cannot be deleted on email: still
    visible to readers". The row is retracted either way (nothing more will be sent or tried;
    an e-mail in an inbox cannot be taken back); the note is what keeps that honest.

    The task message only names a delivery; the ledger decides. Anyone who can write to the
    broker can send one, so unless the announcement itself was retracted (``retract`` records
    that before it enqueues anything) the live post stays."""
    ledger = runtime.deliveries
    d = ledger.get_delivery(delivery_id)
    if d.state not in (S.DELIVERED, S.UNKNOWN):
        return "skipped"
    if not ledger.get_announcement(d.announcement_id).retracted_at:
        log.warning("retract task for delivery %s ignored: its announcement was not retracted", d.id, extra=_ids(d))
        return "skipped"
    channel = runtime.channel(d.channel)
    where = channel_label(runtime, d.channel)
    still_up: str | None
    if d.receipt is not None and channel.can_retract:
        try:
            channel.retract(d.receipt)
            note, still_up = "deleted on the channel", None
        except DeliveryError as exc:
            still_up = f"could not be deleted on {where} ({exc}): still visible to readers — remove it by hand"
            note = still_up
    elif channel.can_retract:  # no receipt: we never learnt where it landed (an unknown delivery)
        still_up = f"not deleted on {where}: where it landed is unknown — check the channel and remove it by hand"
        note = still_up
    else:
        still_up = f"cannot be deleted on {where}: still visible to readers"
        note = still_up
    ledger.force(d.id, S.RETRACTED, note, actor="worker", from_states=[S.DELIVERED, S.UNKNOWN],
                 note=still_up, set_note=True)
    return "retracted" if still_up is None else "not_withdrawn"


def channel_label(runtime: Runtime, name: str) -> str:
    """How a note names a channel's kind: ``email``, ``slack webhook``, ``mastodon``."""
    cfg = runtime.settings.channels.get(name)
    kind = str(getattr(cfg, "kind", "") or name)
    fmt = getattr(cfg, "format", None)
    return f"{fmt} webhook" if kind == "webhook" and fmt else kind
