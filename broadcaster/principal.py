"""Who is asking: a token's name and what it may post. Checked by every use case."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Forbidden


@dataclass(frozen=True)
class Principal:
    """The caller: a token's name and what it may post. Empty kinds/channels mean "any"."""

    name: str
    kinds: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    admin: bool = False

    def check_post(self, kind: str, channels: list[str]) -> None:
        if self.admin:
            return
        if self.kinds and kind not in self.kinds:
            raise Forbidden(f"token {self.name!r} may not post {kind!r} announcements (allowed: {', '.join(self.kinds)})")
        if self.channels:
            denied = [c for c in channels if c not in self.channels]
            if denied:
                raise Forbidden(f"token {self.name!r} may not post to {', '.join(denied)}")

    def check_admin(self, action: str) -> None:
        if not self.admin:
            raise Forbidden(f"{action} needs an admin token; {self.name!r} is not one")


SYSTEM = Principal("system", admin=True)
