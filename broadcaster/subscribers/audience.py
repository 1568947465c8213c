"""Who gets which mail: the one rule that turns subscriber lists into recipients.

The worker (through the email channel's subscriber source) and break-glass (which may read the
rows from a file exported for the purpose, when the ledger is down) both call
:func:`recipients`, so they reach the same audience:

* confirmed subscribers of the lists (``opted_out`` — an older one-click opt-out of promotions
  — counts as confirmed without marketing consent);
* promotions only to those who consented to marketing mail;
* an announcement naming components skips subscribers of other components, unless it is a
  ``critical`` incident; one naming no component goes to everyone;
* an address on two lists gets one mail.

Each recipient comes with an unsubscribe link when links can be signed: promotions carry a
``marketing`` link (stop promotions only; it is also their ``List-Unsubscribe`` one-click),
everything else a ``list`` link (leave the list: no more mail of any kind).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..config import Settings
from ..csvcells import from_text_cell
from ..errors import InvalidRequest, NotFound
from ..ledger import Ledger
from ..ledger.subscribers import AudienceRow, SubscriberStore
from ..models import Announcement, Post
from . import links

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

#: states whose subscribers receive mail
RECEIVING = ("confirmed", "opted_out")
#: ``rows(lists, states, marketing_only)``: the candidate rows, from the ledger or a file
Rows = Callable[[Sequence[str], Sequence[str], bool], Iterable[AudienceRow]]
Recipient = tuple[str, str | None]


@dataclass(frozen=True)
class Facts:
    """What the rule needs to know about the announcement a mail is for."""

    kind: str
    severity: str | None = None
    components: tuple[str, ...] = ()

    @property
    def critical(self) -> bool:
        return self.kind == "incident" and self.severity == "critical"


class Announcements(Protocol):
    """Where the announcement being delivered is kept: the ledger, or break-glass's twin of it."""

    def get_announcement(self, ann_id: str) -> Announcement: ...


def facts_of(announcements: Announcements, post: Post) -> Facts:
    """The announcement's facts (the post carries only its kind), read from where its deliveries
    are kept (``runtime.deliveries``: the ledger, or break-glass's journalled twin of it)."""
    ann_id = (post.meta or {}).get("announcement_id")
    if ann_id:
        try:
            ann = announcements.get_announcement(ann_id)
        except NotFound:
            return Facts(post.kind)
        return Facts(post.kind, ann.severity, tuple(ann.components))
    return Facts(post.kind)


_warned_no_secret = False


def recipients(rows: Rows, lists: Iterable[str], facts: Facts, settings: Settings | None,
               public_url: str) -> list[Recipient]:
    """``(address, unsubscribe URL)`` for every address that should get the mail (see module)."""
    global _warned_no_secret
    names = list(dict.fromkeys(lists))
    if not names:
        return []
    cfg = links.settings_of(settings)
    promotion = facts.kind in cfg.promotion_kinds
    signing = links.can_sign(settings)
    if not signing and not _warned_no_secret:
        log.warning("subscribers.secret_key is not set: mail to subscribers goes out without unsubscribe links")
        _warned_no_secret = True
    scope = "marketing" if promotion else "list"
    # names compare without case: announcements carry the configured spelling ("API"), a
    # subscriber may have typed "api"
    wanted_components = {c.casefold() for c in facts.components}
    out: list[Recipient] = []
    seen: set[str] = set()
    # an opt-out of promotions (``opted_out``) never gets one, whatever its marketing flag says
    for r in rows(names, ("confirmed",) if promotion else RECEIVING, promotion):
        if r.address in seen:
            continue
        mine = {c.casefold() for c in r.components}
        if mine and wanted_components and not facts.critical and not (mine & wanted_components):
            continue
        seen.add(r.address)
        url = None
        if signing and r.id:
            url = links.link(public_url, links.UNSUBSCRIBE_PATH, links.unsubscribe_token(settings, r.id, scope))
        out.append((r.address, url))
    return out


def subscribers_for(ledger: Ledger, lists: Iterable[str], post: Post, public_url: str,
                    settings: Settings | None = None, facts: Facts | None = None) -> list[Recipient]:
    """:func:`recipients` from the ledger's rows."""
    store = SubscriberStore(ledger)

    def rows(names: Sequence[str], states: Sequence[str], marketing_only: bool) -> Iterable[AudienceRow]:
        return store.audience(names, states, marketing_only=marketing_only)

    return recipients(rows, lists, facts or facts_of(ledger, post), settings, public_url)


def source(runtime: Runtime) -> Callable[[tuple[str, ...], Post], list[Recipient]]:
    """The ``subscribers`` channel io for email channels, bound to a runtime: the ledger's
    subscribers, for the facts of the announcement where the runtime delivers it from."""

    def _source(lists: tuple[str, ...], post: Post) -> list[Recipient]:
        return subscribers_for(runtime.ledger, lists, post, public_url=runtime.settings.public_url,
                               settings=runtime.settings, facts=facts_of(runtime.deliveries, post))

    return _source


class SubscriberFile:
    """Subscribers as ``broadcaster subscribers export`` wrote them (CSV with a header naming at
    least ``list`` and ``address``; ``state``, ``marketing`` and ``components`` as exported).

    The export carries no subscriber ids, so mail from it has no unsubscribe links; that is
    why break-glass refuses to send promotions from a file (see ``breakglass.py``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._rows: list[tuple[str, AudienceRow, str, bool]] = []
        try:
            with self.path.open(newline="", encoding="utf-8") as fp:
                reader = csv.DictReader(fp)
                header = [h.strip().lower().lstrip("\ufeff") for h in reader.fieldnames or ()]
                if "address" not in header or "list" not in header:
                    raise InvalidRequest(f"{self.path}: not a subscriber export (the header needs list and address; "
                                         "write one with `broadcaster subscribers export`)", field="subscribers_file")
                reader.fieldnames = header
                for n, rec in enumerate(reader, 2):
                    self._rows.append(self._row(n, rec))
        except OSError as exc:
            raise InvalidRequest(f"{self.path}: cannot read it ({exc.strerror or exc})",
                                 field="subscribers_file") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"{self.path}: not valid CSV ({exc})", field="subscribers_file") from None

    def _row(self, n: int, rec: dict[str, str | None]) -> tuple[str, AudienceRow, str, bool]:
        rec = {k: from_text_cell(v) if isinstance(v, str) else v for k, v in rec.items()}  # the export's quotes
        address = (rec.get("address") or "").strip().lower()
        list_name = (rec.get("list") or "").strip()
        if not address or not list_name:
            raise InvalidRequest(f"{self.path}: line {n} has no list or address", field="subscribers_file")
        state = (rec.get("state") or "confirmed").strip() or "confirmed"
        marketing = (rec.get("marketing") or "").strip().lower() in {"true", "yes", "1", "y", "t"}
        comps = tuple(c.strip() for c in (rec.get("components") or "").split(";") if c.strip())
        return list_name, AudienceRow("", list_name, address, comps), state, marketing

    def __len__(self) -> int:
        return len(self._rows)

    def lists(self) -> frozenset[str]:
        return frozenset(lst for lst, _, _, _ in self._rows)

    def rows(self, lists: Sequence[str], states: Sequence[str], marketing_only: bool) -> Iterator[AudienceRow]:
        order = {name: i for i, name in enumerate(lists)}
        chosen = [(order[lst], i, row) for i, (lst, row, state, marketing) in enumerate(self._rows)
                  if lst in order and state in states and (marketing or not marketing_only)]
        for _, _, row in sorted(chosen, key=lambda x: (x[0], x[1])):
            yield row
