"""Intake protection: authentication before anything else, body limits, rate limits."""

from __future__ import annotations

import asyncio
import json

import pytest

from broadcaster.errors import LedgerUnavailable

from .conftest import STATIC_TOKEN, TestClient, assert_error, config

BODY = {"kind": "incident", "title": "Database is down", "body": "We are investigating."}

PROTECTED = [("GET", "/api/v1/announcements"), ("POST", "/api/v1/announcements"),
             ("GET", "/api/v1/announcements/ann_x"), ("POST", "/api/v1/announcements/ann_x/updates"),
             ("POST", "/api/v1/announcements/ann_x/retract"), ("POST", "/api/v1/announcements/ann_x/cancel"),
             ("POST", "/api/v1/deliveries/dlv_x/retry"), ("POST", "/api/v1/preview"), ("GET", "/api/v1/channels"),
             ("GET", "/api/v1/no-such-route")]


# ---------------------------------------------------------------- 401


@pytest.mark.parametrize("method, path", PROTECTED)
@pytest.mark.parametrize("auth", [None, "Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer not-a-token", "Bearer a b"])
def test_every_api_route_needs_a_valid_token(shared_env, method, path, auth):
    headers = {"Authorization": auth} if auth else {}
    r = shared_env.client.request(method, path, headers=headers, json=BODY if method == "POST" else None)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_revoked_token_is_refused_at_once_by_the_process_that_revoked_it(env):
    h = env.token("soon-gone", kinds=["incident"])
    assert env.client.get("/api/v1/announcements", headers=h).status_code == 200  # now trusted for a second
    env.app.state.tokens.revoke("soon-gone", actor="test")
    assert_error(env.client.get("/api/v1/announcements", headers=h), 401, "unauthorized")
    # (another process within api.token_cache: tests/api/test_token_cache.py)


def test_missing_token_is_refused_before_the_body_or_the_database(env, monkeypatch):
    calls = []
    monkeypatch.setattr(env.app.state.tokens, "verify", lambda raw: calls.append(raw))
    r = env.client.post("/api/v1/announcements", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 401, "unauthorized")  # not 400: the body was never parsed
    assert calls == []


def test_bad_token_is_refused_before_the_body_is_parsed(env):
    r = env.client.post("/api/v1/announcements", content=b"{not json",
                        headers={"Content-Type": "application/json", "Authorization": "Bearer junk"})
    assert_error(r, 401, "unauthorized")


def test_health_endpoints_need_no_token(env):
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/healthz", "/api/v1/readyz", "/api/v1/metrics"):
        assert env.client.get(path).status_code == 200, path


def test_last_use_of_a_token_is_recorded(env):
    h = env.token("tracked")
    env.client.get("/api/v1/channels", headers=h)
    info = next(i for i in env.store.list() if i.name == "tracked")
    assert info.last_used_at is not None


def test_unknown_and_known_tokens_do_the_same_comparison_work(env, monkeypatch):
    import hmac

    import broadcaster.tokens as tokens_mod

    real = hmac.compare_digest
    calls = []

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(tokens_mod.hmac, "compare_digest", counting)
    env.token("known")
    env.store.verify(env.tokens["known"])
    known = len(calls)
    calls.clear()
    env.store.verify("bct_" + "x" * 43)
    assert len(calls) == known


def test_ledger_down_while_checking_a_token_is_503_not_401(env, monkeypatch):
    def down(raw):
        raise LedgerUnavailable("the ledger database is unavailable (OperationalError)")

    monkeypatch.setattr(env.app.state.tokens, "verify", down)
    r = env.client.get("/api/v1/announcements", headers={"Authorization": "Bearer whatever"})
    assert_error(r, 503, "ledger_unavailable")


# ---------------------------------------------------------------- 413


def test_declared_oversized_body_is_413(env):
    big = json.dumps({**BODY, "body": "x" * 5000})
    r = env.client.post("/api/v1/announcements", content=big, headers={**env.admin, "Content-Type": "application/json"})
    err = assert_error(r, 413, "payload_too_large")
    assert err["details"]["limit"] == 4096
    assert env.ledger.list_announcements() == []


def test_streamed_body_without_content_length_is_counted(env):
    def chunks():
        yield b'{"kind": "incident", "title": "x", "body": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = env.client.post("/api/v1/announcements", content=chunks(),
                        headers={**env.admin, "Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_error(r, 413, "payload_too_large")
    assert env.ledger.list_announcements() == []


def test_small_streamed_body_passes(env):
    def chunks():
        yield json.dumps(BODY).encode()

    r = env.client.post("/api/v1/announcements", content=chunks(),
                        headers={**env.admin, "Content-Type": "application/json"})
    assert r.status_code == 202


def _asgi(app, method, path, headers, chunks):
    """Drive the ASGI app directly, so the body can disagree with its Content-Length."""
    sent = []
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
             "server": ("test", 80), "client": ("198.51.100.7", 1234),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body) if body else None


def test_a_lying_content_length_does_not_get_past_the_limit(env):
    headers = {**env.admin, "content-type": "application/json", "content-length": "100"}
    status, body = _asgi(env.app, "POST", "/api/v1/announcements", headers, [b"{" + b" " * 3000, b" " * 3000 + b"}"])
    assert status == 413 and body["error"]["code"] == "payload_too_large"


def test_a_non_numeric_content_length_is_400(env):
    status, body = _asgi(env.app, "POST", "/api/v1/announcements", {**env.admin, "content-length": "lots"}, [b"{}"])
    assert status == 400 and body["error"]["code"] == "bad_request"


def test_a_stalled_sender_gets_408(env, monkeypatch):
    import broadcaster.api.intake as intake

    monkeypatch.setattr(intake, "BODY_TIMEOUT", 0.2)
    sent = []
    first = [{"type": "http.request", "body": b'{"kind":', "more_body": True}]

    async def receive():
        if first:
            return first.pop()
        await asyncio.sleep(3600)

    async def send(m):
        sent.append(m)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "path": "/api/v1/announcements", "raw_path": b"/api/v1/announcements", "query_string": b"",
             "root_path": "", "scheme": "http", "server": ("t", 80), "client": ("198.51.100.8", 1),
             "headers": [(b"authorization", env.admin["Authorization"].encode())]}
    asyncio.run(env.app(scope, receive, send))
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_timeout"


# ---------------------------------------------------------------- 429


def test_per_token_rate_limit_answers_429_with_retry_after(make_env):
    e = make_env(config(api={"max_body_bytes": 4096, "rate_limit": "3/m", "anonymous_rate_limit": "1000/m"}))
    busy, calm = e.token("busy"), e.token("calm")
    for _ in range(3):
        assert e.client.get("/api/v1/channels", headers=busy).status_code == 200
    r = e.client.post("/api/v1/announcements", json=BODY, headers=busy)
    err = assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1 and err["details"]["retry_after"] == int(r.headers["retry-after"])
    assert e.ledger.list_announcements() == []
    # another token is not slowed down by the busy one
    assert e.client.post("/api/v1/announcements", json=BODY, headers=calm).status_code == 202
    assert e.limiter._grants.keys() >= {"api:token:busy", "api:token:calm"}


def test_junk_from_one_address_is_limited_while_real_tokens_keep_flowing(make_env):
    e = make_env(config(api={"max_body_bytes": 4096, "rate_limit": "1000/m", "anonymous_rate_limit": "2/m"}))
    junk = {"Authorization": "Bearer guessed-token"}
    assert e.client.get("/api/v1/announcements", headers=junk).status_code == 401
    assert e.client.get("/api/v1/announcements", headers=junk).status_code == 401
    r = e.client.get("/api/v1/announcements", headers=junk)
    assert_error(r, 429, "rate_limited")
    assert "retry-after" in r.headers
    assert "api:addr:testclient" in e.limiter._grants
    # same address, valid token: not refused
    assert e.client.post("/api/v1/announcements", json=BODY, headers=e.admin).status_code == 202


def test_rate_limits_fall_back_to_local_when_redis_is_down(make_env):
    from broadcaster.asgi import create_app

    class DownLimiter:
        def acquire(self, *a):
            raise ConnectionError("redis://:hunter2@redis down")

    e = make_env(config(api={"max_body_bytes": 4096, "rate_limit": "2/m", "anonymous_rate_limit": "1000/m"}),
                 limiter=DownLimiter())
    with TestClient(create_app(e.settings, e.runtime), raise_server_exceptions=False) as client:
        h = e.token("t")
        assert client.post("/api/v1/announcements", json=BODY, headers=h).status_code == 202  # not refused
        assert client.get("/api/v1/channels", headers=h).status_code == 200
        r = client.get("/api/v1/channels", headers=h)
        assert_error(r, 429, "rate_limited")  # still limited, by the local twin
        assert "hunter2" not in r.text


def test_a_hanging_shared_limiter_is_asked_once_per_interval_not_on_every_request():
    """A Redis that hangs costs its socket timeout per question: after a failure the process
    limits on its own for a while instead of making every POST wait for the timeout again."""
    from broadcaster.api import intake

    calls = []

    class Hanging:
        def acquire(self, *a):
            calls.append(a)
            raise TimeoutError("redis did not answer")

    limiter = intake.Limiter(Hanging())
    for _ in range(5):
        assert limiter.wait("api:token:t", (100, 60.0)) == 0.0  # limited locally meanwhile
    assert len(calls) == 1
    limiter._shared_after = 0.0  # the interval is over: asked again
    limiter.wait("api:token:t", (100, 60.0))
    assert len(calls) == 2


def test_static_token_works_when_the_ledger_is_down(make_env, tmp_path):
    from sqlalchemy import create_engine

    from broadcaster.ledger import Ledger

    dead = Ledger(create_engine(f"sqlite:///{tmp_path}/no/such/dir/l.db"))
    e = make_env(ledger=dead)
    r = e.client.get("/api/v1/announcements", headers={"Authorization": f"Bearer {STATIC_TOKEN}"})
    err = assert_error(r, 503, "ledger_unavailable")  # authenticated, then the ledger is unreachable
    assert "retry" in err["message"] and r.headers["retry-after"] == "5"


# ---------------------------------------------------------------- which paths are public


def test_public_paths_match_whole_segments_only(env):
    guard_public = env.app.state.public_paths
    from broadcaster.api.intake import matches

    assert matches("/api/v1/subscribe", guard_public) and matches("/api/v1/subscribe/confirm", guard_public)
    assert matches("/api/v1/public/anything", guard_public)
    assert not matches("/api/v1/subscribers", guard_public)  # the admin list is not public
    assert not matches("/api/v1/subscribe-all", guard_public)
    assert not matches("/api/v1/announcements", guard_public)


def test_the_subscriber_admin_list_needs_a_token(env):
    r = env.client.get("/api/v1/subscribers")
    assert_error(r, 401, "unauthorized")


# ---------------------------------------------------------------- content types


def test_json_without_a_content_type_is_accepted(env):
    r = env.client.post("/api/v1/announcements", content=json.dumps(BODY).encode(), headers=env.admin)
    assert r.status_code == 202, r.text


def test_a_form_encoded_body_gets_a_clear_415(env):
    r = env.client.post("/api/v1/announcements", content=json.dumps(BODY).encode(),
                        headers={**env.admin, "Content-Type": "application/x-www-form-urlencoded"})
    err = assert_error(r, 415, "unsupported_media_type")
    assert "application/json" in err["message"]


def test_a_json_array_is_not_an_announcement(env):
    r = env.client.post("/api/v1/announcements", json=[1, 2], headers=env.admin)
    err = assert_error(r, 422, "invalid_request")
    assert err["message"] == "the request body must be a JSON object"


def test_web_sign_in_is_limited_per_address(make_env):
    """Guessing tokens through the page's sign-in form meets the same per-address limit as the API."""
    e = make_env(config(api={"max_body_bytes": 4096, "rate_limit": "1000/m", "anonymous_rate_limit": "2/m"}))
    codes = [e.client.post("/signin", data={"token": "guess"}, follow_redirects=False).status_code for _ in range(3)]
    assert codes[-1] == 429 and 429 not in codes[:2], codes
