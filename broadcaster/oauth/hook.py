"""The scheduler's part: renew every renewable credential ahead of its expiry, on a schedule.

Adapters renew when they use a token, but a channel nobody posted to for a week must not meet
its first incident with an expired token: every :data:`CHECK_EVERY` seconds this hook asks each
enabled channel's credential whether it is due (a look at the expiry it holds — the store and
the provider are only contacted when it is), in a thread of its own so the sweep never waits.
The readiness round (``readiness.py``) renews too, through each channel's ``check()``.
"""

from __future__ import annotations

import logging
import threading
import time

from ..errors import DeliveryError
from ..runtime import Runtime

log = logging.getLogger(__name__)

CHECK_EVERY = 30.0


def renew_due(runtime: Runtime) -> dict[str, str]:
    """Renew what is due now; channel → "renewed" / the reason it failed (for the log and tests)."""
    out: dict[str, str] = {}
    for name, cfg in runtime.settings.channels.items():
        if not cfg.enabled:
            continue
        cred = runtime.credential(name)
        if cred is None:
            continue
        try:
            if cred.renew_if_due():
                out[name] = "renewed"
        except DeliveryError as exc:
            out[name] = str(exc)
            log.warning("channel %s: the scheduled token renewal failed: %s", name, exc)
    return out


class RefreshHook:
    """Scheduler hook: one round of :func:`renew_due` every :data:`CHECK_EVERY` seconds, in a
    thread (one round at a time)."""

    def __init__(self, every: float = CHECK_EVERY) -> None:
        self.every = every
        self._last = float("-inf")
        self._thread: threading.Thread | None = None

    def __call__(self, runtime: Runtime, report: object) -> None:
        if not any(getattr(c, "refresh", None) is not None and c.enabled for c in runtime.settings.channels.values()):
            return
        if self._thread is not None and self._thread.is_alive():
            return
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        self._thread = threading.Thread(target=self._round, args=(runtime,), name="bc-token-refresh", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @staticmethod
    def _round(runtime: Runtime) -> None:
        try:
            renew_due(runtime)
        except Exception:  # the next round tries again; the sweep must not die
            log.exception("token renewal round failed")
