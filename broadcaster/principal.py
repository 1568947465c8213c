"""Who is asking: a token's name and what it may post. Checked by every use case."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import Forbidden


@dataclass(frozen=True)
class Principal:
    """The caller: a token's name and what it may post. Empty kinds/channels mean "any"."""

    name: str
    kinds: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    admin: bool = False

    def check_post(self, kind: str, channels: list[str], fallbacks: Mapping[str, Sequence[str]] | None = None) -> None:
        """May this caller post a ``kind`` to ``channels``? ``fallbacks`` maps each of them to
        every channel it can fall back to (directly or down a chain): a token limited to some
        channels must not reach the others when one of its channels fails, so those count too."""
        if self.admin:
            return
        if self.kinds and kind not in self.kinds:
            raise Forbidden(f"token {self.name!r} may not post {kind!r} announcements (allowed: {', '.join(self.kinds)})")
        if self.channels:
            denied = [c for c in channels if c not in self.channels]
            if denied:
                raise Forbidden(f"token {self.name!r} may not post to {', '.join(denied)}")
            for channel, reach in (fallbacks or {}).items():
                outside = [c for c in reach if c not in self.channels]
                if outside:
                    raise Forbidden(
                        f"token {self.name!r} may not post to {', '.join(outside)}, where {channel} falls back to "
                        f"when it fails: leave {channel} out, or use a token that may also post to "
                        f"{', '.join(outside)}")

    def channel_limit(self) -> tuple[str, ...] | None:
        """The channels this caller's announcements may ever reach (fallbacks included), or None
        for no limit; the ledger keeps it with the announcement for the engine."""
        return None if self.admin or not self.channels else self.channels

    def check_admin(self, action: str) -> None:
        if not self.admin:
            raise Forbidden(f"{action} needs an admin token; {self.name!r} is not one")


SYSTEM = Principal("system", admin=True)


#: the web page's session cookie: set at sign-in (``web/session.py``), read by the API's intake
#: guard so a page request is limited and authenticated like the token behind it
SESSION_COOKIE = "bc_session"


class SessionCheck(Protocol):
    """Turns a session cookie into the principal it stands for (None: unknown, expired, revoked)."""

    def verify(self, value: str) -> Principal | None: ...
