"""Readiness through the real parts: a sandbox provider switched to "token revoked" shows the
channel not ready on the channels page and in /metrics within one check interval (the
scheduler's own loop), before any post is made; ``broadcaster check`` says the same."""

from __future__ import annotations

import threading
import time

import pytest
import yaml
from click.testing import CliRunner

from broadcaster.asgi import create_app
from broadcaster.cli import main
from broadcaster.readiness import ReadinessHook, check_all
from broadcaster.scheduler import Sweeper
from tests.cli.live import make_settings
from tests.support.runtime import memory_runtime
from tests.web.conftest import Web

TOKEN = "mastodon-access-token-3e3e"


@pytest.fixture
def sandbox():
    from broadcaster.sandbox import Sandbox

    sb = Sandbox(port=0, smtp_port=None, rate_limits=False).start()
    yield sb
    sb.stop()


def channels(sandbox) -> dict:
    return {"mastodon-main": {"kind": "mastodon", "base_url": sandbox.url("mastodon"), "access_token": TOKEN,
                              "read_instance_limits": False},
            "hook": {"kind": "webhook", "format": "generic", "url": sandbox.url("webhook") + "/r"}}


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_revoked_token_shows_not_ready_before_any_post(sandbox, ledger_url):
    settings = make_settings(ledger_url, channels(sandbox), readiness={"interval": "200ms"},
                             scheduler={"interval": "100ms"})
    rt = memory_runtime(settings)
    web = Web(create_app(settings, rt), rt)
    stop = threading.Event()
    loop = threading.Thread(target=Sweeper(rt, [ReadinessHook()]).run, args=(stop,), daemon=True)
    loop.start()
    try:
        c, _ = web.signed_in()

        def metric(value: str) -> bool:
            return f'broadcaster_channel_ready{{channel="mastodon-main"}} {value}' in c.get("/metrics").text

        assert wait_until(lambda: metric("1.0")), c.get("/metrics").text
        assert 'broadcaster_channel_ready{channel="hook"} 1.0' in c.get("/metrics").text
        sandbox.set_fault("mastodon", "revoked_token")
        assert wait_until(lambda: metric("0.0"))
        html = c.get("/channels").text
        row = html.split("mastodon-main", 1)[1].split("</tr>", 1)[0]
        assert "NOT READY" in row and "401" in row and TOKEN not in html
        assert rt.ledger.list_announcements(limit=5) == [] and sandbox.posts("mastodon") == []
        sandbox.clear_faults()
        assert wait_until(lambda: metric("1.0"))
    finally:
        stop.set()
        loop.join(10)
        rt.ledger.close()


def test_expiry_forecast_and_expired_token(sandbox, tmp_path):
    soon = time.time() + 3 * 86400
    settings = make_settings(f"sqlite:///{tmp_path}/l.db", channels(sandbox),
                             readiness={"token_expires": {"mastodon-main": str(soon), "hook": "2020-01-01"}})
    rt = memory_runtime(settings)
    results = {r.channel: r for r in check_all(rt)}
    assert results["mastodon-main"].ready and results["mastodon-main"].expires_at == pytest.approx(soon)
    assert not results["hook"].ready and "expired 2020-01-01" in results["hook"].detail
    web = Web(create_app(settings, rt), rt)
    c, _ = web.signed_in()
    text = c.get("/metrics").text
    prefix = 'broadcaster_channel_token_expires_seconds{channel="mastodon-main"}'
    line = next(x for x in text.splitlines() if x.startswith(prefix))
    assert 2 * 86400 < float(line.split()[-1]) <= 3 * 86400
    row = c.get("/channels").text.split("mastodon-main", 1)[1].split("</tr>", 1)[0]
    assert "renew soon" in row
    rt.ledger.close()


def test_cli_check_names_the_revoked_channel(sandbox, tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(yaml.safe_dump({"ledger": f"sqlite:///{tmp_path}/l.db", "channels": channels(sandbox)}))
    sandbox.set_fault("mastodon", "revoked_token")
    res = CliRunner().invoke(main, ["--config", str(cfg), "check"], catch_exceptions=False)
    assert res.exit_code == 1
    line = next(x for x in res.output.splitlines() if "mastodon-main" in x)
    assert "FAILED" in line and TOKEN not in res.output


def test_cli_check_forecasts_token_expiry(sandbox, tmp_path):
    cfg = tmp_path / "b.yaml"
    soon = time.time() + 10 * 86400 + 600
    cfg.write_text(yaml.safe_dump({"ledger": f"sqlite:///{tmp_path}/l.db", "channels": channels(sandbox),
                                   "readiness": {"token_expires": {"mastodon-main": str(soon)}}}))
    res = CliRunner().invoke(main, ["--config", str(cfg), "check"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if "mastodon-main" in x)
    assert "token expires in 10 days" in line and "renew" not in line  # beyond warn_before (7 days)
