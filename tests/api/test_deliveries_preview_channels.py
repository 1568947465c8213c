"""Retry a delivery, preview per channel, channel health."""

from __future__ import annotations

from broadcaster.models import DeliveryState as S
from tests.support.ledger import audit_entries, claim

from .conftest import assert_error, config


def _fail(env, did, to=S.FAILED):
    assert env.ledger.force(did, to, "test", actor="t", from_states=[S.PENDING])


# ---------------------------------------------------------------- retry


def test_retry_a_failed_delivery(env):
    a = env.submit()
    did = a["deliveries"][0]["id"]
    _fail(env, did)
    env.enqueued.clear()
    key = {"Idempotency-Key": "retry-1"}
    r = env.post(f"/deliveries/{did}/retry", headers=key)
    assert r.status_code == 202
    assert r.json() == {"id": did, "announcement_id": a["id"], "channel": "hook", "state": "pending"}
    assert env.enqueued == [(did, "hook", None)]
    again = env.post(f"/deliveries/{did}/retry", headers=key)
    assert again.status_code == 200 and again.json() == r.json()
    assert len(env.enqueued) == 1
    assert any(e["action"] == "delivery.retry" and e["actor"] == "admin" for e in audit_entries(env.ledger))


def test_retry_an_unknown_delivery(env):
    did = env.submit()["deliveries"][1]["id"]
    _fail(env, did, S.UNKNOWN)
    assert env.post(f"/deliveries/{did}/retry").json()["state"] == "pending"


def test_retry_errors(env):
    a = env.submit()
    pending = a["deliveries"][0]["id"]
    err = assert_error(env.post(f"/deliveries/{pending}/retry"), 422, "invalid_request")
    assert "still being worked on" in err["message"]
    assert_error(env.post("/deliveries/dlv_nope/retry"), 404, "not_found")
    _fail(env, pending)
    ci = env.token("ci", kinds=["deploy"])
    assert_error(env.client.post(f"/api/v1/deliveries/{pending}/retry", headers=ci), 403, "forbidden")
    hook_only = env.token("hook-only", channels=["ops-chat"])
    assert_error(env.client.post(f"/api/v1/deliveries/{pending}/retry", headers=hook_only), 403, "forbidden")
    assert env.ledger.get_delivery(pending).state == S.FAILED


# ---------------------------------------------------------------- preview


def test_preview_renders_every_routed_channel_without_sending(env):
    r = env.post("/preview", {"kind": "incident", "title": "API errors", "body": "Elevated *error* rates.",
                              "url": "https://status.example.test/x"})
    assert r.status_code == 200
    out = {c["channel"]: c for c in r.json()["channels"]}
    assert list(out) == ["hook", "ops-chat"]
    for c in out.values():
        assert c["error"] is None and c["kind"] == "webhook"
        assert c["parts"] and c["lengths"] == [len(p) for p in c["parts"]]
        assert "API errors" in c["text"] and c["title"] == "API errors"
    assert env.enqueued == [] and env.ledger.list_announcements() == []


def test_preview_shows_limits_and_refusals(env):
    long = "word " * 500
    r = env.post("/preview", {"kind": "promotion", "title": "Sale", "body": long, "channels": ["discord", "hook"],
                              "variants": {"hook": {"title": "Sale (hook)"}}})
    out = {c["channel"]: c for c in r.json()["channels"]}
    assert out["discord"]["limit"] == 2000
    assert out["discord"]["error"] and "2000" in out["discord"]["error"] and out["discord"]["parts"] == []
    assert out["hook"]["limit"] is None and out["hook"]["title"] == "Sale (hook)"
    r = env.post("/preview", {"kind": "promotion", "title": "Sale", "body": "short", "channels": ["discord"]})
    assert r.json()["channels"][0]["error"] is None
    assert r.json()["channels"][0]["lengths"][0] <= 2000


def test_preview_allows_an_empty_title_while_typing(env):
    r = env.post("/preview", {"kind": "deploy", "title": ""})
    assert r.status_code == 200 and r.json()["channels"][0]["channel"] == "ops-chat"


def test_preview_errors(env):
    assert assert_error(env.post("/preview", {"kind": "incident", "title": "x", "channels": ["nope"]}),
                        422, "invalid_request")["details"]["field"] == "channels"
    assert assert_error(env.post("/preview", {"kind": "bogus"}), 422, "invalid_request")["details"]["field"] == "kind"
    assert_error(env.client.post("/api/v1/preview", json={"kind": "incident"}), 401, "unauthorized")


def test_preview_without_a_route(make_env):
    e = make_env(config(routes={}))
    err = assert_error(e.post("/preview", {"kind": "incident", "title": "x"}), 422, "invalid_request")
    assert err["details"]["field"] == "channels"


# ---------------------------------------------------------------- channels


def test_channels_show_breaker_backlog_and_last_success(env):
    a = env.submit()
    hook = a["deliveries"][0]["id"]
    claimed = claim(env.ledger, hook, "w", 30)
    env.ledger.transition(claimed, S.DELIVERED, "sent", owner="w", attempted=True)
    for _ in range(5):
        env.breaker.failure("ops-chat", 5, 30)
    items = {c["name"]: c for c in env.get("/channels").json()["items"]}
    assert list(items) == ["hook", "ops-chat", "discord"]
    assert items["hook"]["breaker"]["state"] == "closed" and items["hook"]["backlog"] == 0
    assert items["hook"]["last_success"].endswith("Z") and items["hook"]["counts"] == {"delivered": 1}
    chat = items["ops-chat"]
    assert chat["breaker"]["state"] == "open" and chat["breaker"]["failures"] == 5
    assert chat["breaker"]["retry_at"].endswith("Z")
    assert chat["backlog"] == 1 and chat["queue"] == "bc.ch.ops-chat" and chat["last_success"] is None
    assert items["discord"]["counts"] == {} and items["discord"]["kind"] == "webhook"


def test_channels_survive_an_unreachable_breaker_store(make_env):
    class Down:
        def state(self, *a):
            raise ConnectionError("redis://:hunter2@redis:6379 refused")

    env = make_env(breaker=Down())
    r = env.get("/channels")
    assert r.status_code == 200 and {c["breaker"]["state"] for c in r.json()["items"]} == {"unknown"}
    assert "hunter2" not in r.text
