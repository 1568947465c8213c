"""Verified tokens are trusted briefly per process (``api.token_cache``), and a revocation still
reaches every process within that time: in-process with a fake clock, then across two app
instances sharing a real ledger and a real Redis."""

from __future__ import annotations

import time

import pytest

from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from broadcaster.tokens import TokenStore

from .conftest import TestClient, assert_error, config


class Tick:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stores(tmp_path):
    """Two stores on one ledger — two API processes — and a count of ledger look-ups."""
    settings = load_settings(config(api={"token_cache": "1s"}), env={})
    ledger = Ledger.open(f"sqlite:///{tmp_path}/l.db")
    tick = Tick()
    here, there = TokenStore(ledger, settings, monotonic=tick), TokenStore(ledger, settings, monotonic=tick)
    lookups = []
    real = ledger.tokens.by_hash
    ledger.tokens.by_hash = lambda digest: lookups.append(digest) or real(digest)  # type: ignore[method-assign]
    yield here, there, tick, lookups
    ledger.close()


def test_a_verified_token_is_not_looked_up_again_within_the_cache_time(stores):
    here, _there, tick, lookups = stores
    raw, _ = here.create("ci", actor="t")
    assert [here.verify(raw) is not None for _ in range(5)] == [True] * 5
    assert len(lookups) == 1
    tick.now += 1.01
    assert here.verify(raw) is not None and len(lookups) == 2, "after api.token_cache the ledger is asked again"


def test_wrong_and_revoked_tokens_are_never_cached(stores):
    here, _there, _tick, lookups = stores
    raw, _ = here.create("ci", actor="t")
    for _ in range(3):
        assert here.verify(raw + "x") is None
    assert len(lookups) == 3
    here.revoke("ci", actor="t")
    assert here.verify(raw) is None and here.verify(raw) is None and len(lookups) == 5


def test_revoked_elsewhere_is_refused_once_the_cache_time_is_over(stores):
    here, there, tick, _lookups = stores
    raw, _ = here.create("ci", actor="t")
    assert there.verify(raw) is not None  # `there` now trusts it
    here.revoke("ci", actor="t")
    assert here.verify(raw) is None, "the revoking process refuses it at once"
    tick.now += 0.5
    assert there.verify(raw) is not None, "within api.token_cache another process may still accept it"
    tick.now += 0.51
    assert there.verify(raw) is None


def test_token_cache_zero_asks_the_ledger_every_time(tmp_path):
    settings = load_settings(config(api={"token_cache": 0}), env={})
    ledger = Ledger.open(f"sqlite:///{tmp_path}/l.db")
    try:
        here, there = TokenStore(ledger, settings), TokenStore(ledger, settings)
        raw, _ = here.create("ci", actor="t")
        assert there.verify(raw) is not None
        here.revoke("ci", actor="t")
        assert there.verify(raw) is None
    finally:
        ledger.close()


def test_two_api_processes_refuse_a_revoked_token_within_a_second_or_two(tmp_path, shared_redis_url):
    """Two app instances (each its own runtime, token store, Redis limiter and broker client)
    share a ledger and a Redis; the token is revoked through one, and the other refuses it
    within ``api.token_cache`` (1 s) — polled, so the figure is the real delay."""
    from broadcaster.asgi import create_app

    cfg = config(ledger=f"sqlite:///{tmp_path}/l.db", broker=shared_redis_url, api={
        "token_cache": "1s", "rate_limit": "100000/1m", "anonymous_rate_limit": "100000/1m", "max_body_bytes": 4096})
    settings = load_settings(cfg, env={})
    first, second = create_app(settings), create_app(settings)
    with TestClient(first) as a, TestClient(second) as b:
        raw, _ = first.state.tokens.create("deploy-bot", actor="test")
        h = {"Authorization": f"Bearer {raw}"}
        assert a.get("/api/v1/channels", headers=h).status_code == 200
        assert b.get("/api/v1/channels", headers=h).status_code == 200  # b trusts it from now on
        first.state.tokens.revoke("deploy-bot", actor="test")
        revoked = time.monotonic()
        assert_error(a.get("/api/v1/channels", headers=h), 401, "unauthorized")
        while True:
            r = b.get("/api/v1/channels", headers=h)
            waited = time.monotonic() - revoked
            if r.status_code != 200 or waited > 5:
                break
            time.sleep(0.05)
        assert_error(r, 401, "unauthorized")
        assert waited <= 2.0, f"the other process accepted a revoked token for {waited:.2f} s"
