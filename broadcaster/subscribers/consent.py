"""Consent: subscribing (double opt-in), confirming, unsubscribing, and an admin's changes.

The rules that keep consent with the owner of the address:

* A public subscribe request never changes a subscription someone already asked for: a
  pending one keeps its choices until its own link confirms it (the confirmation page shows
  them, and its owner may withdraw the consent to promotions there), a confirmed one is left
  alone. Only a subscription that ended (unsubscribed, bounced) or whose every link expired
  starts over with the new request's choices — and a restart makes its older links worthless.
* Following a link never changes anything: confirmation and unsubscribe are POSTs from the
  page the link opens (mail scanners follow links; they do not press buttons).
* At most one confirmation mail per address per ``subscribers.confirm_resend_after``.
* The answer is the same for a new, a pending and a confirmed address (see
  ``api/routes_subscribers.py``); the mail goes out on a background thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from .. import components as components_of
from ..channels import _mail
from ..config import Settings
from ..errors import InvalidRequest, NotFound
from ..ledger import Ledger
from ..ledger.subscribers import Request, Subscriber, SubscriberStore
from ..requests import check_subscriber
from . import confirmation, links

if TYPE_CHECKING:
    from ..runtime import Runtime

STATES = ("pending", "confirmed", "opted_out", "unsubscribed", "bounced")
MAX_COMPONENTS = 50
MAX_NAME = 200
LIST_NAME_MAX = 100
#: what an unsubscribe stopped: ``promotions`` (the consent to marketing) or ``everything``
Stopped = Literal["promotions", "everything"]


def normalize_address(address: str) -> str:
    return _mail.normalize(address or "")


def check_address(address: str) -> str:
    check_subscriber("address", address)  # as given: normalizing must not hide a line break
    a = normalize_address(address)
    if len(a) > 320 or not _mail.valid_address(a):
        raise InvalidRequest("address: not an email address", field="address")
    return a


def check_list(name: str) -> str:
    name = (check_subscriber("list", name) or "").strip()
    if not name or len(name) > LIST_NAME_MAX:
        raise InvalidRequest("list: give a list name of 1 to 100 characters", field="list")
    return name


def check_name(name: str | None) -> str | None:
    if name is None:
        return None
    if len(name) > MAX_NAME:
        raise InvalidRequest(f"name: at most {MAX_NAME} characters", field="name")
    return check_subscriber("name", name)


def check_components(components: Iterable[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for c in components or ():
        if not isinstance(c, str):
            raise InvalidRequest("components: must be names", field="components")
        c = (check_subscriber("components", c) or "").strip()
        if not c or len(c) > 100 or ";" in c:
            raise InvalidRequest("components: names are 1 to 100 characters, without ';'", field="components")
        if c not in out:
            out.append(c)
    if len(out) > MAX_COMPONENTS:
        raise InvalidRequest(f"components: at most {MAX_COMPONENTS}", field="components")
    return tuple(out)


def known_components(components: Iterable[str] | None, settings: Settings) -> tuple[str, ...]:
    """:func:`check_components`, then each name in its configured spelling; a name no status
    channel declares is refused with ``details.known`` (as at submit: an announcement naming it
    is refused, so a subscription to it would never be served). A validation error, the same
    whoever is subscribed, so it tells nothing about who is."""
    names = check_components(components)
    return tuple(components_of.resolve(names, settings)) if names else ()


def public_lists(settings: Settings) -> set[str]:
    """Lists anyone may subscribe to: configured ones and those an email channel mails."""
    names = set(links.settings_of(settings).lists)
    for ch in settings.channels.values():
        if getattr(ch, "kind", None) == "email" and getattr(ch, "enabled", True):
            names.update(getattr(ch, "lists", ()) or ())
    return names


def _request(list_name: str, address: str, components: Iterable[str] | None, name: str | None,
             marketing: bool) -> Request:
    return Request(list=check_list(list_name), address=check_address(address), name=check_name(name),
                   components=check_components(components), marketing=bool(marketing))


# ---------------------------------------------------------------- reading


def get(ledger: Ledger, subscriber_id: str) -> Subscriber:
    return SubscriberStore(ledger).get(subscriber_id)


def find(ledger: Ledger, list_name: str, address: str) -> Subscriber | None:
    return SubscriberStore(ledger).find(list_name, normalize_address(address))


def list_subscribers(ledger: Ledger, *, list_name: str | None = None, state: str | None = None,
                     after: str | None = None, limit: int = 100) -> list[Subscriber]:
    """Ordered by id, paged with ``after`` (the last id of the previous page)."""
    return SubscriberStore(ledger).page(list_name=list_name, state=state, after=after, limit=limit)


# ---------------------------------------------------------------- the public double opt-in


def subscribe(runtime: Runtime, list_name: str, address: str, *, components: Iterable[str] | None = None,
              name: str | None = None, marketing: bool = False,
              sender: confirmation.ConfirmationSender | None = None) -> Subscriber:
    """Record the request (see the module's rules) and, when the subscription is pending and no
    confirmation mail went to the address within the interval, queue one. The caller must not
    tell anyone what came back."""
    settings = runtime.settings
    req = _request(list_name, address, known_components(components, settings), name, marketing)
    if req.list not in public_lists(settings):
        raise InvalidRequest("list: no such list", field="list")
    links.secret(settings)  # refuse before writing anything if links cannot be signed
    send = confirmation.resolve_sender(runtime, sender)  # and if nothing could mail them
    cfg = links.settings_of(settings)
    store = SubscriberStore(runtime.ledger)
    now = runtime.ledger.clock()
    sub = store.request(req, stale_before=now - cfg.confirm_within)
    # asked for every state (it changes only a pending row), so each answer costs the same work
    claimed = store.claim_confirmation_mail(sub.id, sub.address, not_since=now - cfg.confirm_resend_after)
    if sub.state != "pending" or not claimed:
        return sub
    token = links.confirm_token(settings, sub.id, sub.requested_at or sub.created_at, now)
    # the confirmation carries a leave-the-list link too: whoever did not ask stops any further mail
    leave = links.link(settings.public_url, links.UNSUBSCRIBE_PATH, links.unsubscribe_token(settings, sub.id))
    subject, text = confirmation.confirmation_text(sub, links.link(settings.public_url, links.CONFIRM_PATH, token),
                                                   leave)
    confirmation.mailer(runtime).submit(confirmation.Job(sub.id, sub.address, subject, text, now, send, leave))
    return sub


def pending_of(ledger: Ledger, settings: Settings | None, token: str) -> Subscriber:
    """The subscription a confirmation link is for, unchanged (what the page shows)."""
    sid, requested = links.read_confirm_token(settings, token, ledger.clock())
    try:
        sub = SubscriberStore(ledger).get(sid)
    except NotFound:
        raise InvalidRequest("this link is not valid any more; please subscribe again", field="token") from None
    if sub.state == "confirmed":
        return sub
    if sub.state != "pending" or (requested is not None and (sub.requested_at or sub.created_at) != requested):
        raise InvalidRequest("this subscription was ended or asked for again meanwhile; use the newest link "
                             "or subscribe again", field="token")
    return sub


def confirm(ledger: Ledger, settings: Settings | None, token: str, *, marketing: bool | None = None) -> Subscriber:
    """pending → confirmed through its own link; ``marketing`` is the owner's answer on the page
    (None keeps what was asked). Confirming twice is harmless."""
    sid, requested = links.read_confirm_token(settings, token, ledger.clock())
    store = SubscriberStore(ledger)
    try:
        current = store.get(sid)
    except NotFound:
        raise InvalidRequest("this link is not valid any more; please subscribe again", field="token") from None
    if current.state == "confirmed":
        return current
    # a link mailed before links signed the request is taken to be for the current one
    sub = store.confirm(sid, requested if requested is not None else current.requested_at or current.created_at,
                        marketing) if current.state == "pending" else None
    if sub is None or sub.state != "confirmed":
        raise InvalidRequest("this subscription was ended or asked for again meanwhile; use the newest link "
                             "or subscribe again", field="token")
    return sub


# ---------------------------------------------------------------- unsubscribing


def unsubscribe(ledger: Ledger, settings: Settings | None, token: str, *, everything: bool = False,
                actor: str = "public") -> tuple[Subscriber, Stopped]:
    """Apply an unsubscribe link. A ``marketing`` link (the one-click of a promotion) withdraws
    the consent to promotions and nothing else; a ``list`` link — or any link with
    ``everything`` — leaves the list: no mail of any kind. Repeating it changes nothing."""
    sid, scope = links.read_unsubscribe_token(settings, token)
    store = SubscriberStore(ledger)
    if scope == "marketing" and not everything:
        sub = store.withdraw_marketing(sid, actor=actor, reason="one-click")
        stopped: Stopped = "promotions"
    else:
        sub = store.set_state(sid, "unsubscribed", keep=("unsubscribed",), actor=actor, reason="link")
        stopped = "everything"
    if sub is None:
        raise InvalidRequest("this link is not valid any more", field="token")
    return sub, stopped


def unsubscribe_target(ledger: Ledger, settings: Settings | None, token: str) -> tuple[Subscriber, str]:
    """``(subscriber, scope)`` an unsubscribe link is for, unchanged (what its page shows)."""
    sid, scope = links.read_unsubscribe_token(settings, token)
    try:
        return SubscriberStore(ledger).get(sid), scope
    except NotFound:
        raise InvalidRequest("this link is not valid any more", field="token") from None


# ---------------------------------------------------------------- administrators


def add(ledger: Ledger, list_name: str, address: str, *, components: Iterable[str] | None = None,
        name: str | None = None, marketing: bool = False, state: str = "pending",
        actor: str = "admin") -> tuple[Subscriber, bool]:
    """An administrator's add: creates or overwrites the subscription in ``state``. Returns
    ``(subscriber, needs_confirmation)``. Not for public requests (see :func:`subscribe`).
    Consent to promotions is never assumed: ``marketing`` only when it was given."""
    if state not in STATES:
        raise InvalidRequest(f"state: one of {', '.join(STATES)}", field="state")
    sub = SubscriberStore(ledger).add(_request(list_name, address, components, name, marketing), state=state,
                                      actor=actor)
    return sub, sub.state == "pending"


def set_state(ledger: Ledger, subscriber_id: str, state: str, *, actor: str, reason: str = "") -> Subscriber:
    if state not in STATES:
        raise InvalidRequest(f"state: one of {', '.join(STATES)}", field="state")
    # "unsubscribed" is final for a link: an opt-out never turns back into a subscription by itself
    keep = {"opted_out": ("unsubscribed", "opted_out"), "unsubscribed": ("unsubscribed",)}.get(state, (state,))
    sub = SubscriberStore(ledger).set_state(subscriber_id, state, keep=keep, actor=actor, reason=reason)
    if sub is None:
        raise InvalidRequest("this link is not valid any more", field="token")
    return sub
