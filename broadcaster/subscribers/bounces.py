"""Bounces: an address the mail server refused for good stops receiving mail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ledger import Ledger
from ..ledger.subscribers import SubscriberStore
from .consent import normalize_address

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..scheduler import TickReport


def mark_bounced(ledger: Ledger, address: str, *, list_name: str | None = None, actor: str = "system",
                 reason: str = "") -> int:
    """A hard bounce: the address stops receiving mail on every list (or just ``list_name``)."""
    return SubscriberStore(ledger).mark_bounced(normalize_address(address), list_name=list_name, actor=actor,
                                                reason=reason)


class BounceWatcher:
    """Scheduler hook: addresses an email channel saw refused for good (5yz) are marked bounced.

    The email channel records each recipient's outcome as a delivery item; a ``refused`` item is
    a hard failure. Each process remembers how far it has read; marking is idempotent, so two
    schedulers reading the same items do no harm.
    """

    __name__ = "subscribers.bounces"

    def __init__(self, every: float = 30.0):
        self.every = every
        self.seen_until = 0.0
        self.last_run = 0.0

    def __call__(self, runtime: Runtime, report: TickReport | None = None) -> int:
        now = runtime.clock()
        if now - self.last_run < self.every:
            return 0
        self.last_run = now
        email_channels = [n for n, c in runtime.settings.channels.items() if getattr(c, "kind", None) == "email"]
        if not email_channels:
            return 0
        n = 0
        for address, detail, at in SubscriberStore(runtime.ledger).refused_items(email_channels, self.seen_until):
            n += mark_bounced(runtime.ledger, address, actor="bounces", reason=(detail or "refused")[:200])
            self.seen_until = max(self.seen_until, at)
        if report is not None and n:
            report.extra["bounced"] = n
        return n
