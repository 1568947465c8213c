"""Subscriber lists: double opt-in, per-component subscriptions, signed links, opt-outs, bounces.

States of a subscriber (one row per list and address):

* ``pending``      — asked to subscribe; gets nothing until the emailed link is followed
* ``confirmed``    — gets the announcements of the list (filtered, see :func:`subscribers_for`)
* ``opted_out``    — used the one-click unsubscribe of a *promotional* mail (RFC 8058): gets
                     nothing, except ``critical`` incidents where ``subscribers.critical_overrides_optout``
                     is set (a business may judge an outage notice to be owed even then)
* ``unsubscribed`` — unsubscribed from the list through any other link: gets nothing, ever
* ``bounced``      — the mail server refused the address for good: gets nothing until re-subscribed

``marketing`` is the consent to promotional mail: promotions skip addresses without it.
``components`` (empty = all) narrows what a subscriber gets to announcements that touch one of
those components; announcements naming no component go to everyone.

Links are signed with HMAC-SHA256 (``subscribers.secret_key``, else ``$BROADCASTER_SECRET_KEY``),
so nobody can confirm or unsubscribe an address from a link they did not receive. Unsubscribe
links do not expire (old mails must keep working); confirmation links do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import quote

from sqlalchemy import insert, select, update

from .channels import _mail
from .config import Settings, SubscribersSettings
from .errors import ConfigError, InvalidRequest, NotFound
from .ledger import Ledger
from .ledger import schema as t
from .ledger.repository import new_id
from .models import Post

log = logging.getLogger(__name__)

STATES = ("pending", "confirmed", "opted_out", "unsubscribed", "bounced")
#: the states that receive mail (``opted_out`` only for critical incidents, where configured)
RECEIVING = ("confirmed",)
SECRET_ENV = "BROADCASTER_SECRET_KEY"
MAX_COMPONENTS = 50
MAX_NAME = 200
LIST_NAME_MAX = 100

#: a function that mails one confirmation request: ``sender(address, subject, text)``
ConfirmationSender = Callable[[str, str, str], None]


#: the ``subscribers:`` section is defined once, in config.py
SubscriberSettings = SubscribersSettings


def settings_of(settings: Settings | None) -> SubscribersSettings:
    """The ``subscribers`` section (defaults when no settings are given)."""
    raw = getattr(settings, "subscribers", None) if settings is not None else None
    return raw if isinstance(raw, SubscribersSettings) else SubscribersSettings()


# ---------------------------------------------------------------- signed tokens


def _secret(settings: Settings | None) -> bytes:
    cfg = settings_of(settings)
    value = cfg.secret_key.reveal() if cfg.secret_key else os.environ.get(SECRET_ENV, "")
    if len(value) < 16:
        raise ConfigError([("subscribers.secret_key",
                            f"is not set or shorter than 16 characters (or set ${SECRET_ENV}); "
                            "it signs confirmation and unsubscribe links")])
    return value.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(settings: Settings | None, purpose: str, *fields: str) -> str:
    """``payload.signature``; the payload names the purpose so a token of one kind is useless as another."""
    payload = "\x1f".join((purpose, *fields)).encode()
    mac = hmac.new(_secret(settings), payload, hashlib.sha256).digest()[:20]
    return f"{_b64(payload)}.{_b64(mac)}"


def verify(settings: Settings | None, token: str | None, purpose: str) -> list[str]:
    """The fields of a valid token of ``purpose``; InvalidRequest for anything else (never says why)."""
    bad = InvalidRequest("this link is not valid; it may have been mistyped or cut short", field="token")
    if not token or len(token) > 1000 or token.count(".") != 1:
        raise bad
    body, sig = token.split(".")
    try:
        payload, mac = _unb64(body), _unb64(sig)
    except (ValueError, TypeError):
        raise bad from None
    expected = hmac.new(_secret(settings), payload, hashlib.sha256).digest()[:20]
    if not hmac.compare_digest(mac, expected):
        raise bad
    parts = payload.decode("utf-8", "replace").split("\x1f")
    if parts[0] != purpose:
        raise bad
    return parts[1:]


def confirm_token(settings: Settings | None, subscriber_id: str, now: float) -> str:
    expires = int(now + settings_of(settings).confirm_within)
    return sign(settings, "confirm", subscriber_id, str(expires))


def unsubscribe_token(settings: Settings | None, subscriber_id: str, scope: str = "list") -> str:
    """``scope`` is ``list`` (leave the list) or ``marketing`` (the one-click link of a promotion)."""
    return sign(settings, "unsubscribe", subscriber_id, scope)


def _url(public_url: str, path: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{path}?token={quote(token, safe='')}"


# ---------------------------------------------------------------- rows


@dataclass(frozen=True)
class Subscriber:
    id: str
    list: str
    address: str
    name: str | None
    components: tuple[str, ...]
    state: str
    marketing: bool
    created_at: float
    confirmed_at: float | None
    unsubscribed_at: float | None

    @classmethod
    def from_row(cls, row) -> "Subscriber":
        m = row._mapping
        return cls(id=m["id"], list=m["list"], address=m["address"], name=m["name"],
                   components=tuple(m["components"] or ()), state=m["state"], marketing=bool(m["marketing"]),
                   created_at=m["created_at"], confirmed_at=m["confirmed_at"], unsubscribed_at=m["unsubscribed_at"])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "list": self.list, "address": self.address, "name": self.name,
                "components": list(self.components), "state": self.state, "marketing": self.marketing,
                "created_at": self.created_at, "confirmed_at": self.confirmed_at,
                "unsubscribed_at": self.unsubscribed_at}


def normalize_address(address: str) -> str:
    return _mail.normalize(address or "")


def check_address(address: str) -> str:
    a = normalize_address(address)
    if len(a) > 320 or not _mail.valid_address(a):
        raise InvalidRequest("address: not an email address", field="address")
    return a


def check_list(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > LIST_NAME_MAX or any(c in name for c in "\r\n\t"):
        raise InvalidRequest("list: give a list name of 1 to 100 characters", field="list")
    return name


def check_components(components: Iterable[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for c in components or ():
        if not isinstance(c, str):
            raise InvalidRequest("components: must be names", field="components")
        c = c.strip()
        if not c or len(c) > 100 or ";" in c:
            raise InvalidRequest("components: names are 1 to 100 characters, without ';'", field="components")
        if c not in out:
            out.append(c)
    if len(out) > MAX_COMPONENTS:
        raise InvalidRequest(f"components: at most {MAX_COMPONENTS}", field="components")
    return tuple(out)


def get(ledger: Ledger, subscriber_id: str) -> Subscriber:
    with ledger.read() as conn:
        row = conn.execute(select(t.subscribers).where(t.subscribers.c.id == subscriber_id)).first()
    if row is None:
        raise NotFound("no such subscriber")
    return Subscriber.from_row(row)


def find(ledger: Ledger, list_name: str, address: str) -> Subscriber | None:
    s = t.subscribers
    with ledger.read() as conn:
        row = conn.execute(select(s).where(s.c.list == list_name, s.c.address == normalize_address(address))).first()
    return Subscriber.from_row(row) if row else None


def list_subscribers(ledger: Ledger, *, list_name: str | None = None, state: str | None = None,
                     after: str | None = None, limit: int = 100) -> list[Subscriber]:
    """Ordered by id, paged with ``after`` (the last id of the previous page)."""
    s = t.subscribers
    q = select(s).order_by(s.c.id).limit(limit)
    if list_name:
        q = q.where(s.c.list == list_name)
    if state:
        q = q.where(s.c.state == state)
    if after:
        q = q.where(s.c.id > after)
    with ledger.read() as conn:
        return [Subscriber.from_row(r) for r in conn.execute(q)]


def public_lists(settings: Settings) -> set[str]:
    """Lists anyone may subscribe to: configured ones and those an email channel mails."""
    names = set(settings_of(settings).lists)
    for ch in settings.channels.values():
        if getattr(ch, "kind", None) == "email" and getattr(ch, "enabled", True):
            names.update(getattr(ch, "lists", ()) or ())
    return names


# ---------------------------------------------------------------- subscribe and confirm


def add(ledger: Ledger, list_name: str, address: str, *, components: Iterable[str] | None = None,
        name: str | None = None, marketing: bool = True, state: str = "pending", actor: str = "public") -> tuple[Subscriber, bool]:
    """Create or renew a subscription. Returns ``(subscriber, needs_confirmation)``.

    A confirmed address stays as it is (nobody can change someone else's choices without their
    link); an unsubscribed, opted-out or bounced one starts over as ``pending``.
    """
    list_name = check_list(list_name)
    address = check_address(address)
    comps = check_components(components)
    if name is not None and len(name) > MAX_NAME:
        raise InvalidRequest(f"name: at most {MAX_NAME} characters", field="name")
    if state not in STATES:
        raise InvalidRequest(f"state: one of {', '.join(STATES)}", field="state")
    s = t.subscribers
    now = ledger.clock()
    with ledger.tx() as conn:
        row = conn.execute(select(s).where(s.c.list == list_name, s.c.address == address)).first()
        if row is None:
            sid = new_id("sub")
            conn.execute(insert(s).values(id=sid, list=list_name, address=address, name=name, components=list(comps),
                                          state=state, marketing=marketing, created_at=now,
                                          confirmed_at=now if state == "confirmed" else None))
            ledger.audit(actor, "subscriber.add", sid, {"list": list_name, "state": state}, conn)
        else:
            sid = row.id
            if row.state != "confirmed" or state != "pending":
                conn.execute(update(s).where(s.c.id == sid).values(
                    state=state, components=list(comps), marketing=marketing, name=name if name is not None else row.name,
                    confirmed_at=now if state == "confirmed" else None, unsubscribed_at=None))
                ledger.audit(actor, "subscriber.renew", sid, {"list": list_name, "from": row.state, "state": state}, conn)
        fresh = Subscriber.from_row(conn.execute(select(s).where(s.c.id == sid)).first())
    return fresh, fresh.state == "pending"


def confirm(ledger: Ledger, settings: Settings | None, token: str) -> Subscriber:
    sid, expires = verify(settings, token, "confirm")
    if ledger.clock() > float(expires):
        raise InvalidRequest("this confirmation link has expired; please subscribe again", field="token")
    s = t.subscribers
    now = ledger.clock()
    with ledger.tx() as conn:
        res = conn.execute(update(s).where(s.c.id == sid, s.c.state == "pending").values(state="confirmed",
                                                                                          confirmed_at=now))
        if res.rowcount == 1:
            ledger.audit("public", "subscriber.confirm", sid, {}, conn)
        row = conn.execute(select(s).where(s.c.id == sid)).first()
    if row is None:
        raise InvalidRequest("this link is not valid any more; please subscribe again", field="token")
    sub = Subscriber.from_row(row)
    if sub.state != "confirmed":
        raise InvalidRequest("this subscription was ended meanwhile; please subscribe again", field="token")
    return sub


def unsubscribe(ledger: Ledger, settings: Settings | None, token: str, *, actor: str = "public") -> Subscriber:
    """Apply an unsubscribe link. Doing it twice is harmless (the second changes nothing)."""
    sid, scope = verify(settings, token, "unsubscribe")
    return set_state(ledger, sid, "opted_out" if scope == "marketing" else "unsubscribed", actor=actor,
                     reason="one-click" if scope == "marketing" else "link")


def set_state(ledger: Ledger, subscriber_id: str, state: str, *, actor: str, reason: str = "") -> Subscriber:
    if state not in STATES:
        raise InvalidRequest(f"state: one of {', '.join(STATES)}", field="state")
    s = t.subscribers
    now = ledger.clock()
    values: dict[str, Any] = {"state": state}
    if state in ("unsubscribed", "opted_out"):
        values["unsubscribed_at"] = now
    if state == "opted_out":
        values["marketing"] = False
    if state == "confirmed":
        values.update(confirmed_at=now, unsubscribed_at=None)
    # "unsubscribed" is final for a link: an opt-out never turns back into a subscription by itself
    keep = {"opted_out": ("unsubscribed", "opted_out"), "unsubscribed": ("unsubscribed",)}.get(state, (state,))
    with ledger.tx() as conn:
        res = conn.execute(update(s).where(s.c.id == subscriber_id, s.c.state.not_in(keep)).values(**values))
        if res.rowcount == 1:
            ledger.audit(actor, f"subscriber.{state}", subscriber_id, {"reason": reason} if reason else {}, conn)
        row = conn.execute(select(s).where(s.c.id == subscriber_id)).first()
    if row is None:
        raise InvalidRequest("this link is not valid any more", field="token")
    return Subscriber.from_row(row)


def mark_bounced(ledger: Ledger, address: str, *, list_name: str | None = None, actor: str = "system",
                 reason: str = "") -> int:
    """A hard bounce: the address stops receiving mail on every list (or just ``list_name``)."""
    s = t.subscribers
    cond = [s.c.address == normalize_address(address), s.c.state.in_(("pending", "confirmed"))]
    if list_name:
        cond.append(s.c.list == list_name)
    with ledger.tx() as conn:
        ids = list(conn.execute(select(s.c.id).where(*cond)).scalars())
        if not ids:
            return 0
        conn.execute(update(s).where(s.c.id.in_(ids), s.c.state.in_(("pending", "confirmed"))).values(state="bounced"))
        for sid in ids:
            ledger.audit(actor, "subscriber.bounced", sid, {"reason": reason[:200]} if reason else {}, conn)
    return len(ids)


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

    def __call__(self, runtime, report=None) -> int:
        now = runtime.clock()
        if now - self.last_run < self.every:
            return 0
        self.last_run = now
        email_channels = [n for n, c in runtime.settings.channels.items() if getattr(c, "kind", None) == "email"]
        if not email_channels:
            return 0
        di, d = t.delivery_items, t.deliveries
        with runtime.ledger.read() as conn:
            rows = conn.execute(select(di.c.item, di.c.detail, di.c.at).where(
                di.c.state == "refused", di.c.at > self.seen_until,
                di.c.delivery_id.in_(select(d.c.id).where(d.c.channel.in_(email_channels)))).order_by(di.c.at)).all()
        n = 0
        for r in rows:
            n += mark_bounced(runtime.ledger, r.item, actor="bounces", reason=(r.detail or "refused")[:200])
            self.seen_until = max(self.seen_until, r.at)
        if report is not None and n:
            report.extra["bounced"] = n
        return n


# ---------------------------------------------------------------- confirmation mail


def confirmation_text(sub: Subscriber, url: str) -> tuple[str, str]:
    subject = f"Please confirm your subscription to {sub.list}"
    text = (f"Someone, hopefully you, asked to receive announcements of {sub.list!r} at this address.\n\n"
            f"To confirm, open this link:\n{url}\n\n"
            "If it was not you, ignore this message: nothing will be sent without your confirmation.")
    return subject, text


def channel_sender(runtime, channel_name: str | None) -> ConfirmationSender:
    """A sender that mails through an email channel's own transport (SMTP or HTTP API)."""
    settings = runtime.settings
    names = [n for n, c in settings.channels.items() if getattr(c, "kind", None) == "email" and c.enabled]
    if channel_name is None:
        if not names:
            raise ConfigError([("subscribers.confirmation_channel",
                                "no email channel is configured to mail confirmation requests")])
        channel_name = names[0]
    elif channel_name not in names:
        raise ConfigError([("subscribers.confirmation_channel", f"{channel_name!r} is not an enabled email channel")])

    def send(address: str, subject: str, text: str) -> None:
        channel = runtime.channel(channel_name)
        st = channel.settings
        domain = _mail.domain_of(st.from_address)
        key = "confirm-" + hashlib.sha256(f"{address}\x00{text}".encode()).hexdigest()[:24]
        html_body = "<p>" + "</p><p>".join(
            _escape(p) for p in text.split("\n\n")) + "</p>"
        mail = _mail.Mail(to=address, subject=subject, text=text + "\n", html=html_body,
                          headers=(("Message-ID", _mail.message_id(key, address, domain)),))
        msg = _mail.to_mime(mail, from_address=st.from_address, reply_to=st.reply_to, date=runtime.clock())
        sender = channel.sender()
        sender.open()
        try:
            outcome, _detail = sender.deliver(mail, msg)
        finally:
            sender.close()
        if outcome != _mail.DONE:
            raise InvalidRequest("the mail server refused this address", field="address")

    return send


def _escape(text: str) -> str:
    import html

    return html.escape(text).replace("\n", "<br>")


def subscribe(runtime, list_name: str, address: str, *, components: Iterable[str] | None = None,
              name: str | None = None, marketing: bool = True, sender: ConfirmationSender | None = None) -> Subscriber:
    """The public double opt-in: store as pending and mail a signed confirmation link.

    The answer is the same whether the address was new, pending or already confirmed, so the
    endpoint tells nobody who is subscribed.
    """
    settings = runtime.settings
    list_name = check_list(list_name)
    if list_name not in public_lists(settings):
        raise InvalidRequest("list: no such list", field="list")
    _secret(settings)  # refuse before writing anything if links cannot be signed
    sub, needs = add(runtime.ledger, list_name, address, components=components, name=name, marketing=marketing)
    if needs:
        token = confirm_token(settings, sub.id, runtime.clock())
        url = _url(settings.public_url, "/api/v1/subscribe/confirm", token)
        subject, text = confirmation_text(sub, url)
        send = sender or runtime.channel_io.get("confirmation_sender") or \
            channel_sender(runtime, settings_of(settings).confirmation_channel)
        send(sub.address, subject, text)
        runtime.ledger.audit("public", "subscriber.confirmation_sent", sub.id, {"list": list_name})
    return sub


# ---------------------------------------------------------------- who gets a post


_warned_no_secret = False


def subscribers_for(ledger: Ledger, lists: Iterable[str], post: Post, public_url: str,
                    settings: Settings | None = None) -> list[tuple[str, str | None]]:
    """``(address, unsubscribe URL)`` for every address that should get ``post`` on ``lists``.

    Confirmed subscribers, except: promotions skip those without marketing consent; an
    announcement naming components skips subscribers of other components. A ``critical``
    incident reaches every confirmed subscriber whatever their components, and — only with
    ``critical_overrides_optout`` — the promotional opt-outs too. Unsubscribe links of
    promotions are one-click opt-outs of promotional mail; the others leave the list.
    """
    global _warned_no_secret
    cfg = settings_of(settings)
    lists = [x for x in dict.fromkeys(lists)]
    if not lists:
        return []
    kind = post.kind
    ann = None
    ann_id = (post.meta or {}).get("announcement_id")
    if ann_id:
        try:
            ann = ledger.get_announcement(ann_id)
        except NotFound:
            ann = None
    severity = ann.severity if ann else None
    components = set(ann.components) if ann else set()
    critical = kind == "incident" and severity == "critical"
    promotion = kind in cfg.promotion_kinds
    states = ["confirmed"] + (["opted_out"] if critical and cfg.critical_overrides_optout else [])
    s = t.subscribers
    q = select(s.c.id, s.c.address, s.c.components, s.c.marketing, s.c.state).where(
        s.c.list.in_(lists), s.c.state.in_(states)).order_by(s.c.list, s.c.id)
    if promotion:
        q = q.where(s.c.marketing.is_(True))
    try:
        _secret(settings)
        can_sign = True
    except ConfigError:
        can_sign = False
        if not _warned_no_secret:
            log.warning("subscribers.secret_key is not set: mail to subscribers goes out without unsubscribe links")
            _warned_no_secret = True
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    scope = "marketing" if promotion else "list"
    with ledger.read() as conn:
        for r in conn.execute(q):
            if r.address in seen:
                continue
            wanted = set(r.components or ())
            if wanted and components and not critical and not (wanted & components):
                continue
            seen.add(r.address)
            url = _url(public_url, "/api/v1/unsubscribe", unsubscribe_token(settings, r.id, scope)) if can_sign else None
            out.append((r.address, url))
    return out


def source(runtime) -> Callable[[tuple[str, ...], Post], list[tuple[str, str | None]]]:
    """The ``subscribers`` channel io for email channels, bound to a runtime."""

    def _source(lists, post):
        return subscribers_for(runtime.ledger, lists, post, public_url=runtime.settings.public_url,
                               settings=runtime.settings)

    return _source
