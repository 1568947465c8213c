"""Subscriber lists: double opt-in, per-component subscriptions, signed links, opt-outs, bounces.

States of a subscriber (one row per list and address):

* ``pending``      — asked to subscribe; gets nothing until its owner confirms on the page the
                     emailed link opens (a POST: following the link alone changes nothing)
* ``confirmed``    — gets the announcements of the list (see ``audience.py``); ``marketing``
                     says whether promotions too. The one-click unsubscribe of a promotion
                     withdraws that consent and nothing else.
* ``opted_out``    — written by older versions for that one-click: treated as ``confirmed``
                     without marketing consent
* ``unsubscribed`` — left the list through an unsubscribe link: gets nothing, ever
* ``bounced``      — the mail server refused the address for good: gets nothing until re-subscribed

``components`` (empty = all) narrows what a subscriber gets to announcements that touch one of
those components; announcements naming no component, and critical incidents, go to everyone.

The package, one concept per module: ``links`` (signed tokens), ``consent`` (who may change
what: subscribe, confirm, unsubscribe, admin), ``confirmation`` (the opt-in mail and its
background mailer), ``audience`` (who gets which mail — shared by the worker and break-glass),
``bounces``. Every statement on the table is in ``ledger/subscribers.py``.
"""

from __future__ import annotations

from ..config import SubscribersSettings
from ..ledger.subscribers import Subscriber
from .audience import (
    RECEIVING,
    Facts,
    SubscriberFile,
    facts_of,
    recipients,
    source,
    subscribers_for,
)
from .bounces import BounceWatcher, mark_bounced
from .confirmation import ConfirmationSender, channel_sender, confirmation_text, flush
from .consent import (
    LIST_NAME_MAX,
    MAX_COMPONENTS,
    MAX_NAME,
    STATES,
    add,
    check_address,
    check_components,
    check_list,
    check_name,
    confirm,
    find,
    get,
    known_components,
    list_subscribers,
    normalize_address,
    pending_of,
    public_lists,
    set_state,
    subscribe,
    unsubscribe,
    unsubscribe_target,
)
from .links import (
    SECRET_ENV,
    _b64,
    _unb64,
    confirm_token,
    read_confirm_token,
    read_unsubscribe_token,
    settings_of,
    sign,
    unsubscribe_token,
    verify,
)

#: the ``subscribers:`` section is defined once, in broadcaster.config
SubscriberSettings = SubscribersSettings

__all__ = [
    "LIST_NAME_MAX", "MAX_COMPONENTS", "MAX_NAME", "RECEIVING", "SECRET_ENV", "STATES", "BounceWatcher",
    "ConfirmationSender", "Facts", "Subscriber", "SubscriberFile", "SubscriberSettings", "_b64", "_unb64", "add",
    "channel_sender", "check_address", "check_components", "check_list", "check_name", "confirm",
    "confirm_token", "confirmation_text", "facts_of", "find", "flush", "get", "known_components", "list_subscribers", "mark_bounced",
    "normalize_address", "pending_of", "public_lists", "read_confirm_token", "read_unsubscribe_token",
    "recipients", "set_state", "settings_of", "sign", "source", "subscribe", "subscribers_for", "unsubscribe",
    "unsubscribe_target", "unsubscribe_token", "verify",
]
