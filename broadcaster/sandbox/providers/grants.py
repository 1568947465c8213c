"""Token endpoints' bookkeeping in the sandbox: which access tokens a stand-in issued and until
when they work, which refresh tokens it honours, and which were spent.

A stand-in with a token endpoint (X, LinkedIn, Facebook, Matrix) issues access tokens that
expire on the sandbox clock — a request with an expired one gets the provider's own
"token expired" answer — and refresh tokens that are honoured once where the provider rotates
them (X, Matrix) or until they expire (LinkedIn). Refresh tokens a channel is configured with
are listed in the stand-in's ``refresh_tokens`` setting (any is honoured while that is empty).
Tokens the stand-in did not issue are judged by its ``tokens`` setting, as before.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any


class Grants:
    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.lock = threading.Lock()
        self.access: dict[str, dict[str, Any]] = {}  # token → {"expires_at": float | None, …}
        self.refresh: dict[str, dict[str, Any]] = {}  # token → {"expires_at": float | None, …}
        self.spent: set[str] = set()
        self.expired: set[str] = set()  # tokens a test or drill declared expired
        self.refreshes = 0  # successful renewals (tests count them)

    def issue_access(self, prefix: str, ttl: float | None, **info: Any) -> str:
        token = f"{prefix}-{secrets.token_urlsafe(18)}"
        with self.lock:
            self.access[token] = {"expires_at": self.clock() + ttl if ttl else None, "issued_at": self.clock(), **info}
        return token

    def issue_refresh(self, prefix: str, ttl: float | None = None, **info: Any) -> str:
        token = f"{prefix}-{secrets.token_urlsafe(24)}"
        with self.lock:
            self.refresh[token] = {"expires_at": self.clock() + ttl if ttl else None, **info}
        return token

    def state(self, token: str | None) -> str | None:
        """"valid", "expired", or None for a token this stand-in did not issue (nor expire)."""
        if not token:
            return None
        with self.lock:
            if token in self.expired:
                return "expired"
            info = self.access.get(token)
        if info is None:
            return None
        expires = info.get("expires_at")
        return "expired" if expires is not None and expires <= self.clock() else "valid"

    def info(self, token: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.access.get(token)
            return dict(found) if found is not None else None

    def expire(self, tokens: tuple[str, ...] = ()) -> int:
        """Declare ``tokens`` (default: every access token issued so far) expired."""
        with self.lock:
            chosen = set(tokens) or set(self.access)
            self.expired |= chosen
            return len(chosen)

    def take_refresh(self, token: str | None, seeds: list[str], *, rotate: bool) -> dict[str, Any] | None:
        """The refresh token's record when it is honoured now (spending it if the provider
        rotates), else None."""
        if not token:
            return None
        now = self.clock()
        with self.lock:
            if token in self.spent:
                return None
            info = self.refresh.get(token)
            if info is None:
                if seeds and token not in seeds:
                    return None
                info = self.refresh.setdefault(token, {"expires_at": None, "seed": True})
            if info.get("expires_at") is not None and info["expires_at"] <= now:
                return None
            if rotate:
                self.spent.add(token)
                self.refresh.pop(token, None)
            self.refreshes += 1
            return dict(info)

    def revoke_refresh(self) -> None:
        """Every refresh token stops working (the member revoked the app)."""
        with self.lock:
            self.spent |= set(self.refresh)
            self.refresh.clear()
