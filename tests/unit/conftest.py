"""Unit tests use no network — not PostgreSQL, not Redis, not a loopback server, not DNS.

Each unit test runs with the socket calls that reach a network (``connect``, ``bind``,
``getaddrinfo`` on anything but a Unix socket) refused and recorded, and fails if it made one —
even when the code under test caught the error (a fail-open path would otherwise hide it). A test
that needs a server belongs in ``tests/contract`` (a port against its twins) or
``tests/integration``; asking for one of the fixtures that start or reach one fails at once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

#: fixtures of tests/conftest.py that reach a server (PostgreSQL, Redis, an HTTP stand-in)
NETWORK_FIXTURES = frozenset({"pg_database", "ledger_url", "shared_redis_url", "private_redis", "receiver"})


@pytest.fixture(autouse=True)
def no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Yields what was tried (a test of this guard clears it once it has looked)."""
    asked = NETWORK_FIXTURES.intersection(request.fixturenames)
    if asked:
        pytest.fail(f"a unit test uses no network, but asks for {', '.join(sorted(asked))}: "
                    "move it to tests/contract or tests/integration")
    used: list[str] = []

    def refused(what: str) -> OSError:
        used.append(what)
        return OSError(f"unit tests use no network ({what})")

    def guard(name: str):
        original = getattr(socket.socket, name)

        def call(self: socket.socket, address, *args):
            if self.family == socket.AF_UNIX:
                return original(self, address, *args)
            raise refused(f"{name} {address!r}")

        return call

    def getaddrinfo(host, *args, **kwargs):
        raise refused(f"getaddrinfo {host!r}")

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, guard(name))
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield used
    assert not used, f"a unit test uses no network, but this one tried: {'; '.join(used)}"
