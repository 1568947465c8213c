"""Where a browser says a request came from — the second layer, after the CSRF token, against a
page elsewhere posting one of our forms.

A browser names the page a POST comes from in ``Origin`` (every modern one, on every POST), in
``Sec-Fetch-Site``, and in ``Referer`` (as the referrer policy allows). ``Origin: null`` is what
a sandboxed frame, a ``data:`` page or a page under ``Referrer-Policy: no-referrer`` sends;
``Sec-Fetch-Site`` then still tells same-origin from cross-site. A client that sends none of
them is not a browser (curl, a mail client's button, a very old browser): nothing to check
there, and the CSRF token (or the signed link) still decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` in lower case, without the scheme's default port."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    scheme = parts.scheme.lower()
    shown = "" if port is None or DEFAULT_PORTS.get(scheme) == port else f":{port}"
    return f"{scheme}://{host}{shown}" if scheme and host else ""


def came_from(headers: Mapping[str, str], own: Iterable[str]) -> bool | None:
    """True: the browser says the request came from one of the ``own`` origins; False: from
    somewhere else; None: it says nothing we can check (``Origin: null`` without
    ``Sec-Fetch-Site``, or no header at all)."""
    mine = {origin_of(o) for o in own} - {""}
    origin = headers.get("origin")
    if origin is not None and origin.strip().lower() != "null":
        return origin_of(origin) in mine
    site = (headers.get("sec-fetch-site") or "").lower()
    if site == "same-origin":
        return True
    if site in ("cross-site", "same-site"):
        return False
    referer = headers.get("referer")
    if origin is None and referer:
        return origin_of(referer) in mine
    return None
