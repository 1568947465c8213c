"""The scheduler's sweep: the safety net that makes the broker a mere wake-up signal.

Every ``scheduler.interval`` seconds: expire dead workers' leases, release scheduled work that
became due (holding quiet kinds while an incident is open), and enqueue every due delivery the
broker has not been told about recently. A lost message or an emptied Redis therefore costs at
most ``requeue_after`` seconds, never a delivery.

The sweep itself reads and writes through the delivery port (``runtime.deliveries``,
:class:`~broadcaster.ledger.ports.SweepLedger`); its feature hooks use the whole ledger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import LedgerUnavailable
from .runtime import Runtime, broker_url, state_redis_url

log = logging.getLogger(__name__)

IDEMPOTENCY_KEEP = 48 * 3600.0  # an Idempotency-Key replays for at least 24 h (the documented promise)
HEARTBEAT_KEY = "bc:scheduler:last_tick"  # exported by /metrics for the "scheduler not running" alert
SENTINEL_KEY = "bc:broker:sentinel"  # vanishes with the queues when Redis restarts empty or is flushed


@dataclass
class TickReport:
    expired: int = 0
    promoted: int = 0
    enqueued: int = 0
    extra: dict[str, object] = field(default_factory=dict)




#: a feature that runs inside every sweep (maintenance windows, bounces, retention)
Hook = Callable[[Runtime, TickReport], object]


def feature_hooks() -> list[Hook]:
    """The hooks a scheduler process runs: maintenance window steps, bounce marking, retention,
    review reminders, readiness checks, token renewal, overdue "next update" promises."""
    from . import commitments, lifecycle, readiness, retention, review, subscribers
    from .oauth.hook import RefreshHook

    return [lifecycle.maintenance_hook, subscribers.BounceWatcher(), retention.RetentionHook(),
            review.ReviewReminder(), readiness.ReadinessHook(), RefreshHook(), commitments.overdue_hook]


class Sweeper:
    """One scheduler process: its hooks, and what it remembers between sweeps (whether it has
    seen the broker's sentinel key, which tells an emptied Redis from a first start)."""

    def __init__(self, runtime: Runtime, hooks: Sequence[Hook] = ()):
        self.runtime = runtime
        self.hooks = tuple(hooks)
        self._sentinel_seen = False

    def tick(self) -> TickReport:
        runtime = self.runtime
        ledger, settings = runtime.deliveries, runtime.settings
        report = TickReport()
        report.expired = len(ledger.expire_leases())
        if self._broker_was_emptied():
            report.extra["requeued_after_broker_loss"] = ledger.forget_enqueued()
        hold = settings.quiet_during_incidents if settings.quiet_during_incidents and ledger.open_incidents() else ()
        if hold and settings.quiet_action == "cancel":
            report.extra["cancelled_quiet"] = _cancel_quiet(runtime, hold)
        report.promoted = len(ledger.promote_scheduled(hold_kinds=hold))
        due = ledger.take_due(settings.scheduler.requeue_after)
        if due:
            # past any pending mark: the sweep is the safety net for a wake-up that was lost
            report.enqueued = runtime.enqueue([(d, ch) for d, ch, _ in due], force=True)
        for hook in self.hooks:
            try:
                hook(runtime, report)
            except LedgerUnavailable:
                raise
            except Exception:  # one feature's hook must not stop the sweep
                log.exception("scheduler hook %s failed", getattr(hook, "__name__", hook))
        return report

    def _broker_was_emptied(self) -> bool:
        """True when the broker's Redis lost its data since the last sweep: then waiting deliveries
        are enqueued again now, instead of after ``requeue_after``. (Only when the broker is that
        Redis.)"""
        runtime = self.runtime
        if runtime.redis is None or broker_url(runtime.settings) != state_redis_url(runtime.settings):
            return False
        try:
            created = runtime.redis.set(SENTINEL_KEY, "1", nx=True)
        except Exception:  # noqa: BLE001 - Redis down: nothing to decide this sweep
            return False
        if created and self._sentinel_seen:
            log.warning("the broker's Redis came back empty: re-enqueueing every waiting delivery")
            return True
        self._sentinel_seen = True
        return False

    def run(self, stop: threading.Event | None = None) -> None:
        """Loop until ``stop`` is set. Survives ledger and broker outages, logging once per outage."""
        stop = stop or threading.Event()
        runtime = self.runtime
        interval = runtime.settings.scheduler.interval
        failing = False
        last_prune = 0.0
        log.info("scheduler running every %.1fs", interval)
        while not stop.is_set():
            started = time.monotonic()
            try:
                report = self.tick()
                if report.expired or report.promoted or report.enqueued:
                    log.info("sweep: %d leases expired, %d released, %d enqueued",
                             report.expired, report.promoted, report.enqueued)
                if time.time() - last_prune > 3600:
                    runtime.ledger.idempotency.prune(time.time() - IDEMPOTENCY_KEEP)
                    last_prune = time.time()
                _heartbeat(runtime)
                if failing:
                    log.warning("scheduler: ledger reachable again")
                failing = False
            except LedgerUnavailable as exc:
                if not failing:
                    log.error("scheduler: %s; will keep trying", exc)
                failing = True
            except Exception:  # never let the safety net die
                log.exception("scheduler sweep failed; will retry")
            stop.wait(max(0.05, interval - (time.monotonic() - started)))


def tick(runtime: Runtime, hooks: Sequence[Hook] = ()) -> TickReport:
    """One sweep with ``hooks`` (``scheduler --once`` passes :func:`feature_hooks`)."""
    return Sweeper(runtime, hooks).tick()


def run(runtime: Runtime, stop: threading.Event | None = None) -> None:
    """The scheduler process: sweep with every feature hook until ``stop`` is set."""
    Sweeper(runtime, feature_hooks()).run(stop)


def _cancel_quiet(runtime: Runtime, kinds) -> int:
    from .models import DeliveryState as S

    n = 0
    for ann in runtime.ledger.list_announcements(limit=500, state="scheduled"):
        if ann.kind not in kinds:
            continue
        for d in runtime.ledger.deliveries_of(ann.id):
            if d.state == S.SCHEDULED and runtime.ledger.force(
                    d.id, S.CANCELLED, "cancelled: an incident is open (quiet_during_incidents)", actor="scheduler",
                    from_states=[S.SCHEDULED]):
                n += 1
    return n




def _heartbeat(runtime: Runtime) -> None:
    if runtime.redis is None:
        return
    try:
        runtime.redis.set(HEARTBEAT_KEY, f"{time.time():.3f}", ex=3600)
    except Exception:  # noqa: BLE001 - Redis down: the sweep itself still ran
        pass


