"""Alert groups become drafts, drafts become announcements.

One draft per alert group (``open_key`` = receiver + hash of the sender's group key) for as long
as the group lives: a repeat or a flap updates it, never opens a second one. A group is over
when it resolved (or its incident was resolved) more than ``inbound.flap_window`` ago; the next
firing then starts a new draft.

States: ``draft`` (waits for a person) → ``publishing`` (claimed by one person: at most one
announcement, whoever clicks) → ``published`` → ``closed`` (the resolve update went out).
``expired``: resolved before anyone published. ``discarded``: a person said no.

Publishing goes through ``service.submit`` and the resolve through ``service.add_update``, with
idempotency keys derived from the draft, so every rule of a normal post holds.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from pydantic import ValidationError

from ..config import InboundRule
from ..errors import Conflict, Forbidden, InvalidRequest
from ..ledger.drafts import Change, Draft, DraftStore
from ..limits import cleaned
from ..principal import Principal
from ..requests import AnnouncementIn, validation_problem
from ..runtime import Runtime
from . import rules
from .signals import Signal

log = logging.getLogger(__name__)

KEEP_SEEN = 20  # sender event ids remembered per draft (replays of recent events do nothing)


def open_key(receiver: str, group: str) -> str:
    return f"{receiver}:{hashlib.sha256(group.encode()).hexdigest()}"


def proposal(rule: InboundRule, signal: Signal, receiver: str, source: str) -> dict[str, Any]:
    """The announcement a rule proposes for this alert (validated like any submit). The alert's
    text was cleaned on arrival (``signals``); the filled-in title is made one line again (a
    multi-line annotation in a title template), so the proposal passes the intake's checks."""
    title = cleaned(rules.fill(rule.title, signal, receiver=receiver, source=source), one_line=True)[:300].strip()
    fields: dict[str, Any] = {
        "kind": rule.kind, "title": title or signal.title[:300].strip() or "Alert",
        "body": cleaned(rules.fill(rule.body, signal, receiver=receiver, source=source), one_line=False)[:20000],
        "components": list(rule.components), "channels": list(rule.channels)}
    if rule.severity:
        fields["severity"] = rule.severity
    if signal.url and signal.url.startswith(("https://", "http://")) and len(signal.url) <= 2000:
        fields["url"] = signal.url
    return fields


class Decider:
    """What one signal does to its group's draft (pure: runs inside the ledger's transaction)."""

    def __init__(self, signal: Signal, rule: InboundRule, *, receiver: str, source: str, flap_window: float):
        self.signal, self.rule = signal, rule
        self.receiver, self.source, self.flap_window = receiver, source, flap_window

    def __call__(self, held: Draft | None, now: float) -> Change:
        s = self.signal
        if held is not None and s.event_id and s.event_id in held.seen:
            return Change(action="ignored", details={"reason": "replayed event"})
        over = held is None or (held.state in ("expired", "closed", "discarded") and held.resolved_at is not None
                                and now - held.resolved_at > self.flap_window)
        if over:
            if not s.firing:
                return Change(action="ignored", details={"reason": "resolved, and no open draft"})
            return Change(insert=self._new(), action="created")
        assert held is not None
        base = {"alert": s.excerpt(), "seen": self._seen(held)}
        if s.firing:
            return self._firing(held, base)
        return self._resolved(held, base, now)

    def _new(self) -> dict[str, Any]:
        s = self.signal
        return {"receiver": self.receiver, "source": self.source, "group_key": hashlib.sha256(
            s.group.encode()).hexdigest(), "state": "draft", "mode": self.rule.mode, "firing": True, "flaps": 0,
            "fields": proposal(self.rule, s, self.receiver, self.source),
            "resolve_body": cleaned(rules.fill(self.rule.resolved_body, s, receiver=self.receiver, source=self.source),
                                    one_line=False)[:20000],
            "resolve_proposed": False, "alert": s.excerpt(), "seen": [s.event_id] if s.event_id else []}

    def _seen(self, held: Draft) -> list[str]:
        seen = list(held.seen)
        if self.signal.event_id:
            seen.append(self.signal.event_id)
        return seen[-KEEP_SEEN:]

    def _firing(self, held: Draft, base: dict[str, Any]) -> Change:
        again = {**base, "firing": True, "flaps": held.flaps + 1, "resolved_at": None}
        if held.state == "expired":
            return Change(update={**again, "state": "draft"}, action="reopened")
        if held.state == "closed":
            return Change(update={**again, "state": "published", "resolve_update_id": None,
                                  "resolve_proposed": False}, action="reopened")
        if held.state == "published" and not held.firing:
            return Change(update={**again, "resolve_proposed": False}, action="refired")
        return Change(update={**base, "firing": True}, action="updated")

    def _resolved(self, held: Draft, base: dict[str, Any], now: float) -> Change:
        if not held.firing:
            return Change(update=base, action="ignored", details={"reason": "already resolved"})
        done = {**base, "firing": False, "resolved_at": now}
        if held.state == "draft":
            return Change(update={**done, "state": "expired"}, action="expired")
        if held.state in ("published", "publishing"):
            return Change(update={**done, "resolve_proposed": True}, action="resolve_proposed")
        return Change(update=done, action="resolved")


def sender(receiver: str, rule: InboundRule) -> Principal:
    """Who posts for a ``publish`` rule: only the rule's kind (and channels, when it names them)."""
    return Principal(f"alerts:{receiver}", kinds=(rule.kind,), channels=tuple(rule.channels))


def receive(runtime: Runtime, receiver: str, source: str, signal: Signal) -> dict[str, Any]:
    """One verified alert: update its group's draft; in ``publish`` mode also post what it proposes."""
    rule = rules.match(runtime.settings.inbound, receiver, source, signal)
    if rule is None:
        return {"result": "ignored", "reason": "no inbound rule matches this alert"}
    store = DraftStore(runtime.ledger)
    decide = Decider(signal, rule, receiver=receiver, source=source, flap_window=runtime.settings.inbound.flap_window)
    change, draft = store.apply(open_key(receiver, signal.group), decide, actor=f"alerts:{receiver}")
    out: dict[str, Any] = {"result": change.action, **change.details}
    if draft is None:
        return out
    out["draft"] = draft.id
    if draft.mode == "publish" and change.action in ("created", "reopened", "resolve_proposed"):
        who = sender(receiver, rule)
        try:
            if change.action == "reopened" and draft.state == "published":
                out["update"] = _reopen_update(runtime, draft, who)
            else:
                out.update(publish(runtime, draft.id, principal=who))
        except (InvalidRequest, Conflict, Forbidden) as exc:  # stays a draft for a person; not the sender's fault
            log.warning("inbound %s: rule says publish, but %s stays a draft: %s", receiver, draft.id, exc)
            out["publish_error"] = str(exc)
    return out


def _reopen_update(runtime: Runtime, draft: Draft, who: Principal) -> str | None:
    from .. import service

    if not draft.announcement_id:
        return None
    res = service.add_update(runtime, draft.announcement_id, {"status": "investigating", "body": draft.fields.get(
        "body") or "The problem is back; we are investigating."}, principal=who,
        idempotency_key=f"draft-reopen:{draft.id}:{draft.flaps}")
    return res.id


def publish(runtime: Runtime, draft_id: str, *, principal: Principal) -> dict[str, Any]:
    """The one action: a waiting draft becomes its announcement; a published one whose alert
    resolved gets its resolve update. Whoever calls first wins; a second call changes nothing."""
    store = DraftStore(runtime.ledger)
    draft = store.get(draft_id)
    check_may_post(runtime, draft.fields, principal)  # before any claim: a refused caller changes nothing
    if draft.state == "draft" or (draft.state == "publishing" and draft.published_by == principal.name):
        return _publish_new(runtime, store, draft, principal)
    if draft.state == "published" and draft.resolve_proposed:
        return _publish_resolve(runtime, store, draft, principal)
    if draft.state == "published":
        raise Conflict(f"draft {draft_id} is already published as {draft.announcement_id}; "
                       "its resolve can be posted once the alert resolves")
    raise Conflict(f"draft {draft_id} is {draft.state}; there is nothing to publish")


def _publish_new(runtime: Runtime, store: DraftStore, draft: Draft, principal: Principal) -> dict[str, Any]:
    from .. import service

    check_fields(draft.fields)
    if draft.state == "draft" and not store.move(draft.id, ("draft",), {"state": "publishing",
                                                                         "published_by": principal.name},
                                                 actor=principal.name, action="claim"):
        raise Conflict(f"draft {draft.id} was just published or discarded by someone else")
    try:
        res = service.submit(runtime, dict(draft.fields), principal=principal, idempotency_key=f"draft:{draft.id}")
    except Exception:
        store.move(draft.id, ("publishing",), {"state": "draft", "published_by": None}, actor=principal.name,
                   action="unclaim")
        raise
    store.move(draft.id, ("publishing",), {"state": "published", "announcement_id": res.id}, actor=principal.name,
               action="publish", details={"announcement": res.id})
    return {"announcement": res.id, "deliveries": res.deliveries}


def _publish_resolve(runtime: Runtime, store: DraftStore, draft: Draft, principal: Principal) -> dict[str, Any]:
    from .. import service

    assert draft.announcement_id is not None
    if not store.move(draft.id, ("published",), {"state": "closed", "resolve_proposed": False}, actor=principal.name,
                      action="claim_resolve", resolve_proposed=True):
        raise Conflict(f"the resolve of draft {draft.id} was just posted by someone else")
    try:
        res = service.add_update(runtime, draft.announcement_id, {"status": "resolved", "body": draft.resolve_body},
                                 principal=principal, idempotency_key=f"draft-resolve:{draft.id}:{draft.flaps}")
    except Exception:
        store.move(draft.id, ("closed",), {"state": "published", "resolve_proposed": True}, actor=principal.name,
                   action="unclaim_resolve")
        raise
    store.move(draft.id, ("closed",), {"resolve_update_id": res.id}, actor=principal.name, action="resolve",
               details={"update": res.id})
    return {"announcement": draft.announcement_id, "update": res.id}


def check_may_post(runtime: Runtime, fields: dict[str, Any], principal: Principal) -> None:
    """Only a caller who could post the draft as it stands may publish, edit or discard it. No
    ``channels`` means the kind's route — checked as such, so an empty list is not a way past a
    token's channel limit (and fallbacks count, as in ``service.submit``)."""
    kind = str(fields.get("kind"))
    channels = list(fields.get("channels") or ()) or list(runtime.settings.route(kind))
    principal.check_post(kind, channels, runtime.settings.fallback_reach(channels))


def check_fields(fields: dict[str, Any]) -> AnnouncementIn:
    try:
        return AnnouncementIn.model_validate(fields)
    except ValidationError as exc:
        raise validation_problem(exc) from None


def edit(runtime: Runtime, draft_id: str, changes: dict[str, Any], *, principal: Principal) -> Draft:
    """A reviewer's edit: the proposed fields (validated now, so publishing cannot fail on them)."""
    store = DraftStore(runtime.ledger)
    draft = store.get(draft_id)
    resolve_body = changes.pop("resolve_body", None)
    if resolve_body is not None and not isinstance(resolve_body, str):
        raise InvalidRequest("resolve_body: expected text", field="resolve_body")
    check_may_post(runtime, draft.fields, principal)  # the draft as it is: no narrowing someone's draft to fit
    fields = {**draft.fields, **changes}
    check_fields(fields)
    check_may_post(runtime, fields, principal)  # and as it would become
    return store.edit(draft_id, fields=fields, resolve_body=resolve_body, actor=principal.name)


def discard(runtime: Runtime, draft_id: str, *, principal: Principal) -> Draft:
    store = DraftStore(runtime.ledger)
    draft = store.get(draft_id)
    check_may_post(runtime, draft.fields, principal)
    if not store.move(draft_id, ("draft",), {"state": "discarded", "resolved_at": None if draft.firing else
                                             runtime.clock()}, actor=principal.name, action="discard"):
        raise Conflict(f"draft {draft_id} is {draft.state}; only a waiting draft can be discarded")
    return store.get(draft_id)
