"""Subscriber, export, incidents and maintenance-cancel endpoints through the real app stack
(intake guard, auth, error format) on a real SQLite ledger."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi import APIRouter

from broadcaster import subscribers as subs
from broadcaster.api import routes_export, routes_subscribers

from .conftest import SECRET_URL, Env, assert_error, config

SIGNING_KEY = "api-test-signing-key-0123456789"


class Outbox:
    def __init__(self):
        self.sent: list[tuple[str, str, str]] = []

    def __call__(self, address, subject, text, unsubscribe=None):
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
        "from_address": "news@example.test", "lists": ["news"]},
        "site": {"kind": "statuspage", "output_dir": str(tmp_path / "site"), "components": ["api", "web", "db"]}}
    cfg["subscribers"] = {"secret_key": SIGNING_KEY}
    outbox = Outbox()
    e = Env(tmp_path, cfg, confirmation_sender=outbox)
    e.outbox = outbox
    include_routers(e.app)
    yield e
    e.client.close()
    e.ledger.close()


def subscribe(env, address="reader@example.test", **extra):
    r = env.client.post("/api/v1/subscribe", json={"list": "news", "address": address, **extra})
    assert subs.flush(env.runtime, timeout=10)  # the confirmation mail goes out in the background
    return r


def confirmed(env, address="reader@example.test", **extra) -> str:
    assert subscribe(env, address, **extra).status_code == 202
    r = env.client.post("/api/v1/subscribe/confirm", json={"token": env.outbox.token()})
    assert r.status_code == 200, r.text
    return subs.find(env.ledger, "news", address).id


def no_secrets(text: str) -> None:
    for s in (SIGNING_KEY, "smtp-password-secret-1", SECRET_URL):
        assert s not in text


def form(fields: dict[str, str]) -> dict:
    return {"content": urlencode(fields, doseq=True), "headers": {"Content-Type": "application/x-www-form-urlencoded",
                                                       "Accept": "text/html"}}


def hidden_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))


# ---------------------------------------------------------------- public double opt-in


def test_subscribe_without_a_token_then_confirm(env):
    r = subscribe(env, components=["api"], marketing=True)
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert len(env.outbox.sent) == 1 and env.outbox.sent[0][0] == "reader@example.test"
    assert env.outbox.link().startswith("https://status.example.test/api/v1/subscribe/confirm?token=")
    assert subs.find(env.ledger, "news", "reader@example.test").state == "pending"
    look = env.client.get("/api/v1/subscribe/confirm", params={"token": env.outbox.token()})
    assert look.status_code == 200 and look.json()["status"] == "pending" and look.json()["marketing"] is True
    r = env.client.post("/api/v1/subscribe/confirm", params={"token": env.outbox.token()})
    assert r.status_code == 200
    assert r.json() == {"status": "confirmed", "list": "news", "components": ["api"], "marketing": True}
    sub = subs.find(env.ledger, "news", "reader@example.test")
    assert sub.state == "confirmed" and sub.marketing
    no_secrets(r.text + look.text + env.outbox.sent[0][2])


@pytest.mark.parametrize("accept", ["text/html", "application/json", "*/*"])
def test_following_the_link_confirms_nothing(env, accept):
    """Mail scanners follow links: a GET of the confirmation link shows a page and changes nothing."""
    subscribe(env)
    for link in (env.outbox.link(), env.outbox.link().replace("/subscribe/confirm", "/subscribers/confirm")):
        assert env.client.get(link, headers={"Accept": accept}).status_code == 200
        assert env.client.head(link, headers={"Accept": accept}).status_code in (200, 405)
    assert subs.find(env.ledger, "news", "reader@example.test").state == "pending"


def test_confirm_in_a_browser_is_a_button_on_the_page(env):
    subscribe(env, marketing=True)
    page = env.client.get("/api/v1/subscribe/confirm", params={"token": env.outbox.token()},
                          headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/api/v1/subscribe/confirm">' in page.text
    assert "Also send me promotions" in page.text and " checked>" in page.text
    fields = hidden_fields(page.text)
    assert fields["token"] == html.escape(env.outbox.token(), quote=True)
    # the owner unticks promotions and presses the button
    done = env.client.post("/api/v1/subscribe/confirm", **form({"token": env.outbox.token(), "choices": "1"}))
    assert done.status_code == 200 and "Subscribed" in done.text
    sub = subs.find(env.ledger, "news", "reader@example.test")
    assert sub.state == "confirmed" and sub.marketing is False
    bad = env.client.get("/api/v1/subscribe/confirm", params={"token": "nope"}, headers={"Accept": "text/html"})
    assert bad.status_code == 422 and "does not work" in bad.text


def test_a_confirmation_posted_from_another_site_is_refused(env):
    subscribe(env)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "null", "Sec-Fetch-Site": "cross-site"}):  # e.g. a sandboxed frame elsewhere
        r = env.client.post("/api/v1/subscribe/confirm", json={"token": env.outbox.token()}, headers=headers)
        assert_error(r, 403, "forbidden")
    assert subs.find(env.ledger, "news", "reader@example.test").state == "pending"
    ok = env.client.post("/api/v1/subscribe/confirm", json={"token": env.outbox.token()},
                         headers={"Origin": "https://status.example.test"})
    assert ok.status_code == 200


def test_the_confirm_button_on_our_own_page_works_though_the_browser_hides_the_origin(env):
    """The page is served with Referrer-Policy: no-referrer (its URL holds the token), so Chromium
    posts its form with ``Origin: null`` — and ``Sec-Fetch-Site: same-origin``, which is ours."""
    subscribe(env)
    request = form({"token": env.outbox.token(), "choices": "1"})
    request["headers"].update({"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    r = env.client.post("/api/v1/subscribe/confirm", **request)
    assert r.status_code == 200 and "Subscribed" in r.text


def test_a_second_subscribe_cannot_change_a_pending_subscription(env):
    """The attack: a pending address is asked for again with marketing consent and a new name."""
    subscribe(env, name="Reader")
    link = env.outbox.link()
    again = subscribe(env, name="=HYPERLINK(evil)", marketing=True, components=["db"])
    assert again.status_code == 202
    assert len(env.outbox.sent) == 1, "no second mail within the interval"
    sub = subs.find(env.ledger, "news", "reader@example.test")
    assert (sub.name, sub.marketing, sub.components) == ("Reader", False, ())
    env.client.post(link.replace("https://status.example.test", ""), headers={"Accept": "application/json"})
    sub = subs.find(env.ledger, "news", "reader@example.test")
    assert sub.state == "confirmed" and (sub.name, sub.marketing) == ("Reader", False)


def test_the_answer_does_not_tell_who_is_subscribed(env):
    confirmed(env)
    subscribe(env, "pending@example.test")
    before = len(env.outbox.sent)
    answers = [subscribe(env, a) for a in ("reader@example.test", "pending@example.test", "new@example.test")]
    assert {r.status_code for r in answers} == {202}
    assert answers[0].content == answers[1].content == answers[2].content
    assert {k: v for k, v in answers[0].headers.items() if k != "date"} == \
        {k: v for k, v in answers[2].headers.items() if k != "date"}
    assert len(env.outbox.sent) == before + 1  # only the new address was mailed


def form_subscribe(env, address="reader@example.test", **extra):
    r = env.client.post("/api/v1/subscribe/form", **form({"list": "news", "address": address, **extra}))
    assert subs.flush(env.runtime, timeout=10)
    return r


def test_the_public_subscribe_form_follows_the_same_rules(env):
    page = env.client.get("/api/v1/subscribe/form", params={"list": "news"})
    assert page.status_code == 200 and '<form method="post" action="/api/v1/subscribe/form">' in page.text
    assert '<option value="news" selected>news</option>' in page.text and 'name="marketing"' in page.text
    for name in ("api", "web", "db"):  # the configured components, as tick boxes
        assert f'<input type="checkbox" name="components" value="{name}">' in page.text
    first = form_subscribe(env, name="Reader", components=["api", "web"])
    assert first.status_code == 200 and "Check your inbox" in first.text
    sub = subs.find(env.ledger, "news", "reader@example.test")
    assert (sub.state, sub.name, sub.components, sub.marketing) == ("pending", "Reader", ("api", "web"), False)
    # the attack through the form: the same pending address, promotions and a new name
    again = form_subscribe(env, name="Mallory", marketing="yes")
    assert again.text == first.text and len(env.outbox.sent) == 1
    assert subs.find(env.ledger, "news", "reader@example.test").name == "Reader"
    # confirmed, pending and new addresses: one answer
    confirmed(env, "old@example.test")
    answers = [form_subscribe(env, a) for a in ("old@example.test", "reader@example.test", "new@example.test")]
    assert {r.status_code for r in answers} == {200} and answers[0].content == answers[1].content == answers[2].content
    bad = form_subscribe(env, "not-an-address")
    assert bad.status_code == 422 and "address" in bad.text


@pytest.mark.parametrize("body, field", [
    ({"list": "secret-list", "address": "a@example.test"}, "list"),
    ({"list": "news", "address": "not-an-address"}, "address"),
    ({"list": "news"}, "address"),
    ({"list": "news", "address": "a@example.test", "admin": True}, "admin"),
    ({"list": "news", "address": "a@example.test", "name": "Eve\u001b[31m"}, "name"),
    ({"list": "news", "address": "a@example.test", "name": "NUL\u0000"}, "name"),
    ({"list": "news", "address": "a@example.test", "components": ["api\u0000"]}, "components"),
])
def test_bad_subscriptions_are_refused_in_the_error_format(env, body, field):
    r = env.client.post("/api/v1/subscribe", json=body)
    err = assert_error(r, 422, "invalid_request")
    assert err["details"]["field"] == field
    assert env.outbox.sent == []


def test_a_forged_confirmation_token_is_refused(env):
    subscribe(env)
    token = env.outbox.token()
    for method in ("GET", "POST"):
        r = env.client.request(method, "/api/v1/subscribe/confirm", params={"token": token[:-3] + "AAA"})
        assert_error(r, 422, "invalid_request")
    assert_error(env.client.post("/api/v1/subscribe/confirm"), 422, "invalid_request")
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
    assert r.status_code == 200
    assert r.json() == {"status": "unsubscribed", "list": "news", "marketing": False, "stopped": "everything"}
    assert subs.get(env.ledger, sid).state == "unsubscribed"
    again = env.client.post(f"/api/v1/unsubscribe?token={token}", content="List-Unsubscribe=One-Click",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert again.status_code == 200


def test_one_click_from_a_promotion_stops_promotions_and_says_so(env):
    sid = confirmed(env, marketing=True)
    token = subs.unsubscribe_token(env.runtime.settings, sid, "marketing")
    page = env.client.get("/api/v1/unsubscribe", params={"token": token}, headers={"Accept": "text/html"})
    assert "Stop receiving promotions from news? Incident, maintenance and other notices keep coming." in page.text
    assert "Unsubscribe from everything" in page.text
    r = env.client.post("/api/v1/unsubscribe", params={"token": token}, content="List-Unsubscribe=One-Click",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert r.json() == {"status": "confirmed", "list": "news", "marketing": False, "stopped": "promotions"}
    sub = subs.get(env.ledger, sid)
    assert sub.state == "confirmed" and not sub.marketing  # incident mail keeps coming, as the page said
    promo = env.client.post(f"/api/v1/unsubscribe?token={token}", **form({"List-Unsubscribe": "One-Click"}))
    assert "Promotions stopped" in promo.text and "keep coming" in promo.text


def test_the_everything_button_leaves_the_list(env):
    sid = confirmed(env, marketing=True)
    token = subs.unsubscribe_token(env.runtime.settings, sid, "marketing")
    r = env.client.post(f"/api/v1/unsubscribe?token={token}", **form({"scope": "list"}))
    assert r.status_code == 200 and "no more mail of any kind" in r.text
    assert subs.get(env.ledger, sid).state == "unsubscribed"
    page = env.client.get("/api/v1/unsubscribe", params={"token": subs.unsubscribe_token(env.runtime.settings, sid)},
                          headers={"Accept": "text/html"})
    assert "no incident, maintenance or other notices, and no promotions" in page.text


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


# ---------------------------------------------------------------- components must be known


def test_an_unknown_component_is_refused_with_the_known_ones(env):
    """A subscription to ``Nope`` used to be accepted (202) although no announcement can name it."""
    r = subscribe(env, components=["api", "Nope"])
    err = assert_error(r, 422, "invalid_request")
    assert err["details"]["field"] == "components" and err["details"]["known"] == ["api", "web", "db"]
    assert "'Nope'" in err["message"]
    assert env.outbox.sent == [] and subs.find(env.ledger, "news", "reader@example.test") is None
    r = form_subscribe(env, components="Nope")
    assert r.status_code in (400, 422) and "Nope" in r.text
    assert env.outbox.sent == [] and subs.find(env.ledger, "news", "reader@example.test") is None


def test_the_answer_to_an_unknown_component_does_not_depend_on_who_is_subscribed(env):
    confirmed(env, "known@example.test")
    a = subscribe(env, "known@example.test", components=["Nope"])
    b = subscribe(env, "stranger@example.test", components=["Nope"])
    assert a.status_code == 422 and (a.status_code, a.json()) == (b.status_code, b.json())


def test_a_component_is_stored_in_its_configured_spelling(env):
    assert subscribe(env, components=["API", " Db "]).status_code == 202
    assert subs.find(env.ledger, "news", "reader@example.test").components == ("api", "db")
