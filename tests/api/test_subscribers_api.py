"""Subscriber, export, incidents and maintenance-cancel endpoints through the real app stack
(intake guard, auth, error format) on a real SQLite ledger."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import APIRouter

from broadcaster.config import SubscribersSettings
from broadcaster import subscribers as subs
from broadcaster.api import routes_export, routes_subscribers

from .conftest import SECRET_URL, Env, assert_error, config

SIGNING_KEY = "api-test-signing-key-0123456789"


class Outbox:
    def __init__(self):
        self.sent: list[tuple[str, str, str]] = []

    def __call__(self, address, subject, text):
        self.sent.append((address, subject, text))

    def link(self) -> str:
        return next(ln.strip() for ln in self.sent[-1][2].splitlines() if "token=" in ln)

    def token(self) -> str:
        return parse_qs(urlsplit(self.link()).query)["token"][0]


def include_routers(app) -> None:
    """What app.py will do; skipped for a router it already includes."""
    have = {getattr(r, "path", None) for r in app.routes}
    api = APIRouter(prefix="/api/v1")
    if "/api/v1/subscribe" not in have:
        api.include_router(routes_subscribers.router)
    if "/api/v1/export" not in have:
        api.include_router(routes_export.router)
    app.include_router(api)
    for p in routes_subscribers.PUBLIC_PATHS:
        if p not in app.state.public_paths:
            app.state.public_paths.append(p)


@pytest.fixture
def env(tmp_path):
    cfg = config()
    cfg["channels"] = {**cfg["channels"], "mail": {
        "kind": "email", "smtp": {"host": "smtp.example.test", "password": "smtp-password-secret-1"},
        "from_address": "news@example.test", "lists": ["news"]}}
    e = Env(tmp_path, cfg)
    e.runtime.settings = e.runtime.settings.model_copy(update={"subscribers": SubscribersSettings(secret_key=SIGNING_KEY)})
    e.outbox = Outbox()
    e.runtime.channel_io["confirmation_sender"] = e.outbox
    include_routers(e.app)
    yield e
    e.client.close()
    e.ledger.close()


def subscribe(env, address="reader@example.test", **extra):
    return env.client.post("/api/v1/subscribe", json={"list": "news", "address": address, **extra})


def confirmed(env, address="reader@example.test", **extra) -> str:
    assert subscribe(env, address, **extra).status_code == 202
    r = env.client.get("/api/v1/subscribe/confirm", params={"token": env.outbox.token()},
                       headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    return subs.find(env.ledger, "news", address).id


def no_secrets(text: str) -> None:
    for s in (SIGNING_KEY, "smtp-password-secret-1", SECRET_URL):
        assert s not in text


# ---------------------------------------------------------------- public double opt-in


def test_subscribe_without_a_token_then_confirm(env):
    r = subscribe(env, components=["api"], marketing=True)
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert len(env.outbox.sent) == 1 and env.outbox.sent[0][0] == "reader@example.test"
    assert env.outbox.link().startswith("https://status.example.test/api/v1/subscribe/confirm?token=")
    assert subs.find(env.ledger, "news", "reader@example.test").state == "pending"
    r = env.client.get("/api/v1/subscribe/confirm", params={"token": env.outbox.token()})
    assert r.status_code == 200 and r.json() == {"status": "confirmed", "list": "news", "components": ["api"]}
    sub = subs.find(env.ledger, "news", "reader@example.test")
    assert sub.state == "confirmed" and sub.marketing
    no_secrets(r.text + env.outbox.sent[0][2])


def test_confirm_in_a_browser_gets_a_page(env):
    subscribe(env)
    r = env.client.get("/api/v1/subscribe/confirm", params={"token": env.outbox.token()},
                       headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and "Subscribed" in r.text
    bad = env.client.get("/api/v1/subscribe/confirm", params={"token": "nope"}, headers={"Accept": "text/html"})
    assert bad.status_code == 422 and "does not work" in bad.text


def test_the_answer_does_not_tell_who_is_subscribed(env):
    confirmed(env)
    before = len(env.outbox.sent)
    again = subscribe(env)
    fresh = subscribe(env, "someone-else@example.test")
    assert again.status_code == fresh.status_code == 202 and again.json() == fresh.json()
    assert len(env.outbox.sent) == before + 1  # only the new address was mailed


@pytest.mark.parametrize("body, field", [
    ({"list": "secret-list", "address": "a@example.test"}, "list"),
    ({"list": "news", "address": "not-an-address"}, "address"),
    ({"list": "news"}, "address"),
    ({"list": "news", "address": "a@example.test", "admin": True}, "admin"),
])
def test_bad_subscriptions_are_refused_in_the_error_format(env, body, field):
    r = env.client.post("/api/v1/subscribe", json=body)
    err = assert_error(r, 422, "invalid_request")
    assert err["details"]["field"] == field
    assert env.outbox.sent == []


def test_a_forged_confirmation_token_is_refused(env):
    subscribe(env)
    token = env.outbox.token()
    r = env.client.get("/api/v1/subscribe/confirm", params={"token": token[:-3] + "AAA"})
    assert_error(r, 422, "invalid_request")
    assert subs.find(env.ledger, "news", "reader@example.test").state == "pending"


# ---------------------------------------------------------------- unsubscribe


def test_get_shows_a_button_and_one_click_post_unsubscribes(env):
    sid = confirmed(env)
    token = subs.unsubscribe_token(env.runtime.settings, sid, "list")
    page = env.client.get("/api/v1/unsubscribe", params={"token": token}, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "<form method=\"post\"" in page.text
    assert subs.get(env.ledger, sid).state == "confirmed"  # a GET never unsubscribes

    # what a mail client sends for List-Unsubscribe-Post (RFC 8058)
    r = env.client.post(f"/api/v1/unsubscribe?token={token}", content="List-Unsubscribe=One-Click",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json() == {"status": "unsubscribed", "list": "news"}
    assert subs.get(env.ledger, sid).state == "unsubscribed"
    again = env.client.post(f"/api/v1/unsubscribe?token={token}", content="List-Unsubscribe=One-Click",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert again.status_code == 200


def test_one_click_from_a_promotion_opts_out_of_promotions(env):
    sid = confirmed(env, marketing=True)
    token = subs.unsubscribe_token(env.runtime.settings, sid, "marketing")
    r = env.client.post("/api/v1/unsubscribe", params={"token": token}, content="List-Unsubscribe=One-Click",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["status"] == "opted_out"
    sub = subs.get(env.ledger, sid)
    assert sub.state == "opted_out" and not sub.marketing


def test_unsubscribe_with_a_bad_token(env):
    assert_error(env.client.post("/api/v1/unsubscribe", params={"token": "x.y"}), 422, "invalid_request")
    assert_error(env.client.get("/api/v1/unsubscribe", params={"token": "x.y"}), 422, "invalid_request")
    assert_error(env.client.post("/api/v1/unsubscribe"), 422, "invalid_request")


# ---------------------------------------------------------------- admin


def test_listing_subscribers_needs_an_admin_token(env):
    confirmed(env, "a@example.test")
    confirmed(env, "b@example.test")
    assert_error(env.client.get("/api/v1/subscribers"), 401, "unauthorized")
    assert_error(env.client.get("/api/v1/subscribers", headers={"Authorization": "Bearer bct_wrong"}), 401,
                 "unauthorized")
    assert_error(env.client.get("/api/v1/subscribers", headers=env.token("ci", kinds=["deploy"])), 403, "forbidden")
    r = env.get("/subscribers", params={"limit": 1})
    assert r.status_code == 200
    page = r.json()
    assert [s["address"] for s in page["items"]] == ["a@example.test"] and page["next"]
    rest = env.get("/subscribers", params={"after": page["next"]}).json()
    assert [s["address"] for s in rest["items"]] == ["b@example.test"] and rest["next"] is None
    assert_error(env.get("/subscribers", params={"state": "weird"}), 422, "invalid_request")


def test_export_streams_json_lines_for_admins_only(env):
    env.submit()
    confirmed(env)
    assert_error(env.client.get("/api/v1/export"), 401, "unauthorized")
    assert_error(env.client.get("/api/v1/export", headers=env.token("ops", kinds=["incident"])), 403, "forbidden")
    r = env.get("/export")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines[0]["type"] == "meta" and lines[-1]["type"] == "end"
    assert lines[-1]["counts"]["announcement"] == 1 and lines[-1]["counts"]["subscriber"] == 1
    no_secrets(r.text)
    csv = env.get("/export/subscribers.csv")
    assert csv.status_code == 200 and "reader@example.test" in csv.text


def test_open_incidents(env):
    a = env.submit(title="Still broken")["id"]
    b = env.submit(title="Fixed")["id"]
    assert env.post(f"/announcements/{b}/updates", {"status": "resolved", "body": "ok"}).status_code == 202
    r = env.get("/incidents", params={"open": "true"})
    assert r.status_code == 200 and [i["id"] for i in r.json()["items"]] == [a]
    every = env.get("/incidents", params={"open": "false"}).json()["items"]
    assert {i["id"] for i in every} == {a, b}


def test_cancel_a_maintenance_window_tells_every_channel(env):
    ann = env.post("/announcements", {"kind": "maintenance", "title": "Upgrade",
                                      "window": {"starts_at": "2030-01-01T10:00:00Z",
                                                 "ends_at": "2030-01-01T11:00:00Z"}}).json()
    r = env.post(f"/maintenance/{ann['id']}/cancel", {"reason": "postponed"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["told_channels"] == len(ann["deliveries"])
    detail = env.get(f"/announcements/{ann['id']}").json()
    assert detail["status"] == "cancelled" and [u["status"] for u in detail["updates"]] == ["cancelled"]
    assert_error(env.post(f"/maintenance/{env.submit()['id']}/cancel"), 422, "invalid_request")
