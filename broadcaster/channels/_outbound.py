"""The network guard for URLs strangers give us (subscriber endpoints): no request of ours may
reach this machine, the private network or a cloud metadata service.

Why at two moments: a URL is checked when it is registered (a clear refusal for its owner) and
again on every post, since a DNS name that resolved to a public address at registration may
resolve to ``127.0.0.1`` tomorrow (DNS rebinding). The post then goes to the very address that
was checked: the URL's host is replaced by that IP, ``Host`` and the TLS server name (SNI, and
so certificate verification) keep the original name, so no second DNS lookup can differ.
Redirects are never followed (the client refuses them), so a 3xx cannot lead elsewhere.

``allow_http`` and ``allow_private`` exist for tests and labs (a receiver on loopback); both
are off by default.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from ..errors import PermanentError, TransientError
from . import _http

MAX_URL = 2000
#: ``resolve(host, port) -> [ip, …]`` (injectable for tests)
Resolver = Callable[[str, int], list[str]]


class Refused(ValueError):
    """The URL may not be used; the message says why (safe to show its owner)."""


@dataclass(frozen=True)
class Rules:
    allow_http: bool = False
    allow_private: bool = False


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url(url: str, rules: Rules) -> SplitResult:
    """The URL's shape: https (http only if allowed), a host, no credentials, no odd characters."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise Refused(f"give a URL of at most {MAX_URL} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise Refused("the URL has spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("not a valid URL") from None
    allowed = ("https", "http") if rules.allow_http else ("https",)
    if parts.scheme not in allowed:
        raise Refused("the URL must start with https://")
    if not parts.hostname:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL must not carry a user name or password")
    if port == 0:
        raise Refused("not a valid port")
    return parts


def public_address(ip: str) -> bool:
    """Whether ``ip`` is an address on the public internet (not loopback, private, link-local —
    which holds the metadata service 169.254.169.254 — shared, multicast or reserved)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast and not addr.is_reserved


def target(url: str, rules: Rules, resolver: Resolver = system_resolver) -> tuple[SplitResult, str]:
    """``(parts, ip)``: the checked URL and the address to connect to. Raises :class:`Refused`
    when an address the name resolves to is not public (every one must be: the client would
    pick any), and :class:`LookupError` when the name does not resolve now."""
    parts = check_url(url, rules)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        ips = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            ips = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise LookupError(f"the host name does not resolve ({type(exc).__name__})") from None
        if not ips:
            raise LookupError("the host name does not resolve") from None
    if not rules.allow_private:
        for ip in ips:
            if not public_address(ip):
                raise Refused("the URL points to a private, loopback or link-local address")
    return parts, ips[0]


def pinned_post(client: httpx.Client, url: str, rules: Rules, *, content: bytes, headers: dict[str, str],
                what: str, resolver: Resolver = system_resolver) -> httpx.Response:
    """POST to ``url`` at the address checked just now (see the module docstring). A URL that
    now points inside is a :class:`PermanentError`; a name that does not resolve, transient."""
    try:
        parts, ip = target(url, rules, resolver)
    except Refused as exc:
        raise PermanentError(f"{what}: {exc}") from None
    except LookupError as exc:
        raise TransientError(f"{what}: {exc}") from None
    host = parts.hostname or ""
    literal = f"[{ip}]" if ":" in ip else ip
    netloc = literal + (f":{parts.port}" if parts.port else "")
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return _http.request(client, "POST", pinned, content=content, headers={**headers, "Host": host_header},
                         extensions=extensions, what=what)
