"""Proving who sent an inbound alert, the way each tool can: a bearer token (or a token in a
header of the operator's choosing), HTTP basic auth, or an HMAC-SHA256 signature of the body.

Every comparison is constant-time. Signatures that carry a timestamp (Grafana with a timestamp
header) are refused outside ``max_age`` of our clock, so a captured request cannot be replayed
later; PagerDuty's signature has no timestamp, so its event ids are remembered instead (see
``drafts``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from ..config import InboundReceiver

GRAFANA_SIGNATURE = "X-Grafana-Alerting-Signature"
PAGERDUTY_SIGNATURE = "X-PagerDuty-Signature"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


def _digest(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _token_ok(rec: InboundReceiver, headers: Mapping[str, str]) -> bool:
    if not rec.token:
        return False
    want = rec.token.reveal()
    if rec.header:
        got = headers.get(rec.header.lower(), "")
        return bool(got) and _same(got.removeprefix("Bearer ").strip(), want)
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(value) and _same(value.strip(), want)


def _basic_ok(rec: InboundReceiver, headers: Mapping[str, str]) -> bool:
    if not (rec.username and rec.password):
        return False
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    # both compared, always, so the answer takes as long for a wrong user as for a wrong password
    return bool(sep) & _same(user, rec.username) & _same(password, rec.password.reveal())


def _grafana_ok(rec: InboundReceiver, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    assert rec.hmac_secret is not None
    got = headers.get((rec.signature_header or GRAFANA_SIGNATURE).lower(), "").strip()
    message = body
    if rec.timestamp_header:
        stamp = headers.get(rec.timestamp_header.lower(), "").strip()
        try:
            if abs(now - float(stamp)) > rec.max_age:
                return False
        except ValueError:
            return False
        message = stamp.encode() + b":" + body
    return bool(got) and _same(got.lower(), _digest(rec.hmac_secret.reveal(), message))


def _pagerduty_ok(rec: InboundReceiver, headers: Mapping[str, str], body: bytes) -> bool:
    """``v1=<hex>[,v1=<hex>…]``: PagerDuty lists one signature per active secret while rotating."""
    assert rec.hmac_secret is not None
    want = _digest(rec.hmac_secret.reveal(), body)
    ok = False
    for part in headers.get(PAGERDUTY_SIGNATURE.lower(), "").split(","):
        version, _, value = part.strip().partition("=")
        if version == "v1" and value:
            ok |= _same(value.lower(), want)
    return ok


def verified(rec: InboundReceiver, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """True when the request comes from the sender this receiver is configured for.
    ``headers`` must be a case-insensitive mapping (Starlette's) or have lowercase keys."""
    if rec.source == "pagerduty":
        return _pagerduty_ok(rec, headers, body)
    if rec.source == "grafana" and rec.hmac_secret:
        return _grafana_ok(rec, headers, body, now)
    return _token_ok(rec, headers) or _basic_ok(rec, headers)
