"""A token set: what one renewal yields, and the JSON document a store keeps.

Its repr shows times, never tokens. ``seed`` is a short fingerprint of the configured
credentials the set descends from: when the operator configures a new refresh token (a new
authorization), the fingerprint no longer matches and the configuration seeds the store again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..config import Secret

VERSION = 1


@dataclass(frozen=True)
class TokenSet:
    access: Secret
    refresh: Secret | None = None
    #: when the access token stops working (epoch seconds); None: it does not, or not known
    expires_at: float | None = None
    #: when the refresh credential stops working, where the provider says
    refresh_expires_at: float | None = None
    #: when a renewal produced this set (None: it came from the configuration)
    obtained_at: float | None = None
    #: when ``expires_at`` was last learnt from the provider (None: never — a renewal is due)
    checked_at: float | None = None
    seed: str = ""

    def __repr__(self) -> str:
        def when(t: float | None) -> str:
            return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        return (f"TokenSet(access=***, refresh={'***' if self.refresh else None}, expires_at={when(self.expires_at)}, "
                f"refresh_expires_at={when(self.refresh_expires_at)}, obtained_at={when(self.obtained_at)})")

    __str__ = __repr__

    def secrets(self) -> set[str]:
        return {s.reveal() for s in (self.access, self.refresh) if s is not None and len(s.reveal()) >= 4}

    def lifetime(self) -> float | None:
        """How long the access token was issued for, when both ends are known."""
        if self.expires_at is None or self.obtained_at is None:
            return None
        return max(0.0, self.expires_at - self.obtained_at)

    def replace(self, **changes: Any) -> TokenSet:
        return dataclasses.replace(self, **changes)


def fingerprint(*secrets: Secret | None) -> str:
    """A short digest of the configured credentials (never reversible to them)."""
    h = hashlib.sha256(b"broadcaster-oauth-seed\x00")
    for s in secrets:
        h.update((s.reveal() if s is not None else "").encode() + b"\x00")
    return h.hexdigest()[:16]


def to_json(channel: str, tokens: TokenSet) -> str:
    doc = {
        "version": VERSION, "channel": channel,
        "access_token": tokens.access.reveal(),
        "refresh_token": tokens.refresh.reveal() if tokens.refresh is not None else None,
        "expires_at": tokens.expires_at, "refresh_expires_at": tokens.refresh_expires_at,
        "obtained_at": tokens.obtained_at, "checked_at": tokens.checked_at, "seed": tokens.seed,
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def from_json(text: str, where: str) -> TokenSet | None:
    """The stored set, or None when nothing is stored yet. ValueError (naming ``where``, never
    the content) when the document is not one of ours."""
    if not text.strip():
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError(f"{where}: not a JSON document") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str) or not doc["access_token"]:
        raise ValueError(f"{where}: no access_token in the stored document")

    def number(key: str) -> float | None:
        value = doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: {key} is not a number")
        return float(value)

    refresh = doc.get("refresh_token")
    return TokenSet(access=Secret(doc["access_token"]),
                    refresh=Secret(refresh) if isinstance(refresh, str) and refresh else None,
                    expires_at=number("expires_at"), refresh_expires_at=number("refresh_expires_at"),
                    obtained_at=number("obtained_at"), checked_at=number("checked_at"),
                    seed=str(doc.get("seed") or ""))
