"""``Sandbox``: the app served by uvicorn in a background thread, plus the SMTP sink, with
helpers tests use directly (same process, so no HTTP round-trip to read what was posted)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import uvicorn

from .app import SMTP, SandboxApp
from .faults import Fault
from .providers.bluesky import as_bluesky
from .smtp import SmtpSink
from .state import SandboxState


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Sandbox:
    """``Sandbox(port=0, smtp_port=0).start()`` picks free ports; ``smtp_port=None`` skips SMTP."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8099, smtp_port: int | None = 8025, *,
                 faults: Iterable[Fault] = (), rate_limits: bool = True,
                 settings: dict[str, dict[str, Any]] | None = None, log_level: str = "warning",
                 site_dir: str | None = None):
        self.host = host
        self.app = SandboxApp(rate_limits=rate_limits, settings=settings, site_dir=site_dir)
        self.state: SandboxState = self.app.state
        for fault in faults:
            self.state.faults.add(fault)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self.smtp_port = (smtp_port or free_port(host)) if smtp_port is not None else None
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level=log_level, http="h11", lifespan="off",
                                                     access_log=False, timeout_graceful_shutdown=1))
        self._thread: threading.Thread | None = None
        self._smtp: SmtpSink | None = None

    # -- lifecycle

    def start(self, timeout: float = 10.0) -> Sandbox:
        if self.smtp_port is not None:
            self._smtp = SmtpSink(self.state, self.host, self.smtp_port).start()
        self._sock.listen(128)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="broadcaster-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sandbox did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None
        self._sock.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- helpers for tests and drills

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, provider: str) -> str:
        """The base_url a channel should be configured with."""
        if provider not in self.app.providers:
            raise KeyError(f"unknown provider {provider!r}")
        return f"{self.base_url}/{provider}"

    def set_fault(self, provider: str, mode: str, count: int | None = None, **options: Any) -> Fault:
        if provider not in self.app.names:
            raise KeyError(f"unknown provider {provider!r}")
        return self.state.faults.add(Fault(provider=provider, mode=mode, count=count, **options))

    def clear_faults(self, provider: str | None = None) -> None:
        self.state.faults.clear(provider)

    def configure(self, provider: str, **settings: Any) -> dict[str, Any]:
        return self.app.configure(provider, settings)

    def requests(self, provider: str | None = None) -> list[dict[str, Any]]:
        return self.state.requests(provider)

    def posts(self, provider: str) -> list[dict[str, Any]]:
        return self.state.posts(provider)

    def post_count(self, provider: str) -> int:
        """How many distinct posts (statuses, records, messages…) the provider created."""
        return len(self.state.posts(provider))

    def messages(self) -> list[dict[str, Any]]:
        """Mail the SMTP sink accepted."""
        return self.state.posts(SMTP)

    def mails_to(self, address: str) -> int:
        return sum(address.lower() in (r.lower() for r in m["rcpt_tos"]) for m in self.messages())

    def expire_tokens(self, provider: str, *tokens: str) -> int:
        """Declare access tokens of a stand-in with a token endpoint expired (default: every one
        it issued so far); a request with one then gets the provider's "token expired" answer."""
        return self.app.provider(provider).grants.expire(tokens)

    def token_refreshes(self, provider: str) -> int:
        """How many renewals the stand-in's token endpoint granted."""
        return self.app.provider(provider).grants.refreshes

    def expire_sessions(self) -> None:
        as_bluesky(self.app.provider("bluesky")).expire_sessions()

    def reset(self) -> None:
        self.state.reset()
