"""Approvals on the page and in the CLI: the exact per-channel text, and only a second person
may approve."""

from __future__ import annotations

from click.testing import CliRunner

from broadcaster.asgi import create_app
from broadcaster.cli import main
from broadcaster.models import DeliveryState as S
from tests.cli.live import make_settings, memory_runtime, serve
from tests.web.conftest import CHANNELS, XSS, Web


def test_approvals_page_and_cli(tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", CHANNELS,
                             routes={"promotion": ["hook-a", "discord-ops"]}, review={"kinds": ["promotion"]})
    rt = memory_runtime(settings)
    web = Web(create_app(settings, rt), rt)
    author = web.token("marketing", kinds=["promotion"])
    c, csrf = web.signed_in(author)
    r = c.post("/compose", data={"csrf": csrf, "kind": "promotion", "title": f"Sale {XSS}", "body": "Half price."},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    [ann] = rt.ledger.list_announcements(limit=5)
    assert {d.state for d in rt.ledger.deliveries_of(ann.id)} == {S.SCHEDULED}
    html = c.get("/approvals").text
    assert ann.id in html and "hook-a" in html and "discord-ops" in html and "Half price." in html
    assert XSS not in html and "You wrote this post" in html
    assert c.post(f"/approvals/{ann.id}/approve", data={"csrf": csrf}).status_code == 403
    assert "Waiting for a second person" in c.get(f"/announcements/{ann.id}").text

    with serve(settings, rt) as (url, app):
        reviewer, _ = app.state.tokens.create("reviewer", kinds=["promotion"], actor="test")
        env = {"BROADCASTER_URL": url, "BROADCASTER_TOKEN": reviewer}
        status = CliRunner().invoke(main, ["status", ann.id], env=env, catch_exceptions=False)
        assert "awaiting a second person's approval" in status.stdout
        listed = CliRunner().invoke(main, ["approvals", "list"], env=env, catch_exceptions=False)
        assert listed.exit_code == 0 and "-- discord-ops" in listed.stdout and "Half price." in listed.stdout
        own = CliRunner().invoke(main, ["approvals", "approve", ann.id], env={**env, "BROADCASTER_TOKEN": author})
        assert own.exit_code != 0 and "second person" in own.output
        ok = CliRunner().invoke(main, ["approvals", "approve", ann.id], env=env, catch_exceptions=False)
        assert ok.exit_code == 0 and ok.stdout.strip() == f"approved {ann.id}"
    assert {d.state for d in rt.ledger.deliveries_of(ann.id)} == {S.PENDING}
    rt.ledger.close()
