"""Where readers check a post: the ``signing:`` settings and the official verify link.

Every post ends with ``Verify: <verify page>?id=<announcement>``. Only that exact link — on the
configured verify page (``signing.verify_url``, else the status page's ``site_url`` +
``/verify.html``) — is part of a genuine post; the same link on any other origin is a forgery.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

WELL_KNOWN = ".well-known/broadcaster"
VERIFY_PAGE = "verify.html"


@dataclass(frozen=True)
class SigningConfig:
    """The ``signing:`` section (read duck-typed, so it works before and after broadcaster.config has it)."""

    key_dir: str = "var/keys"
    key_id: str | None = None  # sign with this key; default: the keyring's active key
    verify_url: str | None = None  # the status site's verify page; default: <statuspage site_url>/verify.html
    embed_link: bool = True  # add the short verification link to every post


def config_of(settings: Any) -> SigningConfig | None:
    """The signing settings, or None when signing is not configured."""
    raw = getattr(settings, "signing", None)
    if raw is None:
        return None
    if isinstance(raw, SigningConfig):
        return raw
    if isinstance(raw, dict):
        return SigningConfig(**raw)
    return SigningConfig(**{f: getattr(raw, f) for f in SigningConfig.__dataclass_fields__ if hasattr(raw, f)})


def _statuspage_site(settings: Any) -> str | None:
    for ch in (getattr(settings, "channels", None) or {}).values():
        if getattr(ch, "kind", None) == "statuspage" and getattr(ch, "enabled", True) and getattr(ch, "site_url", None):
            return str(ch.site_url).rstrip("/")
    return None


def verify_page_url(settings: Any) -> str | None:
    cfg = config_of(settings)
    if cfg is None:
        return None
    if cfg.verify_url:
        return str(cfg.verify_url)
    site = _statuspage_site(settings)
    return f"{site}/{VERIFY_PAGE}" if site else None


def link_for(page: str, announcement_id: str) -> str:
    sep = "&" if "?" in page else "?"
    return f"{page}{sep}id={quote(announcement_id, safe='')}"


def verification_url(settings: Any, announcement_id: str) -> str | None:
    """``https://status.example.com/verify.html?id=<id>`` — a query, not a fragment, so it has
    no character LinkedIn's little text reserves (``#``)."""
    page = verify_page_url(settings)
    return link_for(page, announcement_id) if page else None


def verification_suffix(settings: Any, announcement_id: str, channels: Iterable[str] | None = None) -> str | None:
    """What to append to a post's text (before length fitting), or None when signing is off,
    there is no public verify page to link to, or — given the announcement's ``channels`` —
    none of them is a status page: only the status site publishes signatures, and a link that
    would answer "not found" for our own post must not be printed under it."""
    cfg = config_of(settings)
    if cfg is None or not cfg.embed_link:
        return None
    if channels is not None:
        configured = getattr(settings, "channels", None) or {}
        if not any(getattr(configured.get(c), "kind", None) == "statuspage" for c in channels):
            return None
    url = verification_url(settings, announcement_id)
    return f"\n\nVerify: {url}" if url else None


#: the id in a pasted post's link: ``verify.html?id=…``, or ``Verify: <any page>?…id=…``
_ID_IN_LINK = re.compile(r"(?i)verify(?:\.html\?|:\s*\S*?[?&])id=([A-Za-z0-9_.%-]+)")


def id_from_text(text: str) -> str | None:
    """The announcement id in a pasted post's verification link — only to know which signed
    announcement to compare with: the link itself must still match ours exactly."""
    m = _ID_IN_LINK.search(text)
    return unquote(m.group(1)) if m else None
