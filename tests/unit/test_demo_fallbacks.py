"""The stock demo is safe as written: in `config/demo.yaml` x-main falls back to ops-slack, and the
incident route goes to both. With X refusing for good, Slack still gets the incident once."""

from __future__ import annotations

from pathlib import Path

import httpx

from broadcaster import engine, service
from broadcaster.config import read_settings
from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S
from tests.support.runtime import memory_runtime

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"


def test_the_demo_posts_an_incident_once_to_slack_when_x_falls_back_to_it(tmp_path):
    settings = read_settings(DEMO, env={})
    assert "ops-slack" in settings.policy_for("x-main").fallback, "the demo's fallback this test is about"
    assert {"x-main", "ops-slack"} <= set(settings.route("incident"))
    requests: list[httpx.Request] = []

    def provider(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path.startswith("/x/"):
            return httpx.Response(403, json={"detail": "not allowed"})  # refused for good
        return httpx.Response(200, text="ok")

    http = httpx.Client(transport=httpx.MockTransport(provider))
    rt = memory_runtime(settings, ledger=Ledger.open(f"sqlite:///{tmp_path}/l.db"), http=http)
    try:
        ann = service.submit(rt, {"kind": "incident", "title": "API errors", "body": "Investigating."},
                             principal=service.SYSTEM).id
        by_channel = {d.channel: d for d in rt.ledger.deliveries_of(ann)}
        assert engine.attempt(rt, by_channel["x-main"].id) == "fallen_back"
        for d in rt.ledger.deliveries_of(ann):
            if d.channel == "ops-slack" and d.state == S.PENDING:
                assert engine.attempt(rt, d.id) == "delivered"
        slack = [d for d in rt.ledger.deliveries_of(ann) if d.channel == "ops-slack"]
        assert len(slack) == 1 and slack[0].fallback_of is None
        assert sum(1 for r in requests if r.url.path.startswith("/slack/")) == 1
        assert f"fallback ops-slack already has it ({slack[0].id}" in rt.ledger.events_of(by_channel["x-main"].id)[-1].reason
    finally:
        rt.close()
        http.close()
        rt.ledger.close()
