"""Signed links: confirmation and unsubscribe tokens (HMAC-SHA256).

A token is ``payload.signature``; the payload names its purpose, so a token of one kind is
useless as another, and nobody can confirm or unsubscribe an address from a link they did not
receive. A confirmation token also signs the moment its request began (``requested_at``), so
a link stops working once the subscription was restarted, and it expires after
``subscribers.confirm_within``. Unsubscribe links never expire: old mails must keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from urllib.parse import quote

from ..config import Settings, SubscribersSettings
from ..errors import ConfigError, InvalidRequest

log = logging.getLogger(__name__)

SECRET_ENV = "BROADCASTER_SECRET_KEY"
CONFIRM_PATH = "/api/v1/subscribe/confirm"
UNSUBSCRIBE_PATH = "/api/v1/unsubscribe"
#: what an endpoint's unsubscribe link opens (a page with a button; its POST stops the posts)
ENDPOINT_UNSUBSCRIBE_PATH = "/api/v1/unsubscribe/endpoint"
#: ``list``: leave the list (every kind of mail stops); ``marketing``: stop promotions only
SCOPES = ("list", "marketing")


def settings_of(settings: Settings | None) -> SubscribersSettings:
    """The ``subscribers`` section (defaults when no settings are given)."""
    raw = getattr(settings, "subscribers", None) if settings is not None else None
    return raw if isinstance(raw, SubscribersSettings) else SubscribersSettings()


def secret(settings: Settings | None) -> bytes:
    cfg = settings_of(settings)
    value = cfg.secret_key.reveal() if cfg.secret_key else os.environ.get(SECRET_ENV, "")
    if len(value) < 16:
        raise ConfigError([("subscribers.secret_key",
                            (f"is not set or shorter than 16 characters (or set ${SECRET_ENV}); "
                            "it signs confirmation and unsubscribe links"))])
    return value.encode()


def can_sign(settings: Settings | None) -> bool:
    try:
        secret(settings)
    except ConfigError:
        return False
    return True


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(settings: Settings | None, purpose: str, *fields: str) -> str:
    payload = "\x1f".join((purpose, *fields)).encode()
    mac = hmac.new(secret(settings), payload, hashlib.sha256).digest()[:20]
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
    try:
        key = secret(settings)
    except ConfigError:  # nothing was ever signed, so no link can be valid; the operators are told
        log.warning("an unsubscribe or confirmation link was followed, but subscribers.secret_key is not set")
        raise bad from None
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:20]
    if not hmac.compare_digest(mac, expected):
        raise bad
    parts = payload.decode("utf-8", "replace").split("\x1f")
    if parts[0] != purpose:
        raise bad
    return parts[1:]


def confirm_token(settings: Settings | None, subscriber_id: str, requested_at: float, now: float) -> str:
    expires = int(now + settings_of(settings).confirm_within)
    return sign(settings, "confirm", subscriber_id, str(expires), repr(float(requested_at)))


def read_confirm_token(settings: Settings | None, token: str | None, now: float) -> tuple[str, float | None]:
    """``(subscriber id, requested_at)`` of a valid, unexpired confirmation token.
    ``requested_at`` is None for a link mailed before links signed it."""
    fields = verify(settings, token, "confirm")
    if len(fields) not in (2, 3):
        raise InvalidRequest("this link is not valid; it may have been mistyped or cut short", field="token")
    if now > float(fields[1]):
        raise InvalidRequest("this confirmation link has expired; please subscribe again", field="token")
    return fields[0], float(fields[2]) if len(fields) == 3 else None


def unsubscribe_token(settings: Settings | None, subscriber_id: str, scope: str = "list") -> str:
    return sign(settings, "unsubscribe", subscriber_id, scope)


def read_unsubscribe_token(settings: Settings | None, token: str | None) -> tuple[str, str]:
    """``(subscriber id, scope)`` of a valid unsubscribe token."""
    fields = verify(settings, token, "unsubscribe")
    if len(fields) != 2 or fields[1] not in SCOPES:
        raise InvalidRequest("this link is not valid; it may have been mistyped or cut short", field="token")
    return fields[0], fields[1]


def endpoint_unsubscribe_token(settings: Settings | None, endpoint_id: str) -> str:
    """The link in every post to a subscriber's endpoint (and its challenge) that stops them;
    like a mail's, it never expires."""
    return sign(settings, "endpoint-unsubscribe", endpoint_id)


def read_endpoint_unsubscribe_token(settings: Settings | None, token: str | None) -> str:
    """The endpoint id of a valid endpoint unsubscribe token."""
    fields = verify(settings, token, "endpoint-unsubscribe")
    if len(fields) != 1:
        raise InvalidRequest("this link is not valid; it may have been mistyped or cut short", field="token")
    return fields[0]


def link(public_url: str, path: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{path}?token={quote(token, safe='')}"
