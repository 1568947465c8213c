"""Health, readiness, metrics, JSON errors everywhere, and no secret in any answer."""

from __future__ import annotations

import logging

from sqlalchemy import create_engine

from broadcaster import parts, service
from broadcaster.errors import ConfigError, LedgerUnavailable
from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S
from tests.support.ledger import claim

from .conftest import SECRETS, STATIC_TOKEN, assert_error


def test_healthz(env):
    r = env.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_ok(env):
    r = env.client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"ledger": "ok", "redis": "skipped"}, "parts": {}}


def test_readyz_and_metrics_show_a_part_that_broadcaster_up_is_restarting(env, tmp_path, monkeypatch):
    """Under ``up`` a crashing worker shows, and the API, which still accepts, stays ready."""
    state = tmp_path / "parts.json"
    parts.write(state, {"api": parts.PartState("running"),
                        "worker": parts.PartState("restarting", 6, -9, "2026-01-02T03:04:05Z")})
    monkeypatch.setenv(parts.ENV, str(state))
    r = env.client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"
    assert r.json()["parts"] == {
        "api": {"state": "running", "restarts": 0, "last_exit": None, "next_try_at": None},
        "worker": {"state": "restarting", "restarts": 6, "last_exit": -9, "next_try_at": "2026-01-02T03:04:05Z"}}
    text = env.client.get("/metrics").text
    assert 'broadcaster_part_up{part="worker"} 0.0' in text
    assert 'broadcaster_part_up{part="api"} 1.0' in text
    assert 'broadcaster_part_restarts_total{part="worker"} 6.0' in text


def test_readyz_is_503_when_the_ledger_is_unreachable(make_env, tmp_path):
    e = make_env(ledger=Ledger(create_engine(f"sqlite:///{tmp_path}/missing/dir/l.db")))
    r = e.client.get("/readyz")
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "unavailable" and body["checks"]["ledger"].startswith("unavailable")
    assert "missing/dir" not in r.text  # no database path or URL in the answer
    assert e.client.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_is_503_when_redis_is_unreachable(make_env):
    class DeadRedis:
        def ping(self):
            raise ConnectionError("Error connecting to redis://:s3cret@10.0.0.9:6379")

    env = make_env(redis=DeadRedis())
    r = env.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"] == {"ledger": "ok", "redis": "unavailable (ConnectionError)"}
    assert "s3cret" not in r.text


def test_metrics_expose_counts_backlog_breakers_latency_and_requests(env):
    a = env.submit()
    hook, chat = (d["id"] for d in a["deliveries"])
    claimed = claim(env.ledger, hook, "w", 30)
    env.ledger.transition(claimed, S.RETRYING, "HTTP 503", owner="w", attempted=True, due_at=0)
    claimed = claim(env.ledger, hook, "w", 30)
    env.ledger.transition(claimed, S.DELIVERED, "sent", owner="w", attempted=True)
    env.ledger.force(chat, S.FAILED, "test", actor="t", from_states=[S.PENDING])
    for _ in range(5):
        env.breaker.failure("discord", 5, 30)
    r = env.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for line in ('broadcaster_announcements_accepted_total{kind="incident"} 1.0',
                 'broadcaster_deliveries{state="delivered"} 1.0',
                 'broadcaster_deliveries{state="failed"} 1.0',
                 'broadcaster_deliveries{state="unknown"} 0.0',
                 'broadcaster_delivery_retries_total{channel="hook"} 1.0',
                 'broadcaster_channel_backlog{channel="ops-chat"} 0.0',
                 'broadcaster_channel_breaker_state{channel="discord"} 2.0',
                 'broadcaster_channel_breaker_state{channel="hook"} 0.0',
                 'broadcaster_delivery_latency_seconds_count{channel="hook"} 1.0',
                 'broadcaster_ledger_up 1.0'):
        assert line in text, line
    assert 'broadcaster_api_request_duration_seconds_count{method="POST",route="/api/v1/announcements"} 1.0' in text
    assert 'broadcaster_api_requests_total{method="POST",route="/api/v1/announcements",status="202"} 1.0' in text


def test_metrics_survive_a_dead_ledger(make_env, tmp_path):
    e = make_env(ledger=Ledger(create_engine(f"sqlite:///{tmp_path}/missing/dir/l.db")))
    r = e.client.get("/metrics")
    assert r.status_code == 200 and "broadcaster_ledger_up 0.0" in r.text


def test_unknown_routes_and_methods_are_json_under_api(env):
    assert_error(env.get("/nothing-here"), 404, "not_found")
    assert_error(env.client.get("/api/v1/preview", headers=env.admin), 405, "method_not_allowed")
    assert_error(env.client.delete("/api/v1/announcements", headers=env.admin), 405, "method_not_allowed")
    assert_error(env.client.get("/api/v2/whatever", headers=env.admin), 404, "not_found")
    assert_error(env.client.post("/healthz"), 405, "method_not_allowed")


def test_a_bug_is_a_generic_500_without_traceback_or_message(env, monkeypatch, caplog):
    def boom(*a, **kw):
        raise RuntimeError("password=hunter2 leaked into an exception")

    monkeypatch.setattr(service, "status_of", boom)
    a = env.ledger.list_announcements()
    with caplog.at_level(logging.ERROR):
        r = env.get("/announcements/ann_x")
    assert_error(r, 500, "internal_error")
    assert "hunter2" not in r.text and "RuntimeError" not in r.text
    assert "hunter2" not in caplog.text and "RuntimeError" in caplog.text  # logged, without the message
    assert a == []


def test_config_error_is_a_generic_500(env, monkeypatch):
    def bad(*a, **kw):
        raise ConfigError([("channels.hook.url", "secret value https://x:pw@host is wrong")])

    monkeypatch.setattr(service, "status_of", bad)
    r = env.get("/announcements/ann_x")
    assert_error(r, 500, "internal_error")
    assert "pw@host" not in r.text


def test_ledger_unavailable_is_503_with_a_clear_message(env, monkeypatch):
    def down(*a, **kw):
        raise LedgerUnavailable("the ledger database is unavailable (OperationalError)")

    monkeypatch.setattr(service, "submit", down)
    r = env.post("/announcements", {"kind": "incident", "title": "x"})
    err = assert_error(r, 503, "ledger_unavailable")
    assert "nothing was recorded" in err["message"] and "Idempotency-Key" in err["message"]


def test_openapi_documents_the_api_and_bearer_auth(env):
    spec = env.client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/api/v1/announcements", "/api/v1/announcements/{ann_id}", "/api/v1/announcements/{ann_id}/updates",
              "/api/v1/announcements/{ann_id}/retract", "/api/v1/announcements/{ann_id}/cancel",
              "/api/v1/deliveries/{delivery_id}/retry", "/api/v1/preview", "/api/v1/channels", "/healthz",
              "/readyz", "/metrics"):
        assert p in paths, p
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert env.client.get("/docs").status_code == 200


def test_no_secret_reaches_any_response(env):
    """Exercise every endpoint, successes and failures, and look for the configured secrets."""
    static = {"Authorization": f"Bearer {STATIC_TOKEN}"}
    a = env.submit()
    did = a["deliveries"][0]["id"]
    env.ledger.force(did, S.FAILED, "test", actor="t", from_states=[S.PENDING])
    responses = [
        env.get(f"/announcements/{a['id']}"), env.get("/announcements"), env.get("/channels"),
        env.post("/preview", {"kind": "incident", "title": "t", "body": "b"}),
        env.post("/preview", {"kind": "promotion", "title": "t", "body": "w " * 2000}),
        env.post(f"/announcements/{a['id']}/updates", {"status": "identified", "body": "b"}),
        env.post(f"/deliveries/{did}/retry"), env.post(f"/announcements/{a['id']}/retract"),
        env.client.post("/api/v1/announcements", json={"kind": "deploy", "title": "x"}, headers=static),
        env.client.get("/api/v1/announcements", headers={"Authorization": "Bearer " + STATIC_TOKEN[:-1]}),
        env.client.get("/metrics"), env.client.get("/readyz"), env.client.get("/openapi.json"),
        env.post("/announcements", {"kind": "incident", "title": "x", "channels": ["hook"], "bogus": 1}),
    ]
    for r in responses:
        for secret in SECRETS:
            assert secret not in r.text, (r.request.url, secret)
    tokens = env.client.get("/api/v1/announcements", headers=env.admin)
    assert env.tokens["admin"] not in tokens.text


def test_the_token_table_holds_only_hashes(env):
    from sqlalchemy import select

    from broadcaster.ledger import schema as t

    env.token("ci", kinds=["deploy"])
    with env.ledger.read() as conn:
        rows = conn.execute(select(t.tokens)).all()
    assert rows and all(r.hash.startswith("sha256:") and len(r.hash) == 71 for r in rows)
    raw_values = set(env.tokens.values())
    assert not any(str(v) in raw_values for r in rows for v in r)
