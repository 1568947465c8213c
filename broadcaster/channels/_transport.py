"""A lean HTTP/1.1 transport for the adapters' ``httpx.Client``: the request written by hand in
one write, the answer read by the standard library's ``http.client.HTTPResponse``, under
httpx's API, with kept-alive connections per host.

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
* header names and values are checked before a byte is written (no line break, no NUL: a
  header can never be injected), and the request line and body go out in one write, so a
  receiver never sees headers without their body;
* the whole exchange is bounded, not each read: the answer must have arrived within the
  connect plus the read timeout of the request's start. httpx's (and httpcore's) read timeout
  applies to each read, so a receiver trickling its answer a byte at a time could hold a send
  — and the worker's lease on it — for as long as it liked; the drain's rule that a send ends
  inside its lease depends on this bound;
* the ``sni_hostname`` extension: a request sent to an address checked beforehand (the
  subscriber endpoints' network guard) still verifies the certificate of the name it was
  given, and shares kept-alive connections only with requests for that same name.

A proxy from the environment (``HTTP(S)_PROXY``, ``ALL_PROXY``) still works: httpx mounts its
own proxy transport for the URLs it covers, in front of this one.
"""

from __future__ import annotations

import http.client
import io
import re
import select
import socket
import ssl
import threading
import time
from typing import Any

import httpx

#: idle kept-alive connections kept per origin
KEEP_ALIVE = 10
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: a method, a header name
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")

Origin = tuple[str, str, int, str]  # scheme, host, port, TLS server name


def _readable(sock: socket.socket) -> bool:
    """An idle connection's socket with something to read (data nobody asked for, or EOF):
    the server closed it, or it is out of step — either way it must not carry a request."""
    try:
        poller = select.poll()  # not select(): a busy worker may hold file descriptors above 1024
        poller.register(sock, select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class _Deadline(io.RawIOBase):
    """The socket as ``HTTPResponse`` reads it, each read limited to what is left of the
    exchange's time (and to the per-read timeout): a trickling answer meets the deadline."""

    def __init__(self, sock: socket.socket, deadline: float, per_read: float | None):
        self.sock, self.deadline, self.per_read = sock, deadline, per_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer did not arrive in time")
        wait = left if self.per_read is None else min(left, self.per_read)
        self.sock.settimeout(None if wait == float("inf") else wait)
        return self.sock.recv_into(buffer)


class _Reading:
    """What ``HTTPResponse`` needs of a socket: ``makefile``, here over :class:`_Deadline`."""

    def __init__(self, sock: socket.socket, deadline: float, per_read: float | None):
        self._raw = _Deadline(sock, deadline, per_read)

    def makefile(self, mode: str = "rb", *args: Any, **kw: Any) -> io.BufferedReader:
        return io.BufferedReader(self._raw)


def _head(request: httpx.Request, body: bytes) -> bytes:
    """The request line and headers, checked: a method or header name that is not a token, a
    target with a space or control character, a value with a line break or NUL — refused."""
    method = request.method.encode("ascii", "replace")
    target = request.url.raw_path
    if not _TOKEN.fullmatch(method) or not target or _BAD_TARGET.search(target):
        raise httpx.LocalProtocolError(f"refused locally: bad request line for {request.url.host}")
    lines = [method + b" " + target + b" HTTP/1.1"]
    framed = bool(body)
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise httpx.LocalProtocolError(f"refused locally: header {name[:40]!r} is not well-formed")
        if name.lower() in (b"content-length", b"transfer-encoding"):  # the body is read whole:
            framed = True                                               # framed by its length below
            continue
        lines.append(name + b": " + value)
    if framed:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n"


class LeanTransport(httpx.BaseTransport):
    """HTTP/1.1 over sockets kept alive per origin (thread-safe)."""

    def __init__(self, *, verify: bool | ssl.SSLContext = True, keep_alive: int = KEEP_ALIVE):
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._keep = keep_alive
        self._idle: dict[Origin, list[socket.socket]] = {}
        self._lock = threading.Lock()

    # -- connections

    def _checkout(self, origin: Origin) -> socket.socket | None:
        with self._lock:
            pool = self._idle.get(origin)
            while pool:
                sock = pool.pop()
                if not _readable(sock):
                    return sock
                _close(sock)
        return None

    def _checkin(self, origin: Origin, sock: socket.socket) -> None:
        with self._lock:
            pool = self._idle.setdefault(origin, [])
            if len(pool) < self._keep:
                pool.append(sock)
                return
        _close(sock)

    def _connect(self, origin: Origin, timeout: float | None) -> socket.socket:
        scheme, host, port, sni = origin
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":  # verified against the name asked for (sni), wherever it connected
                sock = self._ssl.wrap_socket(sock, server_hostname=sni or host)
            return sock
        except TimeoutError as exc:
            _close(sock)
            raise httpx.ConnectTimeout(f"connect to {host}:{port} timed out") from exc
        except OSError as exc:  # refused, unreachable, TLS handshake or certificate (ssl.SSLError)
            _close(sock)
            raise httpx.ConnectError(f"connect to {host}:{port}: {_why(exc)}") from exc

    # -- one exchange

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the URL scheme {scheme!r} is not supported")
        started = time.monotonic()
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = request.read()
        data = _head(request, body) + body  # refused here, before any connection is touched
        sni = str(request.extensions.get("sni_hostname") or "") if scheme == "https" else ""
        origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80), sni)
        sock = self._checkout(origin) or self._connect(origin, timeouts.get("connect"))
        try:
            sock.settimeout(timeouts.get("write"))
            sock.sendall(data)
        except TimeoutError as exc:
            _close(sock)
            raise httpx.WriteTimeout(f"writing the request to {url.host} timed out") from exc
        except OSError as exc:
            _close(sock)
            raise httpx.WriteError(f"writing the request to {url.host}: {_why(exc)}") from exc
        read = timeouts.get("read")
        deadline = started + (timeouts.get("connect") or 0.0) + (read if read is not None else float("inf"))
        resp = http.client.HTTPResponse(_Reading(sock, deadline, read),  # type: ignore[arg-type]
                                        method=request.method)
        try:
            resp.begin()
            content = resp.read()
        except TimeoutError as exc:
            _close(sock)
            raise httpx.ReadTimeout(f"no whole answer from {url.host} in time") from exc
        except (http.client.RemoteDisconnected, http.client.BadStatusLine, http.client.IncompleteRead,
                http.client.LineTooLong, http.client.HTTPException) as exc:
            _close(sock)
            raise httpx.RemoteProtocolError(f"{url.host}: {type(exc).__name__}") from exc
        except OSError as exc:
            _close(sock)
            raise httpx.ReadError(f"reading the answer of {url.host}: {_why(exc)}") from exc
        if resp.will_close:
            _close(sock)
        else:
            self._checkin(origin, sock)
        return httpx.Response(resp.status, headers=resp.getheaders(), stream=httpx.ByteStream(content),
                              extensions={"http_version": b"HTTP/1.1",
                                          "reason_phrase": (resp.reason or "").encode("latin-1", "replace")})

    def close(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for pool in pools.values():
            for sock in pool:
                _close(sock)


def _why(exc: BaseException) -> str:
    """A short reason; a certificate that does not verify says so (and which check failed)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message or exc.reason})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or type(exc).__name__})"
    return type(exc).__name__


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
