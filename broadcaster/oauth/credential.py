"""One channel's renewable credential in one process: the token to use now, renewed when due.

Renewal happens

- **ahead of expiry** — :meth:`Credential.token` renews when less than the margin is left
  (``refresh.margin``, default a quarter of the token's lifetime: 30 minutes of X's two hours,
  15 of LinkedIn's 60 days), and the scheduler's hook (:mod:`.hook`) asks the same on its own
  schedule, so a quiet channel is renewed too;
- **when the provider refused a token as expired** — :meth:`Credential.refused` (the adapter
  then repeats its request once with the new token);
- **first of all**, when the set came from the configuration (its expiry was never learnt).

Each renewal takes the channel's lock (:mod:`.lock`), reads the store again — another process
may have renewed meanwhile, and then its set is simply adopted — asks the provider, and writes
the new set to the store *before* returning it to anyone: a refresh token that rotates is on
disk (or in the secret store) before the access token that came with it is first used. If the
store refuses the write, the new set is kept in memory, used, and written again on every
following use until the store takes it (and every such failure is logged as an error).

A renewal that fails leaves the current token in use while it has not expired, and is tried
again after :data:`RETRY_AFTER` seconds; a token refused right after it was issued is not
renewed again (that would loop): the refusal stands.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from ..config import Secret
from ..errors import AuthError, DeliveryError, TransientError
from .lock import LockUnavailable, RefreshLock
from .providers import Provider
from .store import StoreError, TokenStore
from .tokens import TokenSet, fingerprint

log = logging.getLogger(__name__)

#: margin when neither the configuration nor the token's lifetime gives one
DEFAULT_MARGIN = 600.0
#: after a failed renewal, the next try waits this long (the current token stays in use)
RETRY_AFTER = 60.0
#: a token refused within this long of being issued is not renewed again
REFUSAL_COOLDOWN = 60.0
#: the lock outlives a stuck holder by this much at most
LOCK_TTL = 120.0


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


class Credential:
    def __init__(self, channel: str, cfg: Any, *, provider: Provider, store: TokenStore, lock: RefreshLock,
                 http: httpx.Client | None = None, clock: Callable[[], float] = time.time, timeout: float = 10.0,
                 configured_expiry: float | None = None):
        self.channel = channel
        self.cfg = cfg
        self.provider = provider
        self.store = store
        self.lock = lock
        self.clock = clock
        self.timeout = timeout
        self.configured_expiry = configured_expiry
        self._http = http
        self._owns_http = http is None
        self._tokens: TokenSet | None = None
        self._unsaved: TokenSet | None = None
        self._retry_at = float("-inf")
        self._last_error: DeliveryError | None = None
        self._seen: list[str] = []
        self._mutex = threading.RLock()
        self.renewals = 0  # renewals this object made (tests, log lines)
        self._lock_name = f"{channel}:{hashlib.sha256(store.where.encode()).hexdigest()[:8]}"

    def __repr__(self) -> str:
        return f"<Credential {self.channel!r} ({self.provider.kind}, {self.store.where})>"

    # -- what adapters use

    def token(self) -> str:
        """The access token to send now (renewed first when due)."""
        with self._mutex:
            current = self._current()
            now = self.clock()
            if not self.due(current, now):
                return current.access.reveal()
            if now < self._retry_at:
                if self._usable(current, now) or self._last_error is None:
                    return current.access.reveal()
                raise self._last_error
            try:
                return self._renew(current, force=False).access.reveal()
            except DeliveryError as exc:
                self._retry_at, self._last_error = now + RETRY_AFTER, exc
                if not self._usable(current, now):
                    raise
                log.warning("channel %s: renewing its token failed (%s); the current one stays in use until %s",
                            self.channel, exc, _when(current.expires_at) if current.expires_at else "it is refused")
                return current.access.reveal()

    def refused(self, used: str) -> str | None:
        """The provider refused ``used`` as expired or invalid: the token to try instead (the
        one another process stored, or a renewed one), or None when renewing cannot help."""
        with self._mutex:
            current = self._current()
            if current.access.reveal() != used:
                return current.access.reveal()  # already replaced here
            now = self.clock()
            if current.obtained_at is not None and now - current.obtained_at < REFUSAL_COOLDOWN:
                return None  # issued a moment ago and refused: the refusal is real
            renewed = self._renew(current, force=True, used=used)
            return renewed.access.reveal() if renewed.access.reveal() != used else None

    def renew_if_due(self) -> bool:
        """The scheduler's question: renew now if due (True when a renewal or adoption happened)."""
        with self._mutex:
            current = self._current()
            now = self.clock()
            if not self.due(current, now) or now < self._retry_at:
                return False
            try:
                after = self._renew(current, force=False)
            except DeliveryError as exc:
                self._retry_at, self._last_error = now + RETRY_AFTER, exc
                raise
            return after is not current

    def problem(self) -> DeliveryError | None:
        """Why the last renewal failed, while the set is still due (``check`` reports it: a
        channel whose renewal fails would fail once its current token runs out)."""
        with self._mutex:
            current = self._current()
            if self._last_error is not None and self.due(current, self.clock()):
                return self._last_error
            return None

    def forecast(self) -> float | None:
        """When the channel stops working unless someone authorizes again: the refresh
        credential's end where the provider names it (None: renewed indefinitely, or a token
        that never expires)."""
        with self._mutex:
            t = self._current()
        if t.expires_at is None:
            return None
        return t.refresh_expires_at if t.refresh is not None else t.expires_at

    def note(self) -> str:
        """A line for ``check``: when the token was renewed and when the current one ends."""
        with self._mutex:
            t = self._current()
        parts = []
        if t.obtained_at is not None:
            parts.append(f"token renewed {_when(t.obtained_at)}")
        if t.expires_at is not None:
            parts.append(f"current one expires {_when(t.expires_at)}")
        elif t.checked_at is not None:
            parts.append("token does not expire")
        return ", ".join(parts)

    def secrets(self) -> set[str]:
        """Every token this object has held (for redacting provider answers)."""
        with self._mutex:
            return {s for s in self._seen if len(s) >= 4}

    def close(self) -> None:
        if self._http is not None and self._owns_http:
            self._http.close()
            self._http = None

    # -- the rules

    def margin(self, t: TokenSet) -> float:
        if self.cfg.refresh.margin is not None:
            return float(self.cfg.refresh.margin)
        life = t.lifetime()
        return life / 4 if life else DEFAULT_MARGIN

    def due(self, t: TokenSet, now: float) -> bool:
        if t.checked_at is None:
            return True  # from the configuration: its expiry was never learnt
        if t.expires_at is None:
            return False
        return t.expires_at - now <= self.margin(t)

    @staticmethod
    def _usable(t: TokenSet, now: float) -> bool:
        return t.expires_at is None or t.expires_at > now

    # -- loading, renewing, storing

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            from ..channels._http import make_client

            self._http = make_client(self.timeout)
        return self._http

    def _seed(self) -> str:
        refresh = self.cfg.refresh.refresh_token
        return fingerprint(refresh) if refresh is not None else fingerprint(self.cfg.access_token)

    def _from_config(self, stored: TokenSet | None) -> TokenSet:
        refresh = self.cfg.refresh.refresh_token or (stored.refresh if stored is not None else None)
        return TokenSet(access=Secret(self.cfg.access_token.reveal()), refresh=refresh,
                        expires_at=self.configured_expiry, seed=self._seed())

    def _load(self) -> TokenSet:
        """What the store holds now (or the configuration, when it holds nothing of it)."""
        try:
            stored = self.store.load()
        except StoreError as exc:
            raise TransientError(f"{self.channel}: {exc}") from None
        if stored is not None and stored.seed == self._seed():
            return stored
        if stored is not None:
            log.info("channel %s: the configured credentials changed; they replace the stored ones", self.channel)
        return self._from_config(stored)

    def _adopt(self, t: TokenSet) -> TokenSet:
        self._tokens = t
        for s in t.secrets():
            if s not in self._seen:
                self._seen.append(s)
        del self._seen[:-8]
        return t

    def _current(self) -> TokenSet:
        if self._unsaved is not None:
            self._write(self._unsaved)
        if self._tokens is None:
            self._adopt(self._load())
        assert self._tokens is not None
        return self._tokens

    def _write(self, t: TokenSet) -> None:
        try:
            self.store.save(t)
        except StoreError as exc:
            self._unsaved = t
            log.error("channel %s: the renewed token could not be stored (%s); it is kept in memory and stored "
                      "again on the next use — a restart before then loses it", self.channel, exc)
            return
        if self._unsaved is not None:
            log.warning("channel %s: the renewed token is stored now (%s)", self.channel, self.store.where)
        self._unsaved = None

    def _renew(self, stale: TokenSet, *, force: bool, used: str | None = None) -> TokenSet:
        try:
            with self.lock.hold(self._lock_name, ttl=LOCK_TTL, wait=max(5.0, 3 * self.timeout)) as taken:
                latest = self._load() if self._unsaved is None else self._unsaved
                now = self.clock()
                replaced = latest.access.reveal() != stale.access.reveal()
                if replaced and (used is not None or not self.due(latest, now)):
                    log.info("channel %s: adopted the token another process renewed", self.channel)
                    return self._adopt(latest)
                if not force and not self.due(latest, now):
                    return self._adopt(latest)
                if not taken:
                    raise TransientError(f"{self.channel}: another process is renewing the token; will use its "
                                         "result")
                try:
                    renewed = self.provider.renew(self.http, self.cfg, latest, now=now, margin=self.margin(latest),
                                                  force=force)
                except AuthError:
                    again = self._load()
                    if self.provider.rotates and again.access.reveal() != latest.access.reveal():
                        return self._adopt(again)  # someone without our lock renewed first
                    raise
                if renewed.obtained_at == now:
                    self.renewals += 1
                self._last_error = None
                self._write(renewed)  # before anyone uses it
                self._adopt(renewed)
        except LockUnavailable as exc:
            raise TransientError(f"{self.channel}: {exc}; the token is not renewed without it") from None
        if renewed.obtained_at == now:
            log.info("channel %s: token renewed%s", self.channel,
                     f"; the new one expires {_when(renewed.expires_at)}" if renewed.expires_at else "")
        return renewed


def for_channel(channel: str, cfg: Any, *, lock: RefreshLock, http: httpx.Client | None = None,
                clock: Callable[[], float] = time.time, timeout: float = 10.0,
                configured_expiry: float | None = None) -> Credential:
    """The credential of a channel whose settings carry ``refresh:`` (its kind's provider, the
    store its settings name)."""
    from .providers import PROVIDERS
    from .store import open_store

    return Credential(channel, cfg, provider=PROVIDERS[cfg.kind], store=open_store(cfg.refresh.store, channel),
                      lock=lock, http=http, clock=clock, timeout=timeout, configured_expiry=configured_expiry)
