"""The adapters' HTTP transport (``channels/_transport.py``) against real loopback servers:
kept-alive connections, a server that closed one meanwhile, every failure classified as
"never sent" or "may have been received" exactly as with httpx's own transport, HTTPS."""

from __future__ import annotations

import datetime
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from broadcaster.channels import _http
from broadcaster.channels._transport import LeanTransport
from broadcaster.errors import AmbiguousDelivery, PermanentError, TransientError

Handler = Callable[[socket.socket, bytes, bytes], bool]  # (conn, head, body) -> keep the connection open?


class RawServer:
    """A loopback HTTP/1.1 server whose answer to each request is a function: it counts
    connections and requests, and can close, stall or answer whatever a test needs."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None):
        self.handler = handler
        self.tls = tls
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.open: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.tls:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            self.connections += 1
            self.open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                self.requests.append((head, body))
                if not self.handler(conn, head, body):
                    conn.close()
                    return
        except OSError:
            return

    def close_idle(self) -> None:
        """Close every connection from the server's side (as a keep-alive timeout does)."""
        for c in self.open:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.open.clear()

    def stop(self) -> None:
        self._stop = True
        self.sock.close()
        self.close_idle()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> Handler:
    def answer(conn: socket.socket, head: bytes, _body: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra
                     + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return True
    return answer


@pytest.fixture
def servers():
    started: list[RawServer] = []

    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> RawServer:
        srv = RawServer(handler, tls)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def client(**kw) -> httpx.Client:
    return _http.make_client(2.0, **kw)


def test_the_adapters_client_uses_the_lean_transport_and_keeps_connections_alive(servers):
    srv = servers(ok())
    with client() as c:
        assert isinstance(c._transport, LeanTransport)
        for i in range(5):
            resp = c.post(srv.url(), content=b'{"n":%d}' % i, headers={"webhook-id": f"msg_{i}"})
            assert resp.status_code == 200 and resp.json() == {"ok": True}
    assert srv.connections == 1
    assert [b for _h, b in srv.requests] == [b'{"n":%d}' % i for i in range(5)]
    head = srv.requests[0][0].decode()
    assert "webhook-id: msg_0" in head and f"Host: 127.0.0.1:{srv.port}" in head
    assert "User-Agent: broadcaster/" in head and "Content-Length: 7" in head


def test_a_kept_alive_connection_the_server_closed_is_replaced_before_the_request_is_written(servers):
    srv = servers(ok())
    with client() as c:
        assert c.post(srv.url(), content=b"one").status_code == 200
        srv.close_idle()
        time.sleep(0.05)  # the FIN reaches the client's socket
        assert c.post(srv.url(), content=b"two").status_code == 200
    assert [b for _h, b in srv.requests] == [b"one", b"two"]  # each once, none lost, none twice
    assert srv.connections == 2


def test_connection_close_from_the_server_is_honoured(servers):
    srv = servers(ok(extra=b"Connection: close\r\n"))
    with client() as c:
        for _ in range(3):
            assert c.post(srv.url(), content=b"x").status_code == 200
    assert srv.connections == 3


def test_nothing_listening_is_never_sent():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with client() as c, pytest.raises(TransientError, match="was not sent"):
        _http.request(c, "POST", f"http://127.0.0.1:{port}/hook", content=b"x", what="post")


def test_a_server_that_reads_the_request_and_hangs_up_may_have_received_it(servers):
    srv = servers(lambda conn, head, body: False)
    with client() as c, pytest.raises(AmbiguousDelivery, match="may have been received"):
        _http.request(c, "POST", srv.url(), content=b"x", what="post")
    assert len(srv.requests) == 1


def test_a_server_that_never_answers_is_a_read_timeout_and_may_have_received_it(servers):
    stalled = threading.Event()
    srv = servers(lambda conn, head, body: stalled.wait(5) or True)
    with _http.make_client(0.3) as c, pytest.raises(AmbiguousDelivery, match="ReadTimeout"):
        _http.request(c, "POST", srv.url(), content=b"x", what="post")
    stalled.set()


def test_a_garbled_status_line_is_a_protocol_error_that_may_have_been_received(servers):
    def garbage(conn, head, body):
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        return False

    srv = servers(garbage)
    with client() as c, pytest.raises(AmbiguousDelivery, match="RemoteProtocolError"):
        _http.request(c, "POST", srv.url(), content=b"x", what="post")


def test_a_header_with_a_line_break_is_refused_before_anything_is_written(servers):
    srv = servers(ok())
    with client() as c, pytest.raises(PermanentError):
        _http.request(c, "POST", srv.url(), content=b"x", headers={"X-Evil": "a\r\nInjected: 1"}, what="post")
    assert srv.requests == []


def test_gzip_and_chunked_answers_are_decoded_by_httpx(servers):
    packed = gzip.compress(b'{"id":"109"}')

    def chunked(conn, head, body):
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                     b"Transfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
                     + b"%x\r\n" % len(packed) + packed + b"\r\n0\r\n\r\n")
        return True

    srv = servers(chunked)
    with client() as c:
        resp = c.post(srv.url(), content=b"x")
        assert resp.status_code == 201 and resp.json() == {"id": "109"}
        assert resp.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert resp.reason_phrase == "Created"
        assert c.post(srv.url(), content=b"y").status_code == 201  # the connection stayed usable
    assert srv.connections == 1


def test_a_streamed_request_body_is_sent_whole_with_its_length(servers):
    srv = servers(ok())
    with client() as c:
        assert c.post(srv.url(), content=iter([b"ab", b"cd"])).status_code == 200
    head, body = srv.requests[0]
    assert body == b"abcd" and b"Content-Length: 4" in head and b"chunked" not in head.lower()


def _self_signed(name: str | None = None) -> tuple[ssl.SSLContext, bytes]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name or "127.0.0.1")])
    alt = x509.DNSName(name) if name else x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pem", delete=False) as f:
        f.write(pem + key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(f.name)
    return server, pem


def test_https_verifies_the_server_and_keeps_the_connection(servers):
    server_ctx, pem = _self_signed()
    srv = servers(ok(), tls=server_ctx)
    with client() as c, pytest.raises(TransientError, match="was not sent"):  # unknown issuer: refused
        _http.request(c, "POST", srv.url(), content=b"x", what="post")
    trusted = ssl.create_default_context(cadata=pem.decode())
    with client(verify=trusted) as c:
        for _ in range(3):
            assert c.post(srv.url(), content=b"x").status_code == 200
    assert len(srv.requests) == 3


def test_cookies_a_provider_sets_are_never_sent_back(servers):
    srv = servers(ok(extra=b"Set-Cookie: session=abc; Path=/\r\n"))
    with client() as c:
        for _ in range(2):
            assert c.post(srv.url(), content=b"x").status_code == 200
        assert not c.cookies
    assert all(b"cookie" not in head.lower() for head, _body in srv.requests)


def test_a_post_pinned_to_a_checked_address_verifies_the_certificate_of_its_name(servers):
    """The subscriber endpoints' guard connects to the IP it checked and asks the TLS layer for
    the URL's name (``sni_hostname``): the certificate is verified against that name."""
    from broadcaster.channels import _outbound

    server_ctx, pem = _self_signed("hooks.example.test")
    srv = servers(ok(), tls=server_ctx)
    trusted = ssl.create_default_context(cadata=pem.decode())
    rules = _outbound.Rules(allow_http=False, allow_private=True)
    url = f"https://hooks.example.test:{srv.port}/hook"
    with client(verify=trusted) as c:
        for _ in range(2):
            resp = _outbound.pinned_post(c, url, rules, content=b"x", headers={}, what="post",
                                         resolver=lambda host, port: ["127.0.0.1"])
            assert resp.status_code == 200
        with pytest.raises(TransientError, match="was not sent"):  # the IP is not the certificate's name
            _http.request(c, "POST", f"https://127.0.0.1:{srv.port}/hook", content=b"x", what="post")
    assert len(srv.requests) == 2
    assert b"Host: hooks.example.test:%d" % srv.port in srv.requests[0][0]


def test_a_receiver_trickling_its_answer_meets_the_whole_exchanges_deadline(servers):
    """httpx's read timeout is per read: one byte every 0.2 s would never trip a 1-s timeout.
    The transport bounds the whole answer (connect + read timeout from the request's start)."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
    stop = threading.Event()

    def trickle(conn, head, body):
        for i in range(len(answer)):
            if stop.wait(0.2):
                return False
            try:
                conn.sendall(answer[i:i + 1])
            except OSError:
                return False
        return True

    srv = servers(trickle)
    t0 = time.monotonic()
    with _http.make_client(1.0) as c, pytest.raises(AmbiguousDelivery, match="ReadTimeout"):
        _http.request(c, "POST", srv.url(), content=b"x", what="post")
    took = time.monotonic() - t0
    stop.set()
    assert took < 5, f"the send was held {took:.1f} s by a trickling receiver"


def test_the_request_line_headers_and_body_go_out_in_one_write(servers, monkeypatch):
    """A receiver never sees headers without their body (a worker killed between two writes
    would leave it holding a request with a webhook-id and no body): the transport makes exactly
    one write per request, holding all of it."""
    writes: list[bytes] = []

    class Counting:
        def __init__(self, sock):
            self._sock = sock

        def sendall(self, data):
            writes.append(bytes(data))
            return self._sock.sendall(data)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    real_connect = LeanTransport._connect
    monkeypatch.setattr(LeanTransport, "_connect", lambda self, *a: Counting(real_connect(self, *a)))
    srv = servers(ok())
    body = b'{"type":"announcement.created","data":{"title":"x"}}'
    with client() as c:
        assert c.post(srv.url(), content=body, headers={"webhook-id": "msg_1"}).status_code == 200
    assert len(writes) == 1 and writes[0].endswith(b"\r\n\r\n" + body), writes
    assert srv.requests == [(writes[0].partition(b"\r\n\r\n")[0], body)]


def test_a_2xx_with_an_undecodable_body_is_an_answer_not_a_maybe(servers):
    """A receiver that says gzip and sends plain text answered all the same: its status counts."""
    srv = servers(ok(body=b"not gzip at all", extra=b"Content-Encoding: gzip\r\n"))
    with client() as c:
        resp = _http.request(c, "POST", srv.url(), content=b"x", what="post")
        assert resp.status_code == 200 and resp.content == b"" and "content-encoding" not in resp.headers
        _http.raise_for_status(resp, "post")  # a 2xx: delivered
        assert _http.request(c, "POST", srv.url(), content=b"y", what="post").status_code == 200
    assert len(srv.requests) == 2


def test_a_refusal_with_an_undecodable_body_is_still_judged_by_its_status(servers):
    def refuse(conn, head, body):
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello")
        return True

    srv = servers(refuse)
    with client() as c:
        resp = _http.request(c, "POST", srv.url(), content=b"x", what="post")
        with pytest.raises(PermanentError, match="HTTP 400"):
            _http.raise_for_status(resp, "post")


def test_a_proxy_from_the_environment_takes_httpx_own_route(monkeypatch):
    with client() as c:
        assert c.direct is not None  # no proxy: requests go straight to the lean transport
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    with client() as c:
        assert c.direct is None  # httpx's mounts route it (and the proxy) as before
