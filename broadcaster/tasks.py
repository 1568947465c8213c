"""The Celery app and its thin tasks.

``celery -A broadcaster.tasks worker`` works as any Celery user expects: the module-level ``app``
is built on first access from ``$BROADCASTER_CONFIG`` (or ``config/broadcaster.yaml``) and
declares one queue per channel plus ``bc.default``; ``-Q bc.ch.<name>,…`` picks a group.

Reliability settings (see docs/architecture.md, "traps"): late acks with reject-on-worker-lost and
prefetch 1, so a killed worker's message is redelivered; a bounded broker pool acquire timeout, so
a submit never blocks on a dead broker; a visibility timeout well above any task's run time; and
no long countdowns — long waits live in the ledger.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from . import drain, engine
from .config import Settings, read_settings
from .errors import LedgerUnavailable
from .runtime import DEFAULT_QUEUE, Runtime, broker_url, queue_name
from .wakeup_redis import RedisWakeups

log = logging.getLogger(__name__)


class CeleryEnqueuer:
    """The :class:`~broadcaster.wakeup.Enqueuer` that publishes the tasks below on each channel's
    own queue. On a Redis broker (``wakeups``) every channel of one call goes out in one round
    trip, coalesced per channel (``wakeup_redis.py``); on another broker (RabbitMQ) one drain per
    channel over one pooled producer, nothing coalesced."""

    def __init__(self, app: Celery, wakeups: RedisWakeups | None = None):
        self.app = app
        self.wakeups = wakeups

    def deliver(self, items: Sequence[tuple[str, str]], countdown: float | None = None, *,
                force: bool = False) -> None:
        """One ``broadcaster.drain`` per channel named in ``items``: the worker that takes it
        sends whatever of that channel is due, these deliveries included."""
        channels = list(dict.fromkeys(channel for _delivery_id, channel in items))
        if self.wakeups is not None:
            self.wakeups.wake(channels, countdown, force=force)
            return
        with self.app.producer_or_acquire() as producer:
            for channel in channels:
                opts: dict[str, Any] = {"queue": queue_name(channel), "producer": producer}
                if countdown:
                    opts["countdown"] = countdown
                self.app.send_task(DRAIN, (channel,), **opts)

    def started(self, channel: str) -> None:
        if self.wakeups is not None:
            self.wakeups.started(channel)

    def retract(self, delivery_id: str, channel: str) -> None:
        self.app.send_task(RETRACT, (delivery_id,), queue=queue_name(channel))


#: task names: the wire contract between publishers and workers. ``deliver`` (one delivery) is no
#: longer published but still served: messages queued before an upgrade are processed.
DELIVER, DRAIN, RETRACT = "broadcaster.deliver", "broadcaster.drain", "broadcaster.retract"


def celery_enqueuer(settings: Settings) -> CeleryEnqueuer:
    """For processes that only publish (API, scheduler): the configured Celery app's enqueuer."""
    app = create_app(settings)
    return CeleryEnqueuer(app, RedisWakeups.for_app(app, settings, DRAIN))


def create_app(settings: Settings, runtime: Runtime | None = None) -> Celery:
    """The Celery app. Workers build their :class:`Runtime` lazily (after a prefork fork) with
    this app's :class:`CeleryEnqueuer`; ``runtime`` replaces that (in-process tests)."""
    app = Celery("broadcaster", broker=broker_url(settings), set_as_current=False)
    # one direct exchange; each queue bound by its own name, so a message reaches only its queue
    exchange = Exchange("bc", type="direct")
    names = [DEFAULT_QUEUE] + [queue_name(name) for name in settings.channels]
    queues = [Queue(n, exchange, routing_key=n) for n in names]
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        task_default_exchange="bc",
        task_default_exchange_type="direct",
        task_default_routing_key=DEFAULT_QUEUE,
        task_queues=queues,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        broker_pool_limit=20,
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 900, "socket_timeout": 5, "socket_connect_timeout": 3},
        broker_pool_acquire_timeout=5,
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    if broker_url(settings).startswith("sentinel://") and settings.sentinel is not None:
        # kombu finds the master through the Sentinels; the password in the URL is the master's
        options = dict(app.conf.broker_transport_options, master_name=settings.sentinel.master_name)
        if settings.sentinel.password:
            options["sentinel_kwargs"] = {"password": settings.sentinel.password.reveal()}
        app.conf.broker_transport_options = options
    holder: dict[str, Runtime | None] = {"runtime": runtime}
    lock = threading.Lock()

    def get_runtime() -> Runtime:
        # built lazily so a prefork child opens its own connections after the fork
        with lock:
            rt = holder["runtime"]
            if rt is None:
                enqueuer = CeleryEnqueuer(app, RedisWakeups.for_app(app, settings, DRAIN))
                rt = holder["runtime"] = Runtime.from_settings(settings, enqueuer=enqueuer)
            return rt

    @app.task(name=DELIVER, ignore_result=True, shared=False)
    def deliver(delivery_id: str, channel: str | None = None) -> str:
        try:
            # a database blip (failover, restart) is ridden out in place for a few seconds…
            return _ledger_retry(engine.attempt)(get_runtime(), delivery_id, channel=channel)
        except LedgerUnavailable as exc:
            # …a longer outage is left to the sweeper: nothing was claimed, the row is still due
            log.warning("delivery %s postponed: %s", delivery_id, exc)
            return "ledger_unavailable"

    @app.task(name=DRAIN, ignore_result=True, shared=False)
    def drain_channel(channel: str) -> str:
        try:
            return _ledger_retry(drain.drain)(get_runtime(), channel).word()
        except LedgerUnavailable as exc:
            # what was claimed stays leased (the sweep takes it back); the rest is still due
            log.warning("drain of %s postponed: %s", channel, exc)
            return "ledger_unavailable"

    @app.task(name=RETRACT, ignore_result=True, shared=False)
    def retract(delivery_id: str) -> str:
        try:
            return engine.retract_one(get_runtime(), delivery_id)
        except LedgerUnavailable as exc:
            log.warning("retraction of %s postponed: %s", delivery_id, exc)
            raise

    return app


def _ledger_retry(fn):
    """Short, bounded in-process retry for ledger connection failures only (tenacity)."""
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

    return retry(retry=retry_if_exception_type(LedgerUnavailable), stop=stop_after_attempt(3),
                 wait=wait_exponential(multiplier=0.5, max=2), reraise=True)(fn)


_app: Celery | None = None


def __getattr__(name: str):
    """``broadcaster.tasks.app`` is built on first use, from the configured file."""
    global _app
    if name in ("app", "celery"):
        if _app is None:
            _app = create_app(read_settings())
        return _app
    raise AttributeError(name)
