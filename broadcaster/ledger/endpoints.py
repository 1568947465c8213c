"""Subscriber endpoints in the ledger: every statement on the ``subscriber_endpoints`` table.

The rules (who may register what, the challenge, the network guard, when an endpoint is
disabled) live in ``broadcaster.subscribers.endpoints``; this module makes each change one
conditional statement in one transaction, so two processes answering the same URL at once, or
two workers counting failures of one endpoint, cannot both win.

The challenge code is kept only as its SHA-256 (``code_hash``); the code itself travels once,
to the endpoint. ``failures`` counts consecutive failed posts; a success sets it back to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import NotFound
from . import schema as t
from .repository import Ledger, new_id

_E = t.subscriber_endpoints

#: endpoint states: ``pending`` (challenge out), ``confirmed`` (receives), ``disabled`` (failed too often,
#: or by an administrator), ``unsubscribed`` (its owner followed the unsubscribe link: only the owner
#: registering it again brings it back — an administrator cannot override that choice)
STATES = ("pending", "confirmed", "disabled", "unsubscribed")
#: states a new registration of the same URL starts over from (a fresh challenge)
RESTARTABLE = ("disabled", "unsubscribed")


@dataclass(frozen=True)
class Endpoint:
    id: str
    list: str
    format: str
    url: str
    owner: str | None
    components: tuple[str, ...]
    state: str
    created_at: float
    requested_at: float
    challenge_sent_at: float | None
    confirmed_at: float | None
    failures: int
    last_error: str | None
    disabled_at: float | None
    notice: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> Endpoint:
        m = row._mapping
        return cls(id=m["id"], list=m["list"], format=m["format"], url=m["url"], owner=m["owner"],
                   components=tuple(m["components"] or ()), state=m["state"], created_at=m["created_at"],
                   requested_at=m["requested_at"], challenge_sent_at=m["challenge_sent_at"],
                   confirmed_at=m["confirmed_at"], failures=int(m["failures"] or 0), last_error=m["last_error"],
                   disabled_at=m["disabled_at"], notice=m["notice"])

    def __repr__(self) -> str:  # the URL is a credential
        return f"<Endpoint {self.id} {self.format} {self.state}>"

    def to_dict(self) -> dict[str, Any]:
        """The admin's view: the URL shown only as its scheme and host (it is a credential)."""
        return {"id": self.id, "list": self.list, "format": self.format, "url": masked(self.url),
                "owner": self.owner, "components": list(self.components), "state": self.state,
                "created_at": self.created_at, "confirmed_at": self.confirmed_at, "failures": self.failures,
                "last_error": self.last_error, "disabled_at": self.disabled_at, "notice": self.notice}


def masked(url: str) -> str:
    """``https://hooks.slack.com/…``: enough to recognise, not enough to post."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…"


@dataclass(frozen=True)
class EndpointRequest:
    """A registration, already validated (``url_key`` is the URL's SHA-256)."""

    list: str
    format: str
    url: str
    url_key: str
    owner: str | None
    components: tuple[str, ...]


class EndpointStore:
    """Typed access to ``subscriber_endpoints`` (cheap to make: holds no state)."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    # ------------------------------------------------------------ reading

    def get(self, endpoint_id: str) -> Endpoint:
        with self.ledger.read() as conn:
            row = conn.execute(select(_E).where(_E.c.id == endpoint_id)).first()
        if row is None:
            raise NotFound("no such endpoint")
        return Endpoint.from_row(row)

    def page(self, *, list_name: str | None = None, state: str | None = None, after: str | None = None,
             limit: int = 100) -> list[Endpoint]:
        q = select(_E).order_by(_E.c.id).limit(limit)
        if list_name:
            q = q.where(_E.c.list == list_name)
        if state:
            q = q.where(_E.c.state == state)
        if after:
            q = q.where(_E.c.id > after)
        with self.ledger.read() as conn:
            return [Endpoint.from_row(r) for r in conn.execute(q)]

    def confirmed(self, lists: Sequence[str], formats: Sequence[str]) -> list[Endpoint]:
        """Confirmed endpoints of ``lists`` in ``formats``, by id (the fan-out's order)."""
        q = select(_E).where(_E.c.list.in_(list(lists)), _E.c.state == "confirmed",
                             _E.c.format.in_(list(formats))).order_by(_E.c.id)
        with self.ledger.read() as conn:
            return [Endpoint.from_row(r) for r in conn.execute(q)]

    def states(self, endpoint_ids: Sequence[str]) -> dict[str, str]:
        """The current state of each of ``endpoint_ids`` (a fan-out skips those disabled meanwhile)."""
        if not endpoint_ids:
            return {}
        with self.ledger.read() as conn:
            rows = conn.execute(select(_E.c.id, _E.c.state).where(_E.c.id.in_(list(endpoint_ids)))).all()
        return {r.id: r.state for r in rows}

    # ------------------------------------------------------------ the public registration

    def request(self, req: EndpointRequest, *, stale_before: float, actor: str = "public") -> Endpoint:
        """A new URL becomes pending; a pending one keeps its choices unless its request is older
        than ``stale_before``; a disabled one starts over (its owner registers it again); a
        confirmed one is left as it is."""
        try:
            return self._request(req, stale_before, actor)
        except IntegrityError:  # the same URL at the same moment in another process: it won
            return self._request(req, stale_before, actor)

    def _request(self, req: EndpointRequest, stale_before: float, actor: str) -> Endpoint:
        now = self.ledger.clock()
        pending = {"state": "pending", "format": req.format, "url": req.url, "owner": req.owner,
                   "components": list(req.components), "requested_at": now, "challenge_sent_at": None,
                   "code_hash": None, "confirmed_at": None, "failures": 0, "last_error": None,
                   "disabled_at": None, "notice": None}
        with self.ledger.tx() as conn:
            row = conn.execute(select(_E).where(_E.c.list == req.list, _E.c.url_key == req.url_key)
                               .with_for_update()).first()
            if row is None:
                eid = new_id("end")
                conn.execute(insert(_E).values(id=eid, list=req.list, url_key=req.url_key, created_at=now,
                                               **pending))
                self.ledger.audit(actor, "endpoint.request", eid, {"list": req.list, "format": req.format}, conn)
            else:
                eid = row.id
                if row.state in RESTARTABLE or (row.state == "pending" and row.requested_at < stale_before):
                    conn.execute(update(_E).where(_E.c.id == eid, _E.c.state == row.state).values(**pending))
                    self.ledger.audit(actor, "endpoint.request", eid, {"list": req.list, "from": row.state}, conn)
            return Endpoint.from_row(conn.execute(select(_E).where(_E.c.id == eid)).one())

    def claim_challenge(self, endpoint_id: str, code_hash: str, *, not_since: float) -> float | None:
        """Put a new challenge code in flight unless one went out after ``not_since`` (older codes
        stop working). The moment claimed, or None when the caller must not send one."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            res = conn.execute(update(_E).where(
                _E.c.id == endpoint_id, _E.c.state == "pending",
                or_(_E.c.challenge_sent_at.is_(None), _E.c.challenge_sent_at <= not_since))
                .values(challenge_sent_at=now, code_hash=code_hash))
        return now if res.rowcount == 1 else None

    def release_challenge(self, endpoint_id: str, sent_at: float) -> None:
        """The challenge claimed at ``sent_at`` could not be delivered: the next request may try again."""
        with self.ledger.tx() as conn:
            conn.execute(update(_E).where(_E.c.id == endpoint_id, _E.c.challenge_sent_at == sent_at)
                         .values(challenge_sent_at=None, code_hash=None))

    def pending_by_code(self, code_hash: str, *, requested_after: float) -> Endpoint | None:
        """The pending endpoint whose current challenge carried this code (read only)."""
        with self.ledger.read() as conn:
            row = conn.execute(select(_E).where(_E.c.code_hash == code_hash, _E.c.state == "pending",
                                                _E.c.requested_at >= requested_after)).first()
        return Endpoint.from_row(row) if row is not None else None

    def confirm(self, code_hash: str, *, requested_after: float) -> Endpoint | None:
        """pending → confirmed for the endpoint whose challenge carried this code (once: the code
        is forgotten). None when no pending endpoint has it or its request is too old."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            row = conn.execute(select(_E.c.id).where(_E.c.code_hash == code_hash, _E.c.state == "pending",
                                                     _E.c.requested_at >= requested_after)
                               .with_for_update()).first()
            if row is None:
                return None
            res = conn.execute(update(_E).where(_E.c.id == row.id, _E.c.state == "pending",
                                                _E.c.code_hash == code_hash)
                               .values(state="confirmed", confirmed_at=now, code_hash=None, failures=0))
            if res.rowcount != 1:
                return None
            self.ledger.audit("public", "endpoint.confirm", row.id, {}, conn)
            return Endpoint.from_row(conn.execute(select(_E).where(_E.c.id == row.id)).one())

    def unsubscribe(self, endpoint_id: str, *, actor: str = "public") -> Endpoint | None:
        """The owner's unsubscribe link: any state → ``unsubscribed`` (a pending challenge's code
        stops working). Repeating it changes nothing. None when there is no such endpoint."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            res = conn.execute(update(_E).where(_E.c.id == endpoint_id, _E.c.state != "unsubscribed")
                               .values(state="unsubscribed", code_hash=None, disabled_at=now, notice=None))
            if res.rowcount == 1:
                self.ledger.audit(actor, "endpoint.unsubscribed", endpoint_id, {}, conn)
            row = conn.execute(select(_E).where(_E.c.id == endpoint_id)).first()
        return Endpoint.from_row(row) if row is not None else None

    # ------------------------------------------------------------ failure tracking

    def succeeded(self, endpoint_id: str) -> None:
        """A post landed: the run of failures is over (written only when there was one)."""
        with self.ledger.tx() as conn:
            conn.execute(update(_E).where(_E.c.id == endpoint_id, _E.c.failures > 0)
                         .values(failures=0, last_error=None))

    def failed(self, endpoint_id: str, error: str, *, max_failures: int) -> Endpoint | None:
        """Count one failed post; the endpoint is disabled when the run reaches ``max_failures``.
        Returns the endpoint when *this* call disabled it (exactly one caller tells its owner)."""
        now = self.ledger.clock()
        with self.ledger.tx() as conn:
            conn.execute(update(_E).where(_E.c.id == endpoint_id, _E.c.state == "confirmed")
                         .values(failures=_E.c.failures + 1, last_error=error[:500]))
            res = conn.execute(update(_E).where(_E.c.id == endpoint_id, _E.c.state == "confirmed",
                                                _E.c.failures >= max_failures)
                               .values(state="disabled", disabled_at=now))
            if res.rowcount != 1:
                return None
            self.ledger.audit("system", "endpoint.disabled", endpoint_id,
                              {"failures": max_failures, "error": error[:200]}, conn)
            return Endpoint.from_row(conn.execute(select(_E).where(_E.c.id == endpoint_id)).one())

    def set_notice(self, endpoint_id: str, notice: str) -> None:
        """How the owner heard of the disabling (``mailed``, ``failed``, ``none``): the admin listing shows it."""
        with self.ledger.tx() as conn:
            conn.execute(update(_E).where(_E.c.id == endpoint_id).values(notice=notice))

    # ------------------------------------------------------------ administrators

    def set_state(self, endpoint_id: str, state: str, *, actor: str) -> Endpoint:
        """An administrator enables (→ confirmed, failures cleared) or disables an endpoint. A
        pending endpoint stays pending: only its owner's challenge code confirms it; an
        unsubscribed one stays unsubscribed: only its owner registering it again brings it back."""
        values: dict[str, Any] = {"state": state}
        if state == "confirmed":
            values.update(failures=0, last_error=None, disabled_at=None, notice=None)
        else:
            values.update(disabled_at=self.ledger.clock(), notice="none")
        with self.ledger.tx() as conn:
            res = conn.execute(update(_E).where(_E.c.id == endpoint_id, _E.c.state.not_in(("pending", "unsubscribed")),
                                                _E.c.state != state).values(**values))
            if res.rowcount == 1:
                self.ledger.audit(actor, f"endpoint.{'enabled' if state == 'confirmed' else 'disabled'}",
                                  endpoint_id, {}, conn)
            row = conn.execute(select(_E).where(_E.c.id == endpoint_id)).first()
        if row is None:
            raise NotFound("no such endpoint")
        return Endpoint.from_row(row)
