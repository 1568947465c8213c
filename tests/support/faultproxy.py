"""A small TCP fault proxy for tests (toxiproxy's server cannot be installed here).

Sits between a client and a server on loopback and can, at runtime: add latency to every chunk,
reset connections (new and existing), or black-hole traffic (accept, then never forward or
answer). ``mode = "pass"`` forwards faithfully.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"  # pass | latency | reset | blackhole
        self.latency = 0.0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.connections = 0

    def start(self) -> FaultProxy:
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self.reset_all()

    def set(self, mode: str, latency: float = 0.0) -> None:
        self.mode, self.latency = mode, latency
        if mode == "reset":
            self.reset_all()

    def reset_all(self) -> None:
        with self._lock:
            for s in list(self._conns):
                _hard_close(s)
            self._conns.clear()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.mode == "reset":
                _hard_close(client)
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.mode == "blackhole":
            with self._lock:
                self._conns.add(client)
            return  # hold the socket open, never answer
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _hard_close(client)
            return
        with self._lock:
            self._conns.update((client, upstream))
        pair = {client: upstream, upstream: client}
        try:
            while not self._stopped.is_set():
                ready, _, _ = select.select(list(pair), [], [], 0.5)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    if self.mode == "blackhole":
                        continue  # swallow: the peer waits forever
                    if self.mode == "latency" and self.latency:
                        time.sleep(self.latency)
                    pair[src].sendall(data)
        except (OSError, ValueError):  # ValueError: reset() closed a socket under select (fd -1)
            return
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns.discard(client)
                self._conns.discard(upstream)


def _hard_close(sock: socket.socket) -> None:
    """Close with RST instead of FIN, like a crashed peer or a middlebox reset."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
