"""Alert drafts in the ledger: every statement on the ``alert_drafts`` table.

The policy (what a firing or resolved alert does to its group's draft) lives in
``broadcaster.inbound.drafts``; this module runs it inside one transaction that holds the
group's row (``FOR UPDATE`` on PostgreSQL; SQLite has one writer anyway), so two deliveries of
the same alert at once cannot both open a draft. The UNIQUE ``open_key`` backs that up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, NotFound
from . import schema as t
from .repository import Ledger, new_id

_D = t.alert_drafts

#: states in which a draft still waits for a person
WAITING = ("draft",)


@dataclass(frozen=True)
class Draft:
    id: str
    receiver: str
    source: str
    group_key: str
    open_key: str | None
    state: str
    mode: str
    firing: bool
    flaps: int
    fields: dict[str, Any]
    resolve_body: str
    resolve_proposed: bool
    alert: dict[str, Any]
    seen: tuple[str, ...]
    announcement_id: str | None
    resolve_update_id: str | None
    created_at: float
    updated_at: float
    resolved_at: float | None
    published_by: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> Draft:
        m = row._mapping
        return cls(id=m["id"], receiver=m["receiver"], source=m["source"], group_key=m["group_key"],
                   open_key=m["open_key"], state=m["state"], mode=m["mode"], firing=bool(m["firing"]),
                   flaps=int(m["flaps"] or 0), fields=dict(m["fields"] or {}), resolve_body=m["resolve_body"] or "",
                   resolve_proposed=bool(m["resolve_proposed"]), alert=dict(m["alert"] or {}),
                   seen=tuple(m["seen"] or ()), announcement_id=m["announcement_id"],
                   resolve_update_id=m["resolve_update_id"], created_at=m["created_at"],
                   updated_at=m["updated_at"], resolved_at=m["resolved_at"], published_by=m["published_by"])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "receiver": self.receiver, "source": self.source, "state": self.state,
                "mode": self.mode, "firing": self.firing, "flaps": self.flaps, "fields": self.fields,
                "resolve_body": self.resolve_body, "resolve_proposed": self.resolve_proposed, "alert": self.alert,
                "announcement_id": self.announcement_id, "resolve_update_id": self.resolve_update_id,
                "created_at": self.created_at, "updated_at": self.updated_at, "resolved_at": self.resolved_at,
                "published_by": self.published_by}


@dataclass
class Change:
    """What the policy decided for one group: insert a new draft, update the held one, or nothing."""

    insert: dict[str, Any] | None = None
    update: dict[str, Any] | None = None
    action: str = "ignored"  # the audit action and the receiver's answer
    details: dict[str, Any] = field(default_factory=dict)


Decide = Callable[[Draft | None, float], Change]


class DraftStore:
    """Typed access to ``alert_drafts`` of one ledger (cheap to make: holds no state)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def get(self, draft_id: str) -> Draft:
        with self.ledger.read() as conn:
            row = conn.execute(select(_D).where(_D.c.id == draft_id)).first()
        if row is None:
            raise NotFound("no such draft")
        return Draft.from_row(row)

    def page(self, *, states: tuple[str, ...] = (), limit: int = 100) -> list[Draft]:
        q = select(_D).order_by(_D.c.updated_at.desc(), _D.c.id.desc()).limit(limit)
        if states:
            q = q.where(_D.c.state.in_(list(states)))
        with self.ledger.read() as conn:
            return [Draft.from_row(r) for r in conn.execute(q)]

    def apply(self, open_key: str, decide: Decide, *, actor: str) -> tuple[Change, Draft | None]:
        """Run ``decide(held draft or None, now)`` and write its change, all in one transaction."""
        try:
            return self._apply(open_key, decide, actor)
        except IntegrityError:  # the same group's first alert at the same moment in another process
            return self._apply(open_key, decide, actor)

    def _apply(self, open_key: str, decide: Decide, actor: str) -> tuple[Change, Draft | None]:
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            row = conn.execute(select(_D).where(_D.c.open_key == open_key).with_for_update()).first()
            held = Draft.from_row(row) if row else None
            change = decide(held, now)
            target = held.id if held else None
            if change.update is not None and held is not None:
                conn.execute(update(_D).where(_D.c.id == held.id).values(updated_at=now, **change.update))
            elif change.insert is not None:
                if held is not None:  # the old group is over: free its key first
                    conn.execute(update(_D).where(_D.c.id == held.id).values(open_key=None))
                target = new_id("drf")
                conn.execute(insert(_D).values(id=target, open_key=open_key, created_at=now, updated_at=now,
                                               **change.insert))
            if target is None:
                return change, None
            if change.action != "ignored":
                self.ledger.audit(actor, f"draft.{change.action}", target, change.details, conn)
            return change, Draft.from_row(conn.execute(select(_D).where(_D.c.id == target)).one())

    def edit(self, draft_id: str, *, fields: dict[str, Any], resolve_body: str | None, actor: str) -> Draft:
        """A reviewer's edit of a waiting draft (or of the resolve text a published one proposes)."""
        values: dict[str, Any] = {"fields": fields, "updated_at": self.ledger.clock()}
        if resolve_body is not None:
            values["resolve_body"] = resolve_body
        with self.ledger.tx() as conn:
            res = conn.execute(update(_D).where(_D.c.id == draft_id, _D.c.state.in_(("draft", "published")))
                               .values(**values))
            if res.rowcount == 1:
                self.ledger.audit(actor, "draft.edit", draft_id, {}, conn)
        draft = self.get(draft_id)
        if res.rowcount != 1:
            raise Conflict(f"draft {draft_id} is {draft.state}; it can no longer be edited")
        return draft

    def move(self, draft_id: str, from_states: tuple[str, ...], values: dict[str, Any], *, actor: str,
             action: str, details: dict[str, Any] | None = None, resolve_proposed: bool | None = None) -> bool:
        """A conditional state change (publish, discard, close): True when this call made it."""
        cond = [_D.c.id == draft_id, _D.c.state.in_(list(from_states))]
        if resolve_proposed is not None:
            cond.append(_D.c.resolve_proposed.is_(resolve_proposed))
        with self.ledger.tx() as conn:
            res = conn.execute(update(_D).where(*cond).values(updated_at=self.ledger.clock(), **values))
            if res.rowcount == 1:
                self.ledger.audit(actor, f"draft.{action}", draft_id, details or {}, conn)
            return res.rowcount == 1
