"""The web page through the real app: sign-in, CSRF, compose, actions, escaping."""

from __future__ import annotations

from broadcaster import service
from tests.cli.live import settle
from tests.support.ledger import updates_of
from tests.web.conftest import XSS, field


def compose(c, csrf, **over):
    data = {"csrf": csrf, "kind": "incident", "title": "API errors", "body": "Looking into it.",
            "severity": "major", "components": "api, checkout", "channels": ["hook-a", "discord-ops"],
            "idempotency_key": "k-1", **over}
    return c.post("/compose", data=data, follow_redirects=False)


# ---------------------------------------------------------------- sign-in


def test_pages_need_a_session(web):
    c = web.client()
    for path in ("/", "/compose", "/channels", "/announcements/ann_x"):
        r = c.get(path, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/signin")
    assert c.get("/ui/announcements/ann_x").status_code == 401
    assert c.post("/ui/preview", json={}).status_code == 401


def test_sign_in_sets_a_strict_httponly_cookie(web):
    c = web.client()
    r = c.get("/signin")
    assert "httponly" in r.headers["set-cookie"].lower()
    r = c.post("/signin", data={"csrf": field(r.text, "csrf"), "token": web.token(admin=True)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("bc_session=")).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert c.get("/").status_code == 200


def test_wrong_token_is_refused_without_a_session(web):
    c = web.client()
    pre = field(c.get("/signin").text, "csrf")
    r = c.post("/signin", data={"csrf": pre, "token": "bct_not-a-token"}, follow_redirects=False)
    assert r.status_code == 401
    assert "not valid" in r.text and "bct_not-a-token" not in r.text
    assert "bc_session" not in c.cookies


def test_sign_in_form_needs_its_csrf_cookie(web):
    c = web.client()
    c.get("/signin")
    r = c.post("/signin", data={"csrf": "forged", "token": web.token(admin=True)}, follow_redirects=False)
    assert r.status_code == 403
    assert "bc_session" not in c.cookies


def test_revoked_token_ends_the_session(web):
    c, _ = web.signed_in(web.token("temp", admin=True))
    web.app.state.tokens.revoke("temp", actor="test")
    assert c.get("/", follow_redirects=False).status_code == 303


def test_sign_out(web):
    c, csrf = web.signed_in()
    assert c.post("/signout", data={"csrf": "nope"}).status_code == 403
    r = c.post("/signout", data={"csrf": csrf}, follow_redirects=False)
    assert r.headers["location"] == "/signin"
    assert c.get("/", follow_redirects=False).status_code == 303


# ---------------------------------------------------------------- CSRF


def test_post_forms_without_the_csrf_token_are_refused(web):
    c, csrf = web.signed_in()
    assert compose(c, "").status_code == 403
    assert compose(c, "0" * 64).status_code == 403
    assert web.runtime.ledger.list_announcements() == []
    r = compose(c, csrf)
    ann_id = r.headers["location"].split("/")[-1].split("?")[0]
    for path, data in ((f"/announcements/{ann_id}/updates", {"status": "resolved", "body": "x"}),
                       (f"/announcements/{ann_id}/retract", {"confirm": "yes"}),
                       (f"/announcements/{ann_id}/cancel", {})):
        assert c.post(path, data=data).status_code == 403, path
    assert updates_of(web.runtime.ledger, ann_id) == []
    assert web.runtime.ledger.get_announcement(ann_id).retracted_at is None
    assert c.post("/ui/preview", json={"kind": "incident", "title": "x"}).status_code == 403


def test_csrf_token_of_another_session_does_not_work(web):
    _, other_csrf = web.signed_in(web.token("other", admin=True))
    c, _ = web.signed_in()
    assert compose(c, other_csrf).status_code == 403


# ---------------------------------------------------------------- compose and actions


def test_compose_ticks_the_route_and_creates_the_announcement(web):
    c, csrf = web.signed_in()
    page = c.get("/compose?kind=promotion").text
    assert 'value="hook-a" checked' in page and 'value="discord-ops" checked' not in page
    extra = {"variant_title__discord-ops": "Short title", "publish_at": ""}
    r = compose(c, csrf, **extra)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=created")
    [ann] = web.runtime.ledger.list_announcements()
    assert (ann.kind, ann.title, ann.severity) == ("incident", "API errors", "major")
    assert ann.components == ("API", "Checkout")  # the configured spelling of "api, checkout"
    assert ann.channels == ("hook-a", "discord-ops")
    assert ann.variants == {"discord-ops": {"title": "Short title"}}
    assert sorted(ch for _, ch, _ in web.enqueued) == ["discord-ops", "hook-a"]
    assert compose(c, csrf, **extra).status_code == 303  # a double click: same key, same announcement
    assert len(web.runtime.ledger.list_announcements()) == 1
    changed = compose(c, csrf)  # same key, different content: refused, not a second announcement
    assert changed.status_code == 400 and "Idempotency" in changed.text
    page = c.get(r.headers["location"]).text
    assert "Accepted" in page and "hook-a" in page and "pending" in page


def test_scheduled_compose_and_cancel(web):
    c, csrf = web.signed_in()
    r = compose(c, csrf, publish_at="2099-01-01T10:00", idempotency_key="k-2")
    ann_id = r.headers["location"].split("/")[-1].split("?")[0]
    assert {str(d.state) for d in web.runtime.ledger.deliveries_of(ann_id)} == {"scheduled"}
    page = c.get(f"/announcements/{ann_id}").text
    assert "Cancel the scheduled posts" in page
    c.post(f"/announcements/{ann_id}/cancel", data={"csrf": csrf})
    assert {str(d.state) for d in web.runtime.ledger.deliveries_of(ann_id)} == {"cancelled"}


def test_invalid_compose_is_shown_with_the_reason(web):
    c, csrf = web.signed_in()
    r = compose(c, csrf, url="javascript:alert(1)")
    assert r.status_code == 400
    assert "must start with http" in r.text and 'value="API errors"' in r.text


def test_scoped_token_cannot_post_an_incident(web):
    c, csrf = web.signed_in(web.token("ci", kinds=["deploy"]))
    r = compose(c, csrf)
    assert r.status_code == 403 and "may not post" in r.text


def test_update_retry_retract_from_the_page(web):
    c, csrf = web.signed_in()
    ann_id = compose(c, csrf).headers["location"].split("/")[-1].split("?")[0]
    a, d = web.runtime.ledger.deliveries_of(ann_id)
    settle(web.runtime, a.id, "delivered", url="https://example.test/post/1")
    settle(web.runtime, d.id, "failed", error="discord said 400")
    page = c.get(f"/announcements/{ann_id}").text
    assert 'href="https://example.test/post/1"' in page and "discord said 400" in page
    assert f"/deliveries/{d.id}/retry" in page and f"/deliveries/{a.id}/retry" not in page

    r = c.post(f"/deliveries/{d.id}/retry", data={"csrf": csrf}, follow_redirects=False)
    assert r.headers["location"] == f"/announcements/{ann_id}?done=retry"
    assert str(web.runtime.ledger.get_delivery(d.id).state) == "pending"

    r = c.post(f"/announcements/{ann_id}/updates", data={"csrf": csrf, "status": "resolved", "body": "Fixed."},
               follow_redirects=False)
    assert r.status_code == 303
    assert web.runtime.ledger.get_announcement(ann_id).status == "resolved"

    assert c.post(f"/announcements/{ann_id}/retract", data={"csrf": csrf}).status_code == 400  # not confirmed
    c.post(f"/announcements/{ann_id}/retract", data={"csrf": csrf, "confirm": "yes", "reason": "wrong"})
    assert web.runtime.ledger.get_announcement(ann_id).retracted_at is not None

    data = c.get(f"/ui/announcements/{ann_id}").json()
    assert data["id"] == ann_id and {g["label"] for g in data["groups"]} == {"Announcement", "Update: resolved"}
    assert c.get("/ui/announcements/ann_missing").status_code == 404


def test_unknown_delivery_confirmed_from_the_page(web):
    c, csrf = web.signed_in()
    ann_id = compose(c, csrf).headers["location"].split("/")[-1].split("?")[0]
    a, d = web.runtime.ledger.deliveries_of(ann_id)
    settle(web.runtime, d.id, "unknown", error="connection dropped after sending")
    page = c.get(f"/announcements/{ann_id}").text
    assert f"/deliveries/{d.id}/confirm" in page and f"/deliveries/{a.id}/confirm" not in page
    r = c.post(f"/deliveries/{d.id}/confirm", data={"csrf": csrf}, follow_redirects=False)
    assert r.headers["location"] == f"/announcements/{ann_id}?done=confirm"
    assert str(web.runtime.ledger.get_delivery(d.id).state) == "delivered"
    assert c.post(f"/deliveries/{d.id}/confirm", data={"csrf": "forged"}).status_code == 403
    page = c.get(f"/announcements/{ann_id}").text
    assert "connection dropped after sending" not in page, "a confirmed delivery shows no red error"
    row = next(x for x in c.get(f"/ui/announcements/{ann_id}").json()["deliveries"] if x["id"] == d.id)
    assert row["current_error"] is None and row["last_error"] == "connection dropped after sending"


def test_live_preview_uses_each_channels_rules(web):
    c, csrf = web.signed_in()
    r = c.post("/ui/preview", json={"kind": "incident", "title": "T", "body": "word " * 600,
                                    "channels": ["hook-a", "discord-ops"]}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    rows = {row["channel"]: row for row in r.json()["channels"]}
    assert rows["hook-a"]["limit"] is None and len(rows["hook-a"]["parts"]) == 1
    assert rows["discord-ops"]["limit"] == 2000 and len(rows["discord-ops"]["parts"]) >= 2
    assert all(n <= 2000 for n in rows["discord-ops"]["lengths"])
    bad = c.post("/ui/preview", json={"kind": "party", "title": "x"}, headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 422 and "kind" in bad.json()["error"]["message"]


def test_channel_board(web):
    c, _ = web.signed_in()
    page = c.get("/channels").text
    assert "hook-a" in page and "discord-ops" in page and "closed" in page and "never" in page


def test_pages_send_a_strict_content_security_policy(web):
    c, _ = web.signed_in()
    r = c.get("/compose")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"


def test_static_files_and_no_traversal(web):
    c = web.client()
    assert c.get("/static/app.css").status_code == 200
    assert c.get("/static/timeline.js").headers["content-type"].startswith("text/javascript")
    assert c.get("/static/..%2Froutes.py").status_code == 404


# ---------------------------------------------------------------- escaping


def test_script_tags_render_as_text_everywhere(web):
    token = web.token(XSS.replace(" ", ""), admin=True)  # token names cannot hold spaces; this one has none
    c, csrf = web.signed_in(token)
    r = compose(c, csrf, title=XSS, body=XSS, components="api", url=f"https://example.com/?q={XSS}",
                **{"variant_title__hook-a": XSS, "variant_body__hook-a": XSS})
    assert r.status_code == 303, r.text
    ann_id = r.headers["location"].split("/")[-1].split("?")[0]
    a, _ = web.runtime.ledger.deliveries_of(ann_id)
    settle(web.runtime, a.id, "failed", error=XSS)
    service.add_update(web.runtime, ann_id, {"status": "identified", "body": XSS},
                       principal=service.Principal("x", admin=True))
    pages = {
        "announcement": c.get(f"/announcements/{ann_id}").text,
        "list": c.get("/").text,
        "channels": c.get("/channels").text,
        "compose-error": compose(c, csrf, title=XSS, body=XSS, url="javascript:" + XSS).text,
        "compose-unknown-component": compose(c, csrf, title=XSS, components=XSS, idempotency_key="k-2").text,
    }
    for name, html in pages.items():
        assert XSS not in html, f"raw script tag on the {name} page"
        assert "<script>" not in html.replace('<script type="application/json" id="routes">', ""), name
    assert pages["announcement"].count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # title, body, update, error
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["list"]


def test_compose_offers_the_configured_components_and_refuses_others(web):
    c, csrf = web.signed_in()
    page = c.get("/compose").text
    for name in ("API", "Checkout"):
        assert f'name="components" value="{name}"' in page
    assert "placeholder=\"api" not in page
    r = compose(c, csrf, components=["API", "payments"], idempotency_key="k-9")
    assert r.status_code == 400 and web.runtime.ledger.list_announcements() == []
    assert "unknown component(s) &#39;payments&#39;; known components: API, Checkout" in r.text
    assert 'name="components" value="API" checked' in r.text  # the form keeps what was ticked
    r = compose(c, csrf, components=["api"], idempotency_key="k-10")
    assert r.status_code == 303
    assert web.runtime.ledger.list_announcements()[0].components == ("API",)


def test_a_held_promotion_says_which_incident_holds_it(tmp_path):
    from broadcaster import service
    from broadcaster.asgi import create_app
    from tests.cli.live import make_settings, memory_runtime
    from tests.web.conftest import CHANNELS, Web

    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", CHANNELS,
                             routes={"incident": ["hook-a"], "promotion": ["hook-a"]},
                             quiet_during_incidents=["promotion"])
    rt = memory_runtime(settings)
    try:
        web = Web(create_app(settings, rt), rt)
        c, _ = web.signed_in()
        incident = service.submit(rt, {"kind": "incident", "title": "Checkout <down>", "body": "x"},
                                  principal=service.SYSTEM)
        promo = service.submit(rt, {"kind": "promotion", "title": "Sale", "body": "50% off"}, principal=service.SYSTEM)
        page = c.get(f"/announcements/{promo.id}").text
        assert "Held while incident" in page and f'href="/announcements/{incident.id}"' in page
        assert "Checkout &lt;down&gt;" in page, "the incident title is escaped"
        assert "Held while" not in c.get(f"/announcements/{incident.id}").text
    finally:
        rt.ledger.close()


def test_compose_creates_a_maintenance_window_through_the_same_validation(web):
    c, csrf = web.signed_in()
    page = c.get("/compose?kind=maintenance").text
    assert 'name="starts_at" type="datetime-local"' in page and 'name="ends_at" type="datetime-local"' in page
    window = {"kind": "maintenance", "severity": "", "components": "", "channels": ["hook-a"]}
    r = compose(c, csrf, **window, starts_at="2026-11-30T06:00", ends_at="2026-11-30T06:00", idempotency_key="w-1")
    assert r.status_code == 400 and "window: window.ends_at must be after window.starts_at" in r.text
    assert 'value="2026-11-30T06:00"' in r.text  # what was typed is shown again
    r = compose(c, csrf, **window, starts_at="2026-11-30T04:30", idempotency_key="w-2")
    assert r.status_code == 400 and "window.ends_at" in r.text
    r = compose(c, csrf, **window, starts_at="30/11/2026 04:30", ends_at="2026-11-30T06:00", idempotency_key="w-3")
    assert r.status_code == 400 and "window.starts_at" in r.text and "ISO 8601" in r.text
    assert web.runtime.ledger.list_announcements() == []
    r = compose(c, csrf, **window, starts_at="2026-11-30T04:30", ends_at="2026-11-30T06:00", idempotency_key="w-4")
    assert r.status_code == 303, r.text
    [ann] = web.runtime.ledger.list_announcements()
    assert (ann.window.starts_at, ann.window.ends_at) == (1796013000.0, 1796018400.0)  # the form's times are UTC


def test_compose_sets_component_states_explicitly(web):
    c, csrf = web.signed_in()
    page = c.get("/compose").text
    assert 'name="state__API"' in page and 'name="state__Checkout"' in page
    assert 'value="major_outage">Major outage</option>' in page
    # a state for a component that is not ticked is refused, naming the field, and kept on the form
    r = compose(c, csrf, components=["API"], state__Checkout="major_outage", idempotency_key="s-1")
    assert r.status_code == 400 and "component_states" in r.text and "not among" in r.text
    assert '<option value="major_outage" selected>' in r.text
    assert web.runtime.ledger.list_announcements() == []
    # a state that is not one of the five is refused by the same check as the API's
    r = compose(c, csrf, components=["API"], state__API="on_fire", idempotency_key="s-2")
    assert r.status_code == 400 and "not a component state" in r.text
    r = compose(c, csrf, components=["API", "Checkout"], state__API="major_outage", state__Checkout="",
                idempotency_key="s-3")
    assert r.status_code == 303, r.text
    [ann] = web.runtime.ledger.list_announcements()
    assert ann.component_states == {"API": "major_outage"}  # Checkout follows the severity
    detail = c.get(f"/ui/announcements/{ann.id}").json()
    assert detail["component_states"] == {"API": "major_outage"}


def test_an_update_from_the_page_sets_component_states(web):
    c, csrf = web.signed_in()
    r = compose(c, csrf, components=["API", "Checkout"], state__API="major_outage", idempotency_key="us-1")
    ann_id = r.headers["location"].split("/")[-1].split("?")[0]
    page = c.get(f"/announcements/{ann_id}").text
    form = page.split('id="update-form"')[1].split("</form>")[0]
    assert 'name="state__API"' in form and 'name="state__Checkout"' in form and "unchanged (Major outage)" in form
    r = c.post(f"/announcements/{ann_id}/updates", data={"csrf": csrf, "status": "identified", "body": "Found it.",
                                                         "state__API": "degraded_performance", "state__Checkout": ""},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    (u,) = updates_of(web.runtime.ledger, ann_id)
    assert u.component_states == {"API": "degraded_performance"}  # an empty select changes nothing
    assert web.runtime.ledger.get_announcement(ann_id).component_states == {"API": "degraded_performance"}
    r = c.post(f"/announcements/{ann_id}/updates", data={"csrf": csrf, "status": "monitoring", "body": "x",
                                                         "state__API": "on_fire"}, follow_redirects=False)
    assert r.status_code == 400 and "not a component state" in r.text
    assert len(updates_of(web.runtime.ledger, ann_id)) == 1
