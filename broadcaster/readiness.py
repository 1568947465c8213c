"""Readiness: is every channel able to post *today*, before anyone needs it?

Each enabled channel's own non-posting ``check()`` (the provider's "who am I" call, a webhook
probe where one exists, the status site's writable target) runs on a schedule, in a thread of
the scheduler process so a slow provider never delays the sweep. The result — ready or not,
the reason (redacted), and the token's expiry when known — is kept in the ledger, shown on the
channels page, exported as ``broadcaster_channel_ready{channel}`` (and
``broadcaster_channel_token_expires_seconds``) and printed by ``broadcaster check``.

Expiry is known when the adapter learns it during ``check()`` (an attribute
``credential_expires_at``, epoch seconds) or when the operator writes it in
``readiness.token_expires`` (LinkedIn's 60-day tokens, a page token's date). A channel whose
token is renewed (``refresh:``, see ``oauth/``) is renewed by its check when due, and its expiry
is the end of the renewal chain (a refresh token's own end), not the short-lived access token's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric

from .config import Settings, redact
from .ledger.readiness import Readiness, ReadinessStore
from .runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    channel: str
    ready: bool
    detail: str
    expires_at: float | None


def check_channel(runtime: Runtime, name: str) -> Outcome:
    """Run one channel's check on a fresh instance (the workers' own stay untouched)."""
    settings = runtime.settings
    ch = None
    expires = settings.readiness.expiry_of(name)
    try:
        ch = runtime.build_channel(name)
        detail = ch.check()
        learnt = getattr(ch, "credential_expires_at", None)
        if runtime.credential(name) is not None:
            expires = float(learnt) if isinstance(learnt, (int, float)) else None  # renewed: the chain's end
        else:
            expires = float(learnt) if isinstance(learnt, (int, float)) else expires
        ready = True
        if expires is not None and expires <= time.time():
            ready, detail = False, f"token expired {datetime.fromtimestamp(expires, UTC):%Y-%m-%d}"
    except Exception as exc:  # noqa: BLE001 - any failure means "would fail today"; the reason is kept
        ready, detail = False, f"{type(exc).__name__}: {exc}"
    finally:
        if ch is not None:
            try:
                ch.close()
            except Exception:  # noqa: BLE001 - closing a half-built client must not hide the result
                log.debug("readiness: closing %s failed", name)
    return Outcome(name, ready, redact(detail, runtime.secrets_of(name)) or "", expires)


def check_all(runtime: Runtime) -> list[Readiness]:
    """Check every enabled channel now and record each result."""
    store = ReadinessStore(runtime.ledger)
    names = [n for n, c in runtime.settings.channels.items() if c.enabled]
    out = []
    for name in names:
        o = check_channel(runtime, name)
        rec = store.record(name, ready=o.ready, detail=o.detail, expires_at=o.expires_at)
        if not o.ready:
            log.warning("readiness: channel %s is NOT ready: %s", name, o.detail)
        elif expiring_soon(runtime.settings, rec):
            log.warning("readiness: the token of channel %s expires %s: renew it", name,
                        datetime.fromtimestamp(rec.expires_at or 0, UTC).strftime("%Y-%m-%d %H:%M UTC"))
        out.append(rec)
    store.forget_except(names)
    return out


class ReadinessHook:
    """Scheduler hook: every ``readiness.interval`` start one round of checks in a thread (one
    round at a time), so the sweep itself never waits for a provider."""

    def __init__(self) -> None:
        self._last = float("-inf")
        self._thread: threading.Thread | None = None

    def __call__(self, runtime: Runtime, report: object) -> None:
        cfg = runtime.settings.readiness
        if not cfg.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        now = time.monotonic()
        if now - self._last < cfg.interval:
            return
        self._last = now
        self._thread = threading.Thread(target=self._round, args=(runtime,), name="bc-readiness", daemon=True)
        self._thread.start()

    @staticmethod
    def _round(runtime: Runtime) -> None:
        try:
            check_all(runtime)
        except Exception:  # the next round tries again
            log.exception("readiness round failed")


def expiring_soon(settings: Settings, r: Readiness) -> bool:
    """Its token expires within ``readiness.warn_before`` (flagged on the page and in the log)."""
    return r.expires_at is not None and r.expires_at - time.time() < settings.readiness.warn_before


def board(runtime: Runtime) -> dict[str, Readiness]:
    """What the channels page and the API show (empty before the first round)."""
    return ReadinessStore(runtime.ledger).all()


def metric_families(runtime: Runtime) -> Iterator[Metric]:
    known = board(runtime)
    ready = GaugeMetricFamily("broadcaster_channel_ready",
                              "1 when the channel's last readiness check passed, 0 when it would fail today",
                              labels=["channel"])
    checked = GaugeMetricFamily("broadcaster_channel_ready_checked_timestamp_seconds",
                                "When the channel's readiness was last checked", labels=["channel"])
    expires = GaugeMetricFamily("broadcaster_channel_token_expires_seconds",
                                "Seconds until the channel's credential expires (where known)", labels=["channel"])
    now = time.time()
    for name, r in sorted(known.items()):
        if name not in runtime.settings.channels:
            continue
        ready.add_metric([name], 1.0 if r.ready else 0.0)
        checked.add_metric([name], r.checked_at)
        if r.expires_at is not None:
            expires.add_metric([name], r.expires_at - now)
    yield ready
    yield checked
    yield expires
