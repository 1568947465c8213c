"""Switchable faults: what the next requests to a provider should suffer.

A fault is either "the next ``count`` requests" or, with ``count=None``, "until cleared".
``accept_then_drop`` and ``duplicate`` only make sense on requests that create something, so
they are consumed by create endpoints only; every other mode hits any request of the provider
(optionally only paths containing ``path``). SMTP faults may name one ``recipient``.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

#: mode → what it does (also the help text of the control API and the CLI)
MODES: dict[str, str] = {
    "down": "answer 503 (SMTP: 421) as if the service were unreachable",
    "5xx": "answer a server error (status, default 500; SMTP: 554, or 550 for a recipient)",
    "4xx": "answer a client error (status, default 400; SMTP: 450 for a recipient)",
    "429": "rate limited, with the provider's reset header `seconds` ahead (default 60)",
    "slow": "wait `seconds` (default 5) before answering normally",
    "accept_then_drop": "create the post, then close the connection without a response",
    "duplicate": "refuse the create as the provider refuses a duplicate",
    "bad_token": "refuse the credentials (401 or the provider's equivalent)",
    "expired_token": "an expired session token (Bluesky: 400 ExpiredToken; others as bad_token)",
    "revoked_token": "the token was revoked: every call refuses it as bad_token does, credential checks too",
}
CREATE_ONLY = frozenset({"accept_then_drop", "duplicate"})
DEFAULT_SECONDS = {"429": 60.0, "slow": 5.0}
_ids = itertools.count(1)


@dataclass
class Fault:
    provider: str
    mode: str
    count: int | None = None  # None: until cleared
    seconds: float | None = None
    status: int | None = None
    code: int | None = None  # provider error code to use (e.g. Facebook 4/17/32/613)
    path: str | None = None
    recipient: str | None = None
    id: int = field(default_factory=lambda: next(_ids))
    hits: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown fault mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if not self.provider:
            raise ValueError("a fault needs a provider")
        if self.count is not None and int(self.count) < 1:
            raise ValueError("count must be at least 1 (omit it for 'until cleared')")
        if self.seconds is None:
            self.seconds = DEFAULT_SECONDS.get(self.mode, 0.0)
        self.seconds = float(self.seconds)
        if self.recipient:
            self.recipient = self.recipient.lower()

    def applies(self, path: str, *, create: bool, recipient: str | None = None) -> bool:
        if self.mode in CREATE_ONLY and not create:
            return False
        if self.path and self.path not in path:
            return False
        return (self.recipient or None) == (recipient.lower() if recipient else None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS = {"provider", "mode", "count", "seconds", "status", "code", "path", "recipient"}


def fault_from(data: dict[str, Any]) -> Fault:
    """A fault from control-API JSON or form data; ValueError with a plain sentence if wrong."""
    unknown = set(data) - FIELDS
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    kw: dict[str, Any] = {k: v for k, v in data.items() if v not in (None, "")}
    try:
        for name in ("count", "status", "code"):
            if name in kw:
                kw[name] = int(kw[name])
        if "seconds" in kw:
            kw["seconds"] = float(kw["seconds"])
    except (TypeError, ValueError):
        raise ValueError("count, status and code must be integers; seconds a number") from None
    if "mode" not in kw or "provider" not in kw:
        raise ValueError("a fault needs 'provider' and 'mode'")
    return Fault(**kw)


def parse_spec(spec: str) -> Fault:
    """CLI form: ``provider=mode[,key=value...]``, e.g. ``x=429,seconds=30`` or ``mastodon=5xx,count=3``."""
    provider, sep, rest = spec.partition("=")
    if not sep or not rest:
        raise ValueError(f"fault {spec!r}: expected provider=mode[,key=value...]")
    mode, *opts = rest.split(",")
    data: dict[str, Any] = {"provider": provider.strip(), "mode": mode.strip()}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            raise ValueError(f"fault {spec!r}: option {opt!r} is not key=value")
        data[key.strip()] = value.strip()
    return fault_from(data)


class FaultBook:
    """Thread-safe list of active faults (the server thread and the test thread share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self, provider: str | None = None) -> int:
        with self._lock:
            keep = [f for f in self._faults if provider is not None and f.provider != provider]
            removed = len(self._faults) - len(keep)
            self._faults = keep
        return removed

    def listed(self, provider: str | None = None) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if provider is None or f.provider == provider]

    def take(self, provider: str, path: str = "", *, create: bool = False, recipient: str | None = None,
             modes: frozenset[str] | set[str] | None = None) -> list[Fault]:
        """Every fault that hits this request, consuming one use of each counted one."""
        hit: list[Fault] = []
        with self._lock:
            for fault in list(self._faults):
                if fault.provider != provider or not fault.applies(path, create=create, recipient=recipient):
                    continue
                if modes is not None and fault.mode not in modes:
                    continue
                fault.hits += 1
                hit.append(fault)
                if fault.count is not None and fault.hits >= fault.count:
                    self._faults.remove(fault)
        return hit
