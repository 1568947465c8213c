"""Everything a process needs at run time, built once from the settings: the ledger, the shared
Redis state (breakers, rate limits), the channel instances and how to wake a worker.

Tests build a Runtime with in-memory twins and their own clock; processes use ``from_settings``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .channels.ports import ChannelPorts
from .channels.registry import channel_class
from .config import Settings, secret_values
from .errors import ConfigError, LedgerUnavailable
from .ledger import Ledger
from .ledger.opt_outs import OptOutStore
from .ledger.ports import DeliveryPort
from .official import site_files
from .subscribers import audience
from .subscribers.confirmation import ConfirmationSender
from .subscribers.endpoints import Source as endpoint_source
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


#: ports bound to the runtime they serve (built once, when the runtime is constructed)
PortsFactory = Callable[["Runtime"], ChannelPorts]

_FIELDS = ("settings", "_ledger", "_deliveries", "breaker", "limiter", "clock", "redis", "enqueuer", "http", "ports",
           "confirmation_sender", "_channels", "_lock", "_credentials", "_credentials_lock")


class Runtime:
    """What a process holds, fixed at construction: nothing is assigned afterwards.

    ``ledger`` is the whole SQL ledger (intake, API, features); ``deliveries`` the port the
    engine, the drain and the sweep use — the same object unless given apart: break-glass
    runs the engine over a journalled :class:`~broadcaster.ledger.memory.MemoryLedger`, with the
    SQL ledger beside it only when it can still be read (for the channels' ports: subscribers,
    opt-outs, endpoints), and ``check`` only builds channels (neither).

    Collaborators are typed and handed in: ``http`` (the adapters' shared HTTP client; a test's
    ``httpx.MockTransport``), ``ports`` (:class:`~.channels.ports.ChannelPorts`, or a function of
    the runtime for ports that need it — :func:`standard_ports` is the running system's; the
    ``credentials`` port defaults to this runtime's own :meth:`credential`),
    ``confirmation_sender`` (mails double opt-in requests; default: the configured email
    channel), ``channels`` (adapters built elsewhere, e.g. a test's stand-in; the rest are built
    from the settings on first use). A test that needs a different collaborator builds another
    runtime (``tests/support/runtime.py``).
    """

    __slots__ = (*_FIELDS, "__weakref__")  # per-runtime helpers (the confirmation mailer) are kept weakly

    settings: Settings
    breaker: Any
    limiter: Any
    clock: Callable[[], float]
    redis: Any
    #: how workers are woken (Celery in servers, a recorder in tests, nobody in offline tools)
    enqueuer: Enqueuer
    http: Any
    ports: ChannelPorts
    confirmation_sender: ConfirmationSender | None
    _ledger: Ledger | None
    _deliveries: DeliveryPort | None
    _channels: dict[str, Channel[Any]]
    _lock: threading.Lock
    _credentials: dict[str, Credential]
    _credentials_lock: threading.Lock

    def __init__(
        self,
        settings: Settings,
        *,
        ledger: Ledger | None = None,
        breaker,
        limiter,
        clock: Callable[[], float] = time.time,
        redis=None,
        enqueuer: Enqueuer | None = None,
        deliveries: DeliveryPort | None = None,
        http: Any = None,
        ports: ChannelPorts | PortsFactory | None = None,
        confirmation_sender: ConfirmationSender | None = None,
        channels: Mapping[str, Channel[Any]] | None = None,
    ):
        given = {"settings": settings, "_ledger": ledger,
                 "_deliveries": deliveries if deliveries is not None else ledger,
                 "breaker": breaker, "limiter": limiter, "clock": clock, "redis": redis,
                 "enqueuer": enqueuer if enqueuer is not None else NoEnqueuer(), "http": http,
                 "confirmation_sender": confirmation_sender, "_channels": dict(channels or {}),
                 "_lock": threading.Lock(), "_credentials": {}, "_credentials_lock": threading.Lock()}
        for name, value in given.items():
            object.__setattr__(self, name, value)
        if ports is None:
            ports = ChannelPorts()
        elif not isinstance(ports, ChannelPorts):
            ports = ports(self)  # every other field is set: the factory may bind to the runtime
        if ports.credentials is None:  # renewable OAuth tokens (oauth/), one per channel in this process
            ports = dataclasses.replace(ports, credentials=self.credential)
        object.__setattr__(self, "ports", ports)

    def replaced(self, **changes: Any) -> Runtime:
        """Another runtime with the same collaborators but for ``changes`` (the constructor's
        keywords, ``settings`` included) — what to do instead of assigning to this one. Its
        adapters and renewable credentials are its own, built afresh."""
        ports = self.ports
        if getattr(ports.credentials, "__self__", None) is self:  # bound to this runtime: the new one binds its own
            ports = dataclasses.replace(ports, credentials=None)
        given: dict[str, Any] = {"ledger": self._ledger, "deliveries": self._deliveries, "breaker": self.breaker,
                                 "limiter": self.limiter, "clock": self.clock, "redis": self.redis,
                                 "enqueuer": self.enqueuer, "http": self.http, "ports": ports,
                                 "confirmation_sender": self.confirmation_sender, **changes}
        return Runtime(given.pop("settings", self.settings), **given)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Runtime is fixed at construction: build another instead of setting {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Runtime is fixed at construction: {name!r} cannot be removed")

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
        return cls(settings, ledger=ledger, breaker=RedisBreaker(client), limiter=RedisRateLimiter(client),
                   redis=client, enqueuer=enqueuer, ports=standard_ports)

    # -- channels, built lazily and kept for the life of the process (connection reuse)

    def channel(self, name: str) -> Channel[Any]:
        with self._lock:
            ch = self._channels.get(name)
            if ch is None:
                ch = self.build_channel(name)
                self._channels[name] = ch
            return ch

    def build_channel(self, name: str, ports: ChannelPorts | None = None) -> Channel[Any]:
        """A new adapter for channel ``name`` with this runtime's collaborators (or ``ports``)."""
        cfg = self.settings.channels.get(name)
        if cfg is None:
            raise KeyError(name)
        cls = channel_class(cfg.kind)
        if cls is None:  # config validation refuses unknown kinds; an extra may have gone missing since
            raise ConfigError([(f"channels.{name}.kind", f"no adapter for kind {cfg.kind!r} is installed")])
        policy = self.settings.policy_for(name)
        return cls(name, cfg, clock=self.clock, timeout=policy.timeout, on_too_long=policy.on_too_long,
                   http=self.http, ports=self.ports if ports is None else ports)

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

                lock = RedisRefreshLock(self.redis) if self.redis is not None else LOCAL
                cred = for_channel(name, cfg, lock=lock, http=self.http, clock=self.clock,
                                   timeout=self.settings.policy_for(name).timeout,
                                   configured_expiry=self.settings.readiness.expiry_of(name))
                self._credentials[name] = cred
            return cred

    def secrets_of(self, name: str) -> set[str]:
        """Every secret value of a channel — configured, and renewed since — to cut out of
        anything stored or shown."""
        found = secret_values(self.settings.channels.get(name))
        with self._credentials_lock:
            cred = self._credentials.get(name)
        return found | cred.secrets() if cred is not None else found

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

    def enqueue(self, items: Iterable[tuple[str, str]], countdown: float | None = None, *,
                force: bool = False) -> int:
        """Tell the broker about deliveries (one wake-up per channel; ``force`` past a drain
        already queued — the sweep's; see ``wakeup.py``). Failures are logged, never raised: the
        scheduler's sweep finds anything the broker did not get."""
        items = list(items)
        if not items:
            return 0
        try:
            self.enqueuer.deliver(items, countdown, force=force)
        except Exception as exc:  # noqa: BLE001 - broker trouble must not fail a submit
            log.warning("could not enqueue %d deliveries (%s: %s); the sweeper will pick them up",
                        len(items), type(exc).__name__, exc)
            return 0
        return len(items)

    def drain_started(self, channel: str) -> None:
        """A drain of ``channel`` is about to claim: its next wake-up must be published again.
        If the broker cannot be told, the pending mark expires on its own (``wakeup_redis``)."""
        try:
            self.enqueuer.started(channel)
        except Exception as exc:  # noqa: BLE001 - a stale mark only delays until it expires or the sweep
            log.warning("could not clear the wake-up mark of %s (%s: %s)", channel, type(exc).__name__, exc)

    def enqueue_retract(self, delivery_id: str, channel: str) -> None:
        try:
            self.enqueuer.retract(delivery_id, channel)
        except Exception as exc:  # noqa: BLE001 - the retraction stays recorded in the ledger
            log.warning("could not enqueue retraction of %s: %s", delivery_id, exc)


def standard_ports(runtime: Runtime) -> ChannelPorts:
    """The running system's channel collaborators, all reading this runtime's ledger and settings:
    subscribers to mail (e-mail), the status site's trust files, SMS numbers that replied STOP,
    and the webhooks subscribers brought (whose owners are told through the runtime's mailer)."""
    return ChannelPorts(
        subscribers=audience.source(runtime),
        trust_files=functools.partial(site_files, runtime.settings),
        opt_outs=OptOutStore(runtime.ledger),
        endpoints=endpoint_source(runtime),
    )
