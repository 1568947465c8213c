"""A real HTTP server on loopback that records requests and answers from a script.

``receiver.script(503, 503, 503)`` makes the next three requests fail, then 200s follow;
``receiver.hold()`` keeps requests waiting (to kill a worker mid-send); ``unique_ids()`` counts
distinct Standard Webhooks ``webhook-id`` values — what a deduplicating receiver would keep.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b'{"ok":true}'
    delay: float = 0.0


@dataclass
class Seen:
    at: float
    path: str
    headers: dict
    body: bytes
    status: int

    def json(self):
        return json.loads(self.body)


class Receiver:
    def __init__(self):
        self.requests: list[Seen] = []
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                outer.arrived.set()
                outer._released.wait(60)
                with outer._lock:
                    reply = outer._script.pop(0) if outer._script else Reply()
                    outer.requests.append(Seen(time.time(), self.path, {k.lower(): v for k, v in self.headers.items()},
                                               body, reply.status))
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(reply.body)

            do_PUT = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()

    def script(self, *replies) -> None:
        with self._lock:
            self._script.extend(r if isinstance(r, Reply) else Reply(status=r) for r in replies)

    def hold(self) -> None:
        self.arrived.clear()
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def ok(self) -> list[Seen]:
        return [r for r in self.requests if 200 <= r.status < 300]

    def unique_ids(self, ok_only: bool = True) -> set[str]:
        rows = self.ok() if ok_only else self.requests
        return {r.headers.get("webhook-id") for r in rows}

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False
