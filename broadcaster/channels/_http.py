"""Shared HTTP plumbing for adapters: the client, the one transport-error boundary, and the
parsing of rate-limit signals (``Retry-After``, reset headers).

``request()`` performs exactly one HTTP exchange and turns every ``httpx`` exception into a
``DeliveryError``: failures before the request could have reached the provider are plain
``TransientError``; failures after it may have been received are ``AmbiguousDelivery``.
"""

from __future__ import annotations

import email.utils
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from ..errors import AmbiguousDelivery, AuthError, PermanentError, RateLimited, TransientError
from ._transport import LeanTransport

USER_AGENT = "broadcaster/0.1 (+https://github.com/broadcaster)"

#: httpx exception → (our class, may the request have been received?)
TRANSPORT_ERRORS: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (httpx.ConnectTimeout, TransientError),
    (httpx.ConnectError, TransientError),
    (httpx.PoolTimeout, TransientError),
    (httpx.UnsupportedProtocol, PermanentError),
    (httpx.LocalProtocolError, PermanentError),
    (httpx.InvalidURL, PermanentError),
    (httpx.TooManyRedirects, PermanentError),
    (httpx.ReadTimeout, AmbiguousDelivery),
    (httpx.WriteTimeout, AmbiguousDelivery),
    (httpx.ReadError, AmbiguousDelivery),
    (httpx.WriteError, AmbiguousDelivery),
    (httpx.RemoteProtocolError, AmbiguousDelivery),
    (httpx.CloseError, AmbiguousDelivery),
    (httpx.ProxyError, TransientError),
    (httpx.TimeoutException, AmbiguousDelivery),
    (httpx.NetworkError, AmbiguousDelivery),
    (httpx.TransportError, AmbiguousDelivery),
    (httpx.HTTPError, AmbiguousDelivery),
)


class _NoCookies(httpx.Cookies):
    """A cookie store that keeps nothing: no provider API we call uses cookies, and storing
    them (httpx parses every answer's headers into ``urllib`` objects to look for
    ``Set-Cookie``) cost about a tenth of a webhook send's CPU. Nothing is ever sent back."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _ProviderClient(httpx.Client):
    """The adapters' client: httpx's, with a cookie store that keeps nothing, and a direct
    line to its :class:`LeanTransport` (:meth:`exchange`)."""

    #: the transport requests go straight to (:func:`request`), when no proxy is configured
    direct: LeanTransport | None = None

    def exchange(self, request: httpx.Request) -> httpx.Response:
        """``request`` on :attr:`direct`, its answer unread: what ``send(stream=True)`` does for
        this client — no auth, no redirect followed, no event hooks, no cookies — without its
        generator and bookkeeping layers (a sixth of a webhook send's CPU)."""
        assert self.direct is not None
        response = self.direct.handle_request(request)
        response.request = request
        return response

    @property
    def cookies(self) -> httpx.Cookies:
        store = self.__dict__.get("_bc_no_cookies")
        if store is None:
            store = self.__dict__["_bc_no_cookies"] = _NoCookies()
        return store

    @cookies.setter
    def cookies(self, value: Any) -> None:  # httpx's constructor sets it; nothing is kept
        return None


def make_client(timeout: float = 10.0, **kw: Any) -> httpx.Client:
    """One pooled client per channel per worker; redirects are not followed (a 3xx is an error).
    Requests go over :class:`LeanTransport` (``http.client`` with kept-alive connections: a
    fraction of httpcore's CPU per request) unless the caller names a transport."""
    lean = None
    if "transport" not in kw:
        lean = kw["transport"] = LeanTransport(verify=kw.pop("verify", True))
    client = _ProviderClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        **kw,
    )
    if lean is not None and not kw.get("mounts") and not urllib.request.getproxies():
        client.direct = lean  # a proxy from the environment: httpx's own routing decides
    return client


def map_transport_error(exc: Exception, what: str) -> Exception:
    for foreign, ours in TRANSPORT_ERRORS:
        if isinstance(exc, foreign):
            verb = "may have been received" if ours is AmbiguousDelivery else "was not sent"
            return ours(f"{what}: {type(exc).__name__}; the request {verb}")
    return AmbiguousDelivery(f"{what}: {type(exc).__name__}")


#: parsed URLs by their text: a channel posts to the same few URLs all day, and httpx parsing
#: one took about half of building a request (bounded; emptied when full)
_URLS: dict[str, httpx.URL] = {}
_URLS_MAX = 1024


def _parsed(url: str | httpx.URL) -> str | httpx.URL:
    if not isinstance(url, str):
        return url
    found = _URLS.get(url)
    if found is None:
        try:
            found = httpx.URL(url)
        except httpx.InvalidURL:
            return url  # httpx says so again, inside request()'s mapping
        if len(_URLS) >= _URLS_MAX:
            _URLS.clear()
        _URLS[url] = found
    return found


#: ``client.request`` arguments that belong to ``client.send`` rather than the request
_SEND_ARGS = ("auth", "follow_redirects")


def request(client: httpx.Client, method: str, url: str, *, what: str = "request", **kw: Any) -> httpx.Response:
    """One HTTP exchange with every transport failure mapped to our error tree.

    An answer whose body cannot be decoded (a ``Content-Encoding`` it does not really have) is
    still an answer: its status line and headers arrived, so it is returned with an empty body
    for the adapter to judge by its status — a 200 from a receiver with a broken gzip is a
    delivery, not a "may have been received" to re-send."""
    sending = {k: kw.pop(k) for k in _SEND_ARGS if k in kw}
    direct = client if (isinstance(client, _ProviderClient) and client.direct is not None and not sending
                        and client.auth is None and not any(client.event_hooks.values())) else None
    try:
        built = client.build_request(method, _parsed(url), **kw)
        resp = direct.exchange(built) if direct is not None else client.send(built, stream=True, **sending)
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, what) from exc
    try:
        resp.read()
    except httpx.DecodingError:
        resp.close()
        headers = [(k, v) for k, v in resp.headers.multi_items() if k.lower() != "content-encoding"]
        return httpx.Response(resp.status_code, headers=headers, content=b"", request=built)
    except httpx.HTTPError as exc:
        resp.close()
        raise map_transport_error(exc, what) from exc
    return resp


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), or None."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_reset(value: str | None, *, now: float | None = None) -> float | None:
    """A reset header → seconds from now. Accepts epoch seconds (X, Bluesky, Discord) and
    ISO-8601 times (Mastodon); small numbers are taken as seconds-from-now."""
    if value is None or not str(value).strip():
        return None
    now = time.time() if now is None else now
    value = str(value).strip()
    try:
        n = float(value)
    except ValueError:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return max(0.0, when.timestamp() - now)
    if n > 1e9:  # an epoch timestamp
        return max(0.0, n - now)
    return max(0.0, n)


def short(response: httpx.Response, limit: int = 300) -> str:
    """A short, printable excerpt of a response for the attempt log."""
    try:
        body = response.text
    except Exception:  # noqa: BLE001 - undecodable body: show nothing rather than fail
        body = ""
    body = " ".join(body.split())
    return f"HTTP {response.status_code} {body[:limit]}".strip()


def raise_for_status(
    response: httpx.Response,
    what: str,
    *,
    now: Callable[[], float] = time.time,
    reset_headers: tuple[str, ...] = ("retry-after",),
) -> None:
    """The generic HTTP classification: 2xx ok; 429 rate limited; 401/403 auth; 408/425/5xx
    transient; other 4xx (and 3xx, which we never follow) permanent."""
    code = response.status_code
    if 200 <= code < 300:
        return
    excerpt = short(response)
    if code == 429:
        wait = None
        for header in reset_headers:
            raw = response.headers.get(header)
            wait = parse_retry_after(raw, now=now()) if header == "retry-after" else parse_reset(raw, now=now())
            if wait is not None:
                break
        raise RateLimited(f"{what}: rate limited (HTTP 429)", retry_after=wait, response=excerpt, status=code)
    if code in (401, 403):
        raise AuthError(f"{what}: credentials refused (HTTP {code})", response=excerpt, status=code)
    if code in (408, 425) or code >= 500:
        raise TransientError(f"{what}: provider error (HTTP {code})", response=excerpt, status=code)
    raise PermanentError(f"{what}: request refused (HTTP {code})", response=excerpt, status=code)


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
