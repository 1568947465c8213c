"""The guard of tests/unit/conftest.py: a unit test that reaches for the network is refused and
fails, even when the code under test swallows the refusal."""

from __future__ import annotations

import socket

import httpx
import pytest


def test_a_connection_is_refused_and_remembered(no_network):
    with pytest.raises(OSError, match="unit tests use no network"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with pytest.raises(httpx.ConnectError):  # a client that maps the error still cannot hide it
        httpx.get("http://127.0.0.1:9/")
    assert no_network and all("unit tests" not in what for what in no_network)
    assert any(what.startswith("getaddrinfo '127.0.0.1'") for what in no_network), no_network
    no_network.clear()  # seen: otherwise this test would fail, as any other would


def test_unix_sockets_and_socket_pairs_are_not_network(no_network):
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"
    assert no_network == []
