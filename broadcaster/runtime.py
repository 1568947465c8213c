"""Everything a process needs at run time, built once from the settings: the ledger, the shared
Redis state (breakers, rate limits), the channel instances and how to wake a worker.

Tests build a Runtime with in-memory twins and their own clock; processes use ``from_settings``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .channels.ports import ChannelPorts
from .config import Settings, secret_values
from .errors import ConfigError, LedgerUnavailable
from .ledger import Ledger
from .ledger.opt_outs import OptOutStore
from .ledger.ports import DeliveryPort
from .wakeup import Enqueuer, NoEnqueuer

if TYPE_CHECKING:
    from .channels.base import Channel
    from .oauth.credential import Credential

log = logging.getLogger(__name__)

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def broker_url(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return settings.broker or env.get("REDIS_URL") or DEFAULT_REDIS


def state_redis_url(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    if settings.redis:
        return settings.redis
    broker = broker_url(settings, env)
    if broker.startswith(("redis://", "rediss://", "unix://", "sentinel://")):
        return broker
    env = os.environ if env is None else env
    return env.get("REDIS_URL") or DEFAULT_REDIS


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str | None, int]:
    """``sentinel://[:password@]host:port[/db];sentinel://…`` (Celery's form) → the Sentinels'
    addresses, the master's password and the database number."""
    from urllib.parse import unquote, urlsplit

    hosts, password, db = [], None, 0
    for part in filter(None, (x.strip() for x in url.split(";"))):
        u = urlsplit(part)
        if u.scheme != "sentinel" or not u.hostname:
            raise ValueError(f"not a sentinel:// address: {part.split('@')[-1]!r}")
        hosts.append((u.hostname, u.port or 26379))
        password = unquote(u.password) if u.password else password
        if u.path.strip("/"):
            db = int(u.path.strip("/"))
    return hosts, password, db


def connect_redis(url: str, settings: Settings, **options):
    """A Redis client for ``url``; for ``sentinel://`` one that follows the current master."""
    import redis as redis_lib

    if not url.startswith("sentinel://"):
        return redis_lib.Redis.from_url(url, **options)
    from redis.sentinel import Sentinel

    if settings.sentinel is None:
        raise ConfigError([("sentinel.master_name", "required for a sentinel:// URL")])
    hosts, password, db = parse_sentinel_url(url)
    own = {"password": settings.sentinel.password.reveal()} if settings.sentinel.password else {}
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(hosts, sentinel_kwargs={**own, **timeouts}, **options)
    return sentinel.master_for(settings.sentinel.master_name, password=password, db=db)


def queue_name(channel: str) -> str:
    """Each channel has its own queue (a bulkhead)."""
    return f"bc.ch.{channel}"


DEFAULT_QUEUE = "bc.default"


class Runtime:
    """``ledger`` is the whole SQL ledger (intake, API, features); ``deliveries`` the port the
    engine, the drain and the sweep use — the same object unless given apart: break-glass
    runs the engine over a journalled :class:`~broadcaster.ledger.memory.MemoryLedger` and has
    no SQL ledger at all, and ``check`` only builds channels (neither)."""

    def __init__(
        self,
        settings: Settings,
        *,
        ledger: Ledger | None = None,
        breaker,
        limiter,
        clock: Callable[[], float] = time.time,
        channel_io: dict | None = None,
        redis=None,
        enqueuer: Enqueuer | None = None,
        deliveries: DeliveryPort | None = None,
    ):
        self.settings = settings
        self._ledger = ledger
        self._deliveries: DeliveryPort | None = deliveries if deliveries is not None else ledger
        self.breaker = breaker
        self.limiter = limiter
        self.clock = clock
        self.redis = redis
        self.channel_io = dict(channel_io or {})
        self._channels: dict[str, Channel[Any]] = {}
        self._lock = threading.Lock()
        self._credentials: dict[str, Credential] = {}
        self._credentials_lock = threading.Lock()
        #: how workers are woken (Celery in servers, a recorder in tests, nobody in offline tools)
        self.enqueuer: Enqueuer = enqueuer if enqueuer is not None else NoEnqueuer()
        self.channel_io.setdefault("credentials", self.credential)  # renewable OAuth tokens (oauth/)

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise LedgerUnavailable("this process runs without the SQL ledger (break-glass, `check`)")
        return self._ledger

    @property
    def deliveries(self) -> DeliveryPort:
        """What the engine, the drain and the sweep read and write (``ledger/ports.py``)."""
        if self._deliveries is None:
            raise LedgerUnavailable("this process runs without a ledger (`check` builds channels only)")
        return self._deliveries

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True, enqueuer: Enqueuer | None = None) -> Runtime:
        from .resilience import RedisBreaker, RedisRateLimiter

        ledger = Ledger.open(settings.ledger, migrate_schema=migrate)
        url = state_redis_url(settings)
        try:
            client = connect_redis(url, settings, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30)
        except ValueError as exc:
            raise ConfigError([("redis", f"not a Redis URL: {exc}")]) from None
        rt = cls(settings, ledger=ledger, breaker=RedisBreaker(client), limiter=RedisRateLimiter(client), redis=client,
                 enqueuer=enqueuer)
        rt.channel_io.setdefault("subscribers", rt._subscribers)
        rt.channel_io.setdefault("trust_files", rt._trust_files)
        rt.channel_io.setdefault("opt_outs", OptOutStore(ledger))  # SMS numbers that replied STOP
        rt.channel_io.setdefault("endpoints", rt._endpoints())  # webhooks subscribers brought
        return rt

    # -- channels, built lazily and kept for the life of the process (connection reuse)

    def channel(self, name: str) -> Channel[Any]:
        with self._lock:
            ch = self._channels.get(name)
            if ch is None:
                ch = self.build_channel(name)
                self._channels[name] = ch
            return ch

    def build_channel(self, name: str, **extra_io: Any) -> Channel[Any]:
        from .channels import channel_class

        cfg = self.settings.channels.get(name)
        if cfg is None:
            raise KeyError(name)
        cls = channel_class(cfg.kind)
        if cls is None:  # config validation refuses unknown kinds; an extra may have gone missing since
            raise ConfigError([(f"channels.{name}.kind", f"no adapter for kind {cfg.kind!r} is installed")])
        policy = self.settings.policy_for(name)
        given = {**self.channel_io, **extra_io}
        return cls(name, cfg, clock=self.clock, timeout=policy.timeout, on_too_long=policy.on_too_long,
                   http=given.get("http"), ports=ChannelPorts.pick(given))

    def credential(self, name: str) -> Credential | None:
        """The channel's renewable credential (one per process, shared by every instance of the
        channel), or None when its settings have no ``refresh:`` section."""
        cfg = self.settings.channels.get(name)
        if cfg is None or getattr(cfg, "refresh", None) is None:
            return None
        with self._credentials_lock:
            cred = self._credentials.get(name)
            if cred is None:
                from .oauth.credential import for_channel
                from .oauth.lock import LOCAL, RedisRefreshLock
                from .readiness import configured_expiry

                lock = RedisRefreshLock(self.redis) if self.redis is not None else LOCAL
                cred = for_channel(name, cfg, lock=lock, http=self.channel_io.get("http"), clock=self.clock,
                                   timeout=self.settings.policy_for(name).timeout,
                                   configured_expiry=configured_expiry(self.settings, name))
                self._credentials[name] = cred
            return cred

    def secrets_of(self, name: str) -> set[str]:
        """Every secret value of a channel — configured, and renewed since — to cut out of
        anything stored or shown."""
        found = secret_values(self.settings.channels.get(name))
        with self._credentials_lock:
            cred = self._credentials.get(name)
        return found | cred.secrets() if cred is not None else found

    def _subscribers(self, lists, post):
        """Subscriber source for e-mail channels: ``(address, unsubscribe_url)`` pairs."""
        from .subscribers import subscribers_for

        return subscribers_for(self.ledger, lists, post, public_url=self.settings.public_url, settings=self.settings)

    def _endpoints(self) -> Any:
        """The endpoint source of ``subscriber_webhooks`` channels (``subscribers/endpoints.py``)."""
        from .subscribers.endpoints import Source

        return Source(self)

    def _trust_files(self, state):
        """Official-channel list, keys, signatures and verify page for the status site."""
        from .official import site_files

        return site_files(self.settings, state)

    def close(self) -> None:
        for ch in self._channels.values():
            try:
                ch.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._channels.clear()
        with self._credentials_lock:
            for cred in self._credentials.values():
                cred.close()
            self._credentials.clear()

    # -- waking workers: the broker is only a signal, the ledger is the truth

    def enqueue(self, items: Iterable[tuple[str, str]], countdown: float | None = None) -> int:
        """Tell the broker about deliveries. Failures are logged, never raised: the scheduler's
        sweep finds anything the broker did not get."""
        items = list(items)
        if not items:
            return 0
        try:
            self.enqueuer.deliver(items, countdown)
        except Exception as exc:  # noqa: BLE001 - broker trouble must not fail a submit
            log.warning("could not enqueue %d deliveries (%s: %s); the sweeper will pick them up",
                        len(items), type(exc).__name__, exc)
            return 0
        return len(items)

    def enqueue_retract(self, delivery_id: str, channel: str) -> None:
        try:
            self.enqueuer.retract(delivery_id, channel)
        except Exception as exc:  # noqa: BLE001 - the retraction stays recorded in the ledger
            log.warning("could not enqueue retraction of %s: %s", delivery_id, exc)
