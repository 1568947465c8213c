"""What a URL or a body can do to the page and to ``/metrics`` (issue 13, item 12): nothing
beyond a known answer. Status codes, messages and metric labels come from fixed sets; a body
nested too deeply is the API's 400 JSON, not a 500."""

from __future__ import annotations

import pytest

from tests.web.conftest import field


def metrics_lines(c) -> set[str]:
    text = c.get("/metrics").text
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line.startswith("broadcaster_api_requests_total{")}


@pytest.mark.parametrize("status", ["0", "600", "-1", "99999999999999999999", "abc", "200"])
def test_the_sign_in_page_ignores_a_status_from_the_url(web, status):
    r = web.client().get(f"/signin?status={status}")
    assert r.status_code == 200
    assert 'name="csrf"' in r.text


def test_the_sign_in_page_shows_only_known_messages(web):
    c = web.client()
    lure = "Sign-in is moving: email your token to security@evil.example"
    r = c.get("/signin", params={"error": lure})
    assert r.status_code == 200 and "evil.example" not in r.text and "email your token" not in r.text
    r = c.get("/signin", params={"error": "expired"})
    assert "The sign-in form expired" in r.text
    pre = field(c.get("/signin").text, "csrf")
    r = c.post("/signin", data={"csrf": pre, "token": "bct_wrong"})
    assert r.status_code == 401 and "not valid" in r.text


def test_junk_requests_do_not_grow_metrics(web):
    c = web.client()
    for i in range(50):  # warm up every label the junk below could legitimately touch
        c.get(f"/signin?status={i}")
    before = metrics_lines(c)
    size_before = len(c.get("/metrics").content)
    for i in range(300):
        c.get(f"/signin?status={i - 150}")
        c.get(f"/signin?status={600 + i}")
        c.get(f"/no/such/page/{i}")
        c.get(f"/announcements/ann_{i}", follow_redirects=False)
        c.get(f"/api/v1/announcements/ann_{i}")
        c.request(f"FOO{i}", "/signin")
    after = metrics_lines(c)
    new = after - before
    # the junk adds a bounded handful of label sets (404s, 401s, the 'other' method), never one per value
    assert len(new) <= 10, sorted(new)
    text = c.get("/metrics").text
    assert 'status="600"' not in text and 'method="FOO' not in text and "ann_1" not in text
    assert len(c.get("/metrics").content) < size_before + 30_000


def test_a_deeply_nested_preview_body_is_the_apis_400(web):
    c, csrf = web.signed_in()
    token = web.token("api", admin=True)
    deep = "[" * 100_000 + "]" * 100_000
    page = c.post("/ui/preview", content=deep, headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    api = web.client().post("/api/v1/preview", content=deep,
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert page.status_code == api.status_code == 400
    assert page.json()["error"]["code"] == api.json()["error"]["code"] == "bad_request"
    deep_obj = '{"a":' * 40_000 + "1" + "}" * 40_000  # under api.max_body_bytes
    r = c.post("/ui/preview", content=deep_obj, headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert r.status_code == 400 and set(r.json()["error"]) == {"code", "message", "details"}


@pytest.mark.parametrize("path", ["/api/v1/subscribe/form", "/api/v1/subscribe/confirm", "/api/v1/unsubscribe",
                                  "/api/v1/subscribe/endpoint/form", "/api/v1/subscribe/endpoint/confirm/form",
                                  "/api/v1/unsubscribe/endpoint"])
def test_public_forms_refuse_deeply_nested_json_without_a_500(web, path):
    deep = "[" * 100_000 + "]" * 100_000
    r = web.client().post(path, content=deep, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
