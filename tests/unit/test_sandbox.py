"""Sandbox stand-ins in-process (httpx over the ASGI app): fault logic, counters, and each
provider's documented shapes — limits, idempotency, dedupe signals, error bodies, headers."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import datetime

import httpx
import pytest
from click.testing import CliRunner

from broadcaster.channels.webhook import sign
from broadcaster.sandbox import SandboxApp
from broadcaster.sandbox.cli import sandbox as sandbox_command
from broadcaster.sandbox.faults import Fault, FaultBook, fault_from, parse_spec
from broadcaster.sandbox.textlen import mastodon_length, x_weighted_length
from tests.support.runtime import Clock

AUTH = {"Authorization": "Bearer token-1"}


@pytest.fixture
def clock() -> Clock:
    return Clock(1_800_000_000.0)


@pytest.fixture
def app(clock) -> SandboxApp:
    return SandboxApp(clock=clock)


class SyncASGI(httpx.BaseTransport):
    """httpx's ASGITransport is async-only; run each exchange on a fresh event loop."""

    def __init__(self, app):
        self.inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def exchange():
            req = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            resp = await self.inner.handle_async_request(req)
            return httpx.Response(resp.status_code, headers=resp.headers, content=await resp.aread())

        return asyncio.run(exchange())


@pytest.fixture
def client(app):
    with httpx.Client(transport=SyncASGI(app), base_url="http://sandbox") as c:
        yield c


def toot(client, text="hello", key=None, **extra):
    headers = dict(AUTH, **({"Idempotency-Key": key} if key else {}))
    return client.post("/mastodon/api/v1/statuses", json={"status": text, **extra}, headers=headers)


# -- fault book


def test_counted_fault_is_consumed_then_gone():
    book = FaultBook()
    book.add(Fault("mastodon", "5xx", count=2))
    assert [f.mode for f in book.take("mastodon")] == ["5xx"]
    assert [f.mode for f in book.take("mastodon")] == ["5xx"]
    assert book.take("mastodon") == []


def test_uncounted_fault_lasts_until_cleared_and_only_for_its_provider():
    book = FaultBook()
    book.add(Fault("x", "down"))
    for _ in range(5):
        assert book.take("x")
    assert book.take("mastodon") == []
    assert book.clear("x") == 1
    assert book.take("x") == []


def test_create_only_modes_skip_reads():
    book = FaultBook()
    book.add(Fault("x", "accept_then_drop", count=1))
    assert book.take("x", "/x/2/tweets/1", create=False) == []
    assert [f.mode for f in book.take("x", "/x/2/tweets", create=True)] == ["accept_then_drop"]


def test_recipient_faults_only_hit_that_recipient():
    book = FaultBook()
    book.add(Fault("smtp", "5xx", recipient="Bob@Example.com"))
    assert book.take("smtp", "MAIL") == []
    assert book.take("smtp", "RCPT", recipient="alice@example.com") == []
    assert book.take("smtp", "RCPT", recipient="bob@example.com")


@pytest.mark.parametrize("data", [{"provider": "x", "mode": "explode"}, {"provider": "x", "mode": "5xx", "count": 0},
                                  {"mode": "5xx"}, {"provider": "x", "mode": "5xx", "colour": "red"},
                                  {"provider": "x", "mode": "5xx", "count": "many"}])
def test_bad_fault_specs_are_refused(data):
    with pytest.raises(ValueError):
        fault_from(data)


def test_cli_fault_spec():
    fault = parse_spec("x=429,seconds=30,count=2")
    assert (fault.provider, fault.mode, fault.seconds, fault.count) == ("x", "429", 30.0, 2)
    with pytest.raises(ValueError):
        parse_spec("x")


# -- control API and counters


def test_control_api_fault_next_n_requests(client):
    r = client.post("/_sandbox/faults", json={"provider": "mastodon", "mode": "5xx", "count": 2, "status": 503})
    assert r.status_code == 201
    assert [toot(client, f"t{i}").status_code for i in range(3)] == [503, 503, 200]
    assert client.get("/_sandbox/faults").json() == []
    assert client.get("/_sandbox/counts").json()["mastodon"]["posts"] == 1


def test_control_api_refuses_unknown_provider_and_clears(client):
    assert client.post("/_sandbox/faults", json={"provider": "myspace", "mode": "down"}).status_code == 422
    client.post("/_sandbox/faults", json={"provider": "x", "mode": "down"})
    assert client.post("/x/2/tweets", json={"text": "a"}, headers=AUTH).status_code == 503
    client.delete("/_sandbox/faults", params={"provider": "x"})
    assert client.post("/x/2/tweets", json={"text": "a"}, headers=AUTH).status_code == 201


def test_requests_are_recorded_with_masked_credentials_and_reset(client):
    toot(client, "recorded")
    recs = client.get("/_sandbox/requests", params={"provider": "mastodon"}).json()
    assert recs[0]["json"] == {"status": "recorded"}
    assert recs[0]["headers"]["authorization"] == "Bearer ***"
    assert recs[0]["status"] == 200
    assert client.delete("/_sandbox/requests").status_code == 204
    assert client.get("/_sandbox/requests").json() == []


def test_page_escapes_what_it_received(client):
    toot(client, "<script>alert(1)</script>")
    page = client.get("/_sandbox/").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page


def test_reset_forgets_posts_faults_and_idempotency(client):
    first = toot(client, "a", key="k").json()["id"]
    client.post("/_sandbox/faults", json={"provider": "x", "mode": "down"})
    assert client.post("/_sandbox/reset").status_code == 204
    assert client.get("/_sandbox/posts").json() == [] and client.get("/_sandbox/faults").json() == []
    assert toot(client, "a", key="k").json()["id"] != first


def test_settings_are_masked(client):
    client.put("/_sandbox/settings/webhook", json={"secrets": {"ci": "whsec_abc"}})
    assert client.get("/_sandbox/settings/webhook").json()["secrets"] == {"ci": "***"}


# -- faults as each provider expresses them


def test_429_fault_carries_provider_reset_headers(client, clock):
    client.post("/_sandbox/faults", json={"provider": "x", "mode": "429", "count": 1, "seconds": 42})
    r = client.post("/x/2/tweets", json={"text": "a"}, headers=AUTH)
    assert r.status_code == 429 and r.headers["x-rate-limit-remaining"] == "0"
    assert int(r.headers["x-rate-limit-reset"]) == int(clock.t + 42)

    client.post("/_sandbox/faults", json={"provider": "mastodon", "mode": "429", "count": 1, "seconds": 42})
    r = toot(client)
    reset = datetime.fromisoformat(r.headers["x-ratelimit-reset"].replace("Z", "+00:00")).timestamp()
    assert r.status_code == 429 and "retry-after" not in r.headers and reset == pytest.approx(clock.t + 42)

    client.post("/_sandbox/faults", json={"provider": "discord", "mode": "429", "count": 1, "seconds": 2})
    r = client.post("/discord/api/webhooks/1/tok?wait=true", json={"content": "a"})
    assert r.status_code == 429 and r.json()["retry_after"] == pytest.approx(2.0)


def test_bad_token_and_duplicate_faults(client):
    client.post("/_sandbox/faults", json={"provider": "facebook", "mode": "bad_token", "count": 1})
    r = client.post("/facebook/v19.0/123/feed", data={"message": "m", "access_token": "t"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 190
    client.post("/_sandbox/faults", json={"provider": "facebook", "mode": "duplicate", "count": 1})
    assert client.post("/facebook/v19.0/123/feed", data={"message": "m", "access_token": "t"}).json()["error"]["code"] == 506
    client.post("/_sandbox/faults", json={"provider": "mastodon", "mode": "bad_token", "count": 1})
    assert toot(client).status_code == 401
    assert client.get("/_sandbox/counts").json()["facebook"]["posts"] == 0


def test_accept_then_drop_records_the_post_and_gives_no_response(client):
    client.post("/_sandbox/faults", json={"provider": "mastodon", "mode": "accept_then_drop", "count": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        toot(client, "landed", key="k1")
    posts = client.get("/_sandbox/posts", params={"provider": "mastodon"}).json()
    assert [p["text"] for p in posts] == ["landed"]
    # the retry with the same key gets the same status back and creates nothing new
    assert toot(client, "landed", key="k1").json()["id"] == posts[0]["id"]
    assert len(client.get("/_sandbox/posts", params={"provider": "mastodon"}).json()) == 1


def test_slow_fault_delays_then_answers(app):
    app.state.faults.add(Fault("slack", "slow", count=1, seconds=0.2))

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as c:
            started = time.monotonic()
            r = await c.post("/slack/services/T/B/X", json={"text": "hi"})
            return r, time.monotonic() - started

    r, took = asyncio.run(go())
    assert r.text == "ok" and took >= 0.2


def test_natural_rate_limit_window(app, client, clock):
    app.configure("x", {})
    for _ in range(100):
        assert client.get("/x/2/users/me", headers=AUTH).status_code == 200
    r = client.get("/x/2/users/me", headers=AUTH)
    assert r.status_code == 429 and r.headers["x-rate-limit-remaining"] == "0"
    clock.t += 901
    assert client.get("/x/2/users/me", headers=AUTH).status_code == 200


# -- Mastodon


def test_mastodon_length_rule_and_instance_config(client):
    conf = client.get("/mastodon/api/v2/instance").json()["configuration"]["statuses"]
    assert conf == {"max_characters": 500, "max_media_attachments": 4, "characters_reserved_per_url": 23}
    assert toot(client, "é" * 500).status_code == 200  # graphemes, not bytes
    assert toot(client, "👍🏽" * 500).status_code == 200
    r = toot(client, "a" * 501)
    assert r.status_code == 422 and "character limit" in r.json()["error"]
    assert toot(client, "a" * 470 + " https://example.com/" + "x" * 300).status_code == 200  # URL = 23


def test_mastodon_idempotency_key_lasts_an_hour(client, clock):
    first = toot(client, "once", key="abc").json()
    assert toot(client, "once", key="abc").json()["id"] == first["id"]
    clock.t += 3601
    assert toot(client, "once", key="abc").json()["id"] != first["id"]


def test_mastodon_thread_get_delete_and_auth(client):
    parent = toot(client, "parent").json()
    reply = toot(client, "child", in_reply_to_id=parent["id"]).json()
    assert reply["in_reply_to_id"] == parent["id"] and reply["url"].endswith(reply["id"])
    assert toot(client, "orphan", in_reply_to_id="999").status_code == 404
    assert client.delete(f"/mastodon/api/v1/statuses/{parent['id']}", headers=AUTH).json()["text"] == "parent"
    assert client.get(f"/mastodon/api/v1/statuses/{parent['id']}", headers=AUTH).status_code == 404
    assert client.post("/mastodon/api/v1/statuses", json={"status": "x"}).status_code == 401
    assert client.get("/mastodon/api/v1/accounts/verify_credentials", headers=AUTH).json()["username"] == "sandbox"


def test_mastodon_accepts_form_data(client):
    r = client.post("/mastodon/api/v1/statuses", data={"status": "form post"}, headers=AUTH)
    assert r.status_code == 200 and "form post" in r.json()["content"]


# -- Bluesky


def bsky_session(client):
    r = client.post("/bluesky/xrpc/com.atproto.server.createSession", json={"identifier": "ops.example.com", "password": "app-pw"})
    assert r.status_code == 200
    return r.json()


def bsky_post(client, session, text="hello", rkey=None):
    body = {"repo": session["did"], "collection": "app.bsky.feed.post",
            "record": {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-01-01T00:00:00Z"}}
    if rkey:
        body["rkey"] = rkey
    return client.post("/bluesky/xrpc/com.atproto.repo.createRecord", json=body,
                       headers={"Authorization": f"Bearer {session['accessJwt']}"})


def test_bluesky_session_expires_as_http_400_and_refreshes(client, clock):
    s = bsky_session(client)
    payload = json.loads(base64.urlsafe_b64decode(s["accessJwt"].split(".")[1] + "=="))
    assert payload["exp"] - payload["iat"] == 300
    clock.t += 301
    r = bsky_post(client, s)
    assert r.status_code == 400 and r.json()["error"] == "ExpiredToken"
    fresh = client.post("/bluesky/xrpc/com.atproto.server.refreshSession",
                        headers={"Authorization": f"Bearer {s['refreshJwt']}"}).json()
    assert bsky_post(client, fresh).status_code == 200
    # refresh tokens rotate; an access token is not a refresh token
    assert client.post("/bluesky/xrpc/com.atproto.server.refreshSession",
                       headers={"Authorization": f"Bearer {s['refreshJwt']}"}).json()["error"] == "InvalidToken"


def test_bluesky_client_rkey_duplicate_and_lookup(client):
    s = bsky_session(client)
    q = {"repo": s["did"], "collection": "app.bsky.feed.post", "rkey": "3jzfcijpj2z2a"}
    assert client.get("/bluesky/xrpc/com.atproto.repo.getRecord", params=q).json()["error"] == "RecordNotFound"
    r = bsky_post(client, s, rkey="3jzfcijpj2z2a")
    assert r.json()["uri"] == f"at://{s['did']}/app.bsky.feed.post/3jzfcijpj2z2a"
    assert bsky_post(client, s, rkey="3jzfcijpj2z2a").status_code == 500
    assert client.get("/bluesky/xrpc/com.atproto.repo.getRecord", params=q).json()["value"]["text"] == "hello"
    assert bsky_post(client, s, rkey="not-a-tid").status_code == 400
    assert len(client.get("/_sandbox/posts", params={"provider": "bluesky"}).json()) == 1


def test_bluesky_graphemes_and_bytes(client):
    s = bsky_session(client)
    assert bsky_post(client, s, "👩‍👩‍👧" * 300).status_code == 400  # 300 graphemes but > 3000 bytes
    assert bsky_post(client, s, "a" * 301).status_code == 400
    r = bsky_post(client, s, "é" * 300)
    assert r.status_code == 200 and r.headers["ratelimit-policy"] == "3000;w=300"
    assert int(r.headers["ratelimit-reset"]) > 1e9


# -- X


def test_x_weighted_length_and_duplicate(client):
    assert x_weighted_length("a" * 280) == 280 and x_weighted_length("日" * 140) == 280
    assert x_weighted_length("https://example.com/" + "x" * 100) == 23
    assert client.post("/x/2/tweets", json={"text": "日" * 141}, headers=AUTH).status_code == 400
    r = client.post("/x/2/tweets", json={"text": "deploy done"}, headers=AUTH)
    assert r.status_code == 201 and r.json()["data"]["text"] == "deploy done"
    dup = client.post("/x/2/tweets", json={"text": "deploy done"}, headers=AUTH)
    assert dup.status_code == 403 and "duplicate content" in dup.json()["detail"]
    assert client.post("/x/2/tweets", json={"text": "t", "extra": 1}, headers=AUTH).status_code == 400


def test_x_reply_needs_existing_parent(client):
    tid = client.post("/x/2/tweets", json={"text": "root"}, headers=AUTH).json()["data"]["id"]
    ok = client.post("/x/2/tweets", json={"text": "reply", "reply": {"in_reply_to_tweet_id": tid}}, headers=AUTH)
    assert ok.status_code == 201
    assert client.post("/x/2/tweets", json={"text": "r2", "reply": {"in_reply_to_tweet_id": "1"}}, headers=AUTH).status_code == 404


# -- Facebook, Statuspage, Cachet


def test_facebook_post_and_errors(client):
    r = client.post("/facebook/v19.0/123/feed", params={"access_token": "t"}, data={"message": "sale"})
    assert r.status_code == 200 and r.json()["id"].startswith("123_")
    err = client.post("/facebook/v19.0/123/feed", params={"access_token": "t"}, data={"message": "sale"}).json()["error"]
    assert err["code"] == 506 and set(err) >= {"message", "type", "code", "fbtrace_id", "is_transient"}
    assert client.post("/facebook/v19.0/123/feed", data={"message": "no token"}).json()["error"]["code"] == 190
    client.post("/_sandbox/faults", json={"provider": "facebook", "mode": "5xx", "count": 1})
    assert client.post("/facebook/v19.0/123/feed", data={"message": "m", "access_token": "t"}).json()["error"]["is_transient"] is True


def test_statuspage_oauth_scheme_metadata_and_unresolved(client):
    body = {"incident": {"name": "API down", "status": "investigating", "body": "Looking", "metadata": {"broadcaster": {"id": "a1"}}}}
    assert client.post("/statuspage/v1/pages/p1/incidents", json=body, headers=AUTH).status_code == 401
    oauth = {"Authorization": "OAuth key"}
    r = client.post("/statuspage/v1/pages/p1/incidents", json=body, headers=oauth)
    assert r.status_code == 201 and r.json()["metadata"] == {"broadcaster": {"id": "a1"}}
    iid = r.json()["id"]
    bad = {"incident": {"name": "x", "metadata": {"broadcaster": "flat"}}}
    assert client.post("/statuspage/v1/pages/p1/incidents", json=bad, headers=oauth).status_code == 422
    assert [i["id"] for i in client.get("/statuspage/v1/pages/p1/incidents/unresolved", headers=oauth).json()] == [iid]
    upd = client.patch(f"/statuspage/v1/pages/p1/incidents/{iid}", json={"incident": {"status": "resolved", "body": "Fixed"}}, headers=oauth)
    assert len(upd.json()["incident_updates"]) == 2
    assert client.get("/statuspage/v1/pages/p1/incidents/unresolved", headers=oauth).json() == []


def test_cachet_v2_and_v3(client):
    v2 = client.post("/cachet/api/v1/incidents", json={"name": "n", "message": "m", "status": 1}, headers={"X-Cachet-Token": "t"})
    assert v2.status_code == 200 and v2.json()["data"]["human_status"] == "Investigating"
    assert client.post("/cachet/api/v1/incidents", json={"name": "n", "message": "m", "status": 1}).status_code == 401
    v3 = client.post("/cachet/api/incidents", json={"name": "n", "message": "m", "status": 2, "meta": {"aid": "7"}}, headers=AUTH)
    assert v3.status_code == 201
    found = client.get("/cachet/api/incidents", params={"filter[meta][aid]": "7"}).json()["data"]
    assert [i["id"] for i in found] == [v3.json()["data"]["id"]]
    assert client.post("/cachet/api/incidents", json={"name": "n"}, headers=AUTH).status_code == 422


# -- chat and generic webhooks


def test_slack_discord_teams(client):
    r = client.post("/slack/services/T/B/X", json={"text": "hi"})
    assert (r.status_code, r.text, r.headers["content-type"].split(";")[0]) == (200, "ok", "text/plain")
    assert client.post("/slack/services/T/B/X", json={}).text == "no_text"
    msg = client.post("/discord/api/webhooks/1/tok", params={"wait": "true"}, json={"content": "hi"})
    assert msg.status_code == 200 and msg.json()["id"]
    assert client.post("/discord/api/webhooks/1/tok", json={"content": "hi"}).status_code == 204
    assert client.post("/discord/api/webhooks/1/tok", json={"content": "x" * 2001}).json()["code"] == 50035
    assert client.delete(f"/discord/api/webhooks/1/tok/messages/{msg.json()['id']}").status_code == 204
    card = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "content": {"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "hi"}]}}]}
    assert client.post("/teams/workflows/abc", json=card).status_code == 202
    assert client.get("/_sandbox/counts").json()["discord"]["posts"] == 2


def test_generic_webhook_dedupes_and_verifies(app, client, clock):
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    app.configure("webhook", {"secrets": {"signed": secret}})
    body = json.dumps({"type": "announcement.created", "data": {"text": "hi"}}).encode()
    ts = int(clock.t)
    good = {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": sign(secret, "msg_1", ts, body),
            "content-type": "application/json"}
    assert client.post("/webhook/signed", content=body, headers=good).json() == {"received": True, "duplicate": False}
    assert client.post("/webhook/signed", content=body, headers=good).json()["duplicate"] is True
    assert client.post("/webhook/signed", content=body + b" ", headers=good).status_code == 401
    assert client.post("/webhook/signed", content=body, headers={**good, "webhook-timestamp": str(ts - 600)}).status_code == 401
    assert client.post("/webhook/open", content=body, headers={"webhook-id": "m2"}).status_code == 200
    assert [p["id"] for p in client.get("/_sandbox/posts", params={"provider": "webhook"}).json()] == ["msg_1", "m2"]


def test_counter_helpers_are_independent_of_other_modules():
    assert mastodon_length("hi @alice@example.social") == len("hi @alice")


def test_cli_rejects_bad_fault():
    result = CliRunner().invoke(sandbox_command, ["--fault", "mastodon=explode"])
    assert result.exit_code == 2 and "unknown fault mode" in result.output


def test_repeats_count_a_double_post_not_the_same_words_announced_again_later(client, clock):
    """The README's recipes once posted the same words twice a few minutes apart and the page
    showed "repeats 1" on Slack and Mastodon — an apparent double post that was two
    announcements. A repeat is the same idempotency key, the same text in the same thread, or
    the same text within the window; the same words much later are a new post."""
    slack = "/slack/services/T/B/X"

    def toot(text: str, key: str, reply_to: str | None = None) -> str:
        body = {"status": text, **({"in_reply_to_id": reply_to} if reply_to else {})}
        return client.post("/mastodon/api/v1/statuses", json=body, headers={**AUTH, "Idempotency-Key": key}).json()["id"]

    def repeats() -> dict[str, int]:
        counts = client.get("/_sandbox/counts").json()
        return {p: counts.get(p, {}).get("duplicate_texts", 0) for p in ("slack", "mastodon")}

    client.post(slack, json={"text": "Elevated API errors"})
    root = toot("Elevated API errors", "k1")
    clock.t += 2 * 3600  # hours later, the same words again: a new announcement
    client.post(slack, json={"text": "Elevated API errors"})
    toot("Elevated API errors", "k2")
    assert repeats() == {"slack": 0, "mastodon": 0}
    clock.t += 30  # a second delivery of the same message moments later: a double post
    client.post(slack, json={"text": "Elevated API errors"})
    toot("Elevated API errors", "k3")
    assert repeats() == {"slack": 1, "mastodon": 1}
    clock.t += 2 * 3600  # the same reply under the same parent, whenever: a double post
    toot("Resolved.", "k4", reply_to=root)
    clock.t += 2 * 3600
    toot("Resolved.", "k5", reply_to=root)
    assert repeats() == {"slack": 1, "mastodon": 2}
    page = client.get("/_sandbox/").text
    assert "same text within 10 minutes" in page and "same idempotency key" in page


def test_the_same_text_to_two_receivers_is_no_repeat_but_twice_to_one_is(client, clock):
    """The outside trial: one announcement to /webhook/ops and /webhook/sub1 showed "repeats 1"."""
    def counts(provider: str) -> int:
        return client.get("/_sandbox/counts").json().get(provider, {}).get("duplicate_texts", 0)

    for hook in ("ops", "sub1"):
        client.post(f"/webhook/{hook}", json={"type": "announcement.created", "data": {"text": "DB down"}},
                    headers={"webhook-id": f"msg_{hook}"})
    client.post("/slack/services/T/B/ops", json={"text": "DB down"})
    client.post("/slack/services/T/B/sub1", json={"text": "DB down"})
    client.post("/discord/api/webhooks/1/a", json={"content": "DB down"})
    client.post("/discord/api/webhooks/2/b", json={"content": "DB down"})
    assert (counts("webhook"), counts("slack"), counts("discord")) == (0, 0, 0)
    clock.t += 30  # the same text again to one of them moments later: a double post there
    client.post("/webhook/ops", json={"type": "announcement.created", "data": {"text": "DB down"}},
                headers={"webhook-id": "msg_other"})
    client.post("/slack/services/T/B/ops", json={"text": "DB down"})
    assert (counts("webhook"), counts("slack")) == (1, 1)
