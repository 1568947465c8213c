"""The demo's posts carry a Verify link that works: `config/demo.yaml`'s status site has a
``site_url`` on the sandbox, `broadcaster up` has the sandbox serve ``var/status-site`` there, and a
post copied from a demo channel is called genuine by `broadcaster verify --text -`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from click.testing import CliRunner

from broadcaster import engine, service
from broadcaster.cli import main
from broadcaster.cli.server import _site_on_sandbox
from broadcaster.config import read_settings
from broadcaster.ledger import Ledger
from broadcaster.runtime import standard_ports
from tests.support.runtime import memory_runtime

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
PAGE = "http://127.0.0.1:8099/status/verify.html"


def _cli(*args: str, input: str | None = None):
    import broadcaster.cli.keys  # noqa: F401 - registers `keys` and `verify` on `main`

    return CliRunner().invoke(main, ["--config", str(DEMO), *args], input=input, env={"BROADCASTER_CONFIG": None})


def test_a_demo_post_carries_a_verify_link_that_verify_accepts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's var/ (keys, status site) lands here
    assert _cli("keys", "create", "--id", "demo1").exit_code == 0
    settings = read_settings(DEMO, env={})
    mastodon: list[str] = []

    def provider(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/api/v1/statuses"):
            mastodon.append(json.loads(request.content)["status"])
            return httpx.Response(200, json={"id": "1", "url": "http://127.0.0.1:8099/mastodon/@s/1"})
        return httpx.Response(200, json={"id": "1"})

    http = httpx.Client(transport=httpx.MockTransport(provider))
    # the running system's ports (Runtime.from_settings): the status site publishes keys and signatures
    rt = memory_runtime(settings, ledger=Ledger.open(f"sqlite:///{tmp_path}/l.db"), http=http, ports=standard_ports)
    try:
        ann = service.submit(rt, {"kind": "incident", "title": "Search is slow", "body": "Looking into it.",
                                  "channels": ["status-site", "mastodon-main"]}, principal=service.SYSTEM).id
        for d in rt.ledger.deliveries_of(ann):
            assert engine.attempt(rt, d.id) == "delivered", d.channel
    finally:
        rt.close()
        http.close()
        rt.ledger.close()
    (post,) = mastodon
    assert post.endswith(f"Verify: {PAGE}?id={ann}"), post
    result = _cli("verify", "--text", "-", input=post)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: "), result.output
    forged = post.replace("http://127.0.0.1:8099/status/", "http://127.0.0.1:8099/evil/")
    assert _cli("verify", "--text", "-", input=forged).exit_code == 1


def test_up_has_the_sandbox_serve_the_demo_status_site():
    """(The sandbox serving a site read-only: tests/integration/test_sandbox_server.py.)"""
    assert _site_on_sandbox(read_settings(DEMO, env={}), 8099) == "var/status-site"
    assert _site_on_sandbox(read_settings(DEMO, env={}), 9999) is None  # a site published elsewhere
