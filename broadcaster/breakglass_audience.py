"""Who break-glass mails: the worker's audience, read from wherever it can still be read.

An email channel with ``lists:`` mails subscribers. Break-glass computes them with the very rule
the worker uses (:func:`broadcaster.subscribers.audience.recipients`); only the rows come from
elsewhere when the ledger is down:

1. the ledger, when it can be read (the API or the broker may be what is down; see
   ``breakglass_ports.py``, which opens it once for every channel that needs it);
2. else a file written by ``broadcaster subscribers export`` and passed as
   ``--subscribers-file`` (take one now and then, and keep it where on-call can reach it);
3. else nothing: the lists are **not reached**, and the report says so — the delivery is not
   ``delivered``, and ``reconcile`` hands it to the workers, which mail the lists and skip the
   addresses break-glass already reached.

A file has no subscriber ids, so its mail has no unsubscribe links; promotions (which must carry
one) are therefore not sent from a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .config import Settings
from .ledger import Ledger
from .ledger.subscribers import AudienceRow, SubscriberStore
from .models import Announcement, Post
from .subscribers.audience import Facts, Recipient, Rows, SubscriberFile, recipients
from .subscribers.links import settings_of


@dataclass
class SubscriberSource:
    """Where the subscriber rows come from, and — when from nowhere — why."""

    origin: str  # "ledger" | "file" | "none"
    description: str
    rows: Rows | None = None
    known_lists: frozenset[str] | None = None  # lists a file holds (None: all — the ledger)
    has_ids: bool = True

    def split(self, lists: Iterable[str], kind: str, settings: Settings) -> tuple[list[str], dict[str, str]]:
        """``(reached, {list: why not reached})`` for a mail of ``kind`` to ``lists``."""
        reached: list[str] = []
        missed: dict[str, str] = {}
        promotion = kind in settings_of(settings).promotion_kinds
        for name in dict.fromkeys(lists):
            if self.rows is None:
                missed[name] = self.description
            elif self.known_lists is not None and name not in self.known_lists:
                missed[name] = f"not in {self.description}"
            elif promotion and not self.has_ids:
                missed[name] = f"promotions need unsubscribe links, which {self.description} cannot give"
            else:
                reached.append(name)
        return reached, missed


def _from_ledger(ledger: Ledger) -> SubscriberSource:
    store = SubscriberStore(ledger)

    def rows(lists: Sequence[str], states: Sequence[str], marketing_only: bool) -> Iterable[AudienceRow]:
        return store.audience(lists, states, marketing_only=marketing_only)

    return SubscriberSource("ledger", "the ledger", rows)


def check_file(subscribers_file: str | None) -> SubscriberFile | None:
    """The ``--subscribers-file``, read now: one that cannot be read is refused (InvalidRequest)
    before anything is sent — or the ledger is even tried."""
    return SubscriberFile(subscribers_file) if subscribers_file else None


def find_source(ledger: Ledger | None, why: str, f: SubscriberFile | None) -> SubscriberSource:
    """The ledger when it can be read (``ledger``; else ``why`` not), else the file, else none
    (with the reason)."""
    if ledger is not None:
        return _from_ledger(ledger)
    if f is None:
        return SubscriberSource("none", f"{why} and no --subscribers-file")
    taken = datetime.fromtimestamp(f.path.stat().st_mtime, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return SubscriberSource("file", f"{f.path} (written {taken}; {why})", f.rows, known_lists=f.lists(),
                            has_ids=False)


def source_for(source: SubscriberSource, announcement: Announcement, settings: Settings,
               reached: Sequence[str]) -> Callable[[tuple[str, ...], Post], list[Recipient]]:
    """The email channel's ``subscribers`` io: the worker's rule over the source's rows, for
    the reached lists only."""
    facts = Facts(announcement.kind, announcement.severity, tuple(announcement.components))
    allowed = set(reached)

    def _source(lists: tuple[str, ...], post: Post) -> list[Recipient]:
        if source.rows is None:
            return []
        return recipients(source.rows, [x for x in lists if x in allowed], facts, settings, settings.public_url)

    return _source
