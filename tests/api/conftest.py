"""An API on a real SQLite ledger, in-memory breaker and limiter, and a recording enqueuer.

Channels are generic/chat webhooks whose URLs and secrets are recognisable strings, so any test
can check that none of them ever reaches a response.
"""

from __future__ import annotations

import hashlib
import warnings

import pytest

from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from broadcaster.resilience import MemoryBreaker, MemoryRateLimiter
from broadcaster.tokens import TokenStore
from broadcaster.wakeup import MemoryEnqueuer
from tests.support.runtime import memory_runtime

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET_URL = "https://hooks.example.test/services/T000/SECRET-URL-7f3a9"
SIGNING_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Ng=="
STATIC_TOKEN = "static-token-for-ops-9c1d2e"
SECRETS = (SECRET_URL, "SECRET-URL-7f3a9", SIGNING_SECRET, STATIC_TOKEN, "c2VjcmV0LXNpZ25pbmcta2V5")


def config(**overrides) -> dict:
    cfg = {
        "ledger": "sqlite:///unused.db",
        "public_url": "https://status.example.test",
        "channels": {
            "hook": {"kind": "webhook", "url": SECRET_URL, "secret": SIGNING_SECRET},
            "ops-chat": {"kind": "webhook", "format": "slack", "url": SECRET_URL + "/slack"},
            "discord": {"kind": "webhook", "format": "discord", "url": SECRET_URL + "/discord"},
        },
        "routes": {"incident": ["hook", "ops-chat"], "deploy": ["ops-chat"], "maintenance": ["hook"],
                   "promotion": ["discord"], "notice": ["hook"]},
        "policy": {"channels": {"discord": {"on_too_long": "reject"}}},
        "tokens": [{"name": "ops-static", "hash": "sha256:" + hashlib.sha256(STATIC_TOKEN.encode()).hexdigest(),
                    "kinds": ["incident", "maintenance"]}],
        "api": {"max_body_bytes": 4096, "rate_limit": "1000/m", "anonymous_rate_limit": "1000/m"},
    }
    cfg.update(overrides)
    return cfg


class Env:
    """The app under test and the handles a test needs to poke at it."""

    def __init__(self, tmp_path, cfg: dict | None = None, ledger: Ledger | None = None, **collaborators):
        """``collaborators``: the runtime's own (``limiter``, ``redis``, ``confirmation_sender`` …)
        in place of the memory twins — a runtime is fixed once built."""
        from broadcaster.asgi import create_app

        self.settings = load_settings(cfg or config(), env={})
        self.ledger = ledger or Ledger.open(f"sqlite:///{tmp_path}/l.db")
        self.breaker = MemoryBreaker()
        self.limiter = MemoryRateLimiter()
        wakeups = MemoryEnqueuer()
        self.runtime = memory_runtime(self.settings, ledger=self.ledger, **{
            "breaker": self.breaker, "limiter": self.limiter, "enqueuer": wakeups, **collaborators})
        self._wakeups = wakeups
        self.retracts: list[tuple[str, str]] = wakeups.retractions
        self.app = create_app(self.settings, self.runtime)
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.store = TokenStore(self.ledger, self.settings)
        self.tokens: dict[str, str] = {}

    @property
    def enqueued(self) -> list[tuple[str, str, float | None]]:
        """What the app asked the broker for, once its wake-up thread has published what was queued."""
        assert self.app.state.wakeups.flush(), "the wake-up thread did not publish within 5 s"
        return self._wakeups.deliveries

    def token(self, name: str, *, kinds=(), channels=(), admin=False) -> dict[str, str]:
        if name not in self.tokens:
            raw, _ = self.store.create(name, kinds=kinds, channels=channels, admin=admin, actor="test")
            self.tokens[name] = raw
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.token("admin", admin=True)

    def post(self, path: str, json=None, headers=None, **kw):
        return self.client.post(f"/api/v1{path}", json=json, headers={**self.admin, **(headers or {})}, **kw)

    def get(self, path: str, headers=None, **kw):
        return self.client.get(f"/api/v1{path}", headers={**self.admin, **(headers or {})}, **kw)

    def submit(self, **fields) -> dict:
        body = {"kind": "incident", "title": "Database is down", "body": "We are investigating.", **fields}
        r = self.post("/announcements", body)
        assert r.status_code == 202, r.text
        return r.json()


@pytest.fixture
def env(tmp_path) -> Env:
    e = Env(tmp_path)
    yield e
    e.client.close()
    e.ledger.close()


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory) -> Env:
    """One app for read-mostly checks that do not care about each other's data (fast matrices)."""
    e = Env(tmp_path_factory.mktemp("shared"))
    yield e
    e.client.close()
    e.ledger.close()


@pytest.fixture
def make_env(tmp_path):
    made = []

    def make(cfg: dict | None = None, ledger: Ledger | None = None, **collaborators) -> Env:
        e = Env(tmp_path, cfg, ledger, **collaborators)
        made.append(e)
        return e

    yield make
    for e in made:
        e.client.close()


def assert_error(resp, status: int, code: str) -> dict:
    """Every error is JSON {"error": {"code", "message", "details"}} and shows no traceback."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    err = resp.json()["error"]
    assert set(err) == {"code", "message", "details"}
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    return err
