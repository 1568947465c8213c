"""The real API app (which includes the web router) over a SQLite ledger, for TestClient tests."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from broadcaster.asgi import create_app
from tests.cli.live import make_settings, memory_runtime
from tests.support.runtime import wakeups

XSS = "<script>alert(1)</script>"
CHANNELS = {
    "hook-a": {"kind": "webhook", "url": "http://127.0.0.1:9/a"},
    "discord-ops": {"kind": "webhook", "format": "discord", "url": "http://127.0.0.1:9/d"},
}
#: the components the compose form offers: declared by a status channel (not routed here)
COMPONENTS = ["API", "Checkout"]


def field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} field"
    return m.group(1)


class Web:
    def __init__(self, app, runtime):
        self.app = app
        self.runtime = runtime
        self.enqueued = wakeups(runtime).deliveries

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://testserver")

    def token(self, name="ops", **kw) -> str:
        raw, _ = self.app.state.tokens.create(name, actor="test", **kw)
        return raw

    def signed_in(self, token: str | None = None) -> tuple[TestClient, str]:
        c = self.client()
        pre = field(c.get("/signin").text, "csrf")
        r = c.post("/signin", data={"csrf": pre, "token": token or self.token(admin=True)}, follow_redirects=False)
        assert r.status_code == 303, r.text
        return c, field(c.get("/compose").text, "csrf")


@pytest.fixture
def web(tmp_path):
    site = {"kind": "statuspage", "output_dir": str(tmp_path / "site"), "components": COMPONENTS}
    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", {**CHANNELS, "status-site": site},
                             routes={"incident": ["hook-a", "discord-ops"], "promotion": ["hook-a"]})
    rt = memory_runtime(settings)
    yield Web(create_app(settings, rt), rt)
    rt.ledger.close()
