"""A lean HTTP/1.1 transport for the adapters' ``httpx.Client``: the standard library's
``http.client`` under httpx's API, with kept-alive connections per host.

Why: a delivery is one small POST, and on the worker's hot path httpx's default transport
(httpcore + h11) cost about 0.7 ms of CPU per request on the 2-core benchmark machine, where
``http.client`` does the same exchange in about 0.15 ms — with one Python thread sending
hundreds of deliveries a second, that difference is most of a core. The adapters keep httpx's
client (its request building, headers, ``MockTransport`` in the unit tests, the error tree
mapped once in ``_http.request``); only the wire work changes hands.

What it keeps of httpcore's behaviour, because the guarantees depend on it:

* every failure is raised as the httpx exception httpcore raises for it, so ``_http`` tells
  "never sent" (connect errors and timeouts: ``ConnectError``, ``ConnectTimeout``) from
  "may have been received" (anything once the request started: ``WriteError``,
  ``ReadTimeout``, ``ReadError``, ``RemoteProtocolError``) exactly as before;
* a kept-alive connection the server has closed meanwhile (its socket reads as readable or at
  EOF while idle) is dropped *before* the request is written, never after — no silent second
  write of a request that may have arrived;
* response bodies are handed to httpx raw, so its own decoders apply ``Content-Encoding``;
* the ``sni_hostname`` extension: a request sent to an address checked beforehand (the
  subscriber endpoints' network guard) still verifies the certificate of the name it was
  given, and shares kept-alive connections only with requests for that same name.

A proxy from the environment (``HTTP(S)_PROXY``, ``ALL_PROXY``) still works: httpx mounts its
own proxy transport for the URLs it covers, in front of this one.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from typing import Any

import httpx

#: idle kept-alive connections kept per (scheme, host, port)
KEEP_ALIVE = 10


def _readable(sock: socket.socket | None) -> bool:
    """An idle connection's socket with something to read (data nobody asked for, or EOF):
    the server closed it, or it is out of step — either way it must not carry a request."""
    if sock is None:
        return True
    try:
        poller = select.poll()  # not select(): a busy worker may hold file descriptors above 1024
        poller.register(sock, select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class LeanTransport(httpx.BaseTransport):
    """HTTP/1.1 over ``http.client`` connections kept alive per origin (thread-safe)."""

    def __init__(self, *, verify: bool | ssl.SSLContext = True, keep_alive: int = KEEP_ALIVE):
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._keep = keep_alive
        #: idle connections per origin: (scheme, host, port, TLS server name)
        self._idle: dict[tuple[str, str, int, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    # -- connections

    def _checkout(self, origin: tuple[str, str, int, str]) -> http.client.HTTPConnection | None:
        with self._lock:
            pool = self._idle.get(origin)
            while pool:
                conn = pool.pop()
                if not _readable(conn.sock):
                    return conn
                conn.close()
        return None

    def _checkin(self, origin: tuple[str, str, int, str], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            pool = self._idle.setdefault(origin, [])
            if len(pool) < self._keep:
                pool.append(conn)
                return
        conn.close()

    def _connect(self, origin: tuple[str, str, int, str], timeouts: dict[str, Any]) -> http.client.HTTPConnection:
        scheme, host, port, sni = origin
        conn = http.client.HTTPConnection(host, port, timeout=timeouts.get("connect"))
        try:
            conn.connect()
            if scheme == "https":  # verified against the name asked for (sni), wherever it connected
                conn.sock = self._ssl.wrap_socket(conn.sock, server_hostname=sni or host)
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(f"connect to {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            raise httpx.ConnectError(f"connect to {host}:{port}: {type(exc).__name__}: {exc}") from exc
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    # -- one exchange

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the URL scheme {scheme!r} is not supported")
        sni = str(request.extensions.get("sni_hostname") or "") if scheme == "https" else ""
        origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80), sni)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = request.read()
        headers = request.headers.raw
        if request.headers.get("transfer-encoding"):  # the body is read whole: frame it by length
            headers = [(k, v) for k, v in headers if k.lower() not in (b"transfer-encoding", b"content-length")]
            headers.append((b"Content-Length", str(len(body)).encode()))
        conn = self._checkout(origin) or self._connect(origin, timeouts)
        try:
            conn.sock.settimeout(timeouts.get("write"))
            conn.putrequest(request.method, url.raw_path.decode("ascii"), skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name.decode("latin-1"), value.decode("latin-1"))
        except (ValueError, http.client.HTTPException) as exc:  # refused before a byte was written
            conn.close()
            raise httpx.LocalProtocolError(f"request to {url.host} refused locally: {exc}") from exc
        try:
            conn.endheaders(body or None)
        except TimeoutError as exc:
            conn.close()
            raise httpx.WriteTimeout(f"writing the request to {url.host} timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise httpx.WriteError(f"writing the request to {url.host}: {type(exc).__name__}") from exc
        try:
            conn.sock.settimeout(timeouts.get("read"))
            resp = conn.getresponse()
            content = resp.read()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout(f"no answer from {url.host} in time") from exc
        except (http.client.RemoteDisconnected, http.client.BadStatusLine, http.client.IncompleteRead,
                http.client.LineTooLong) as exc:
            conn.close()
            raise httpx.RemoteProtocolError(f"{url.host}: {type(exc).__name__}") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise httpx.ReadError(f"reading the answer of {url.host}: {type(exc).__name__}") from exc
        if resp.will_close:
            conn.close()
        else:
            self._checkin(origin, conn)
        return httpx.Response(resp.status, headers=resp.getheaders(), stream=httpx.ByteStream(content),
                              extensions={"http_version": b"HTTP/1.1",
                                          "reason_phrase": (resp.reason or "").encode("latin-1", "replace")})

    def close(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for pool in pools.values():
            for conn in pool:
                conn.close()
