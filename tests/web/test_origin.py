"""The page's forms check where a browser says they come from, as a second layer after the CSRF
token (the outside trial: a valid token posted with ``Origin: https://evil.example`` was
accepted). Every state-changing page form is found from the app's routes, so a new one cannot
be left out."""

from __future__ import annotations

import re

import pytest

from broadcaster.origins import came_from, origin_of
from tests.web.conftest import field
from tests.web.test_pages import compose

EVIL = {"Origin": "https://evil.example"}


def post_routes(routes, prefix: str = ""):
    for r in routes:
        inner = getattr(r, "original_router", None)  # an included router (FastAPI keeps it whole)
        if inner is not None:
            yield from post_routes(inner.routes, prefix + inner.prefix)
        elif "POST" in (getattr(r, "methods", None) or ()):
            yield prefix + r.path


def page_forms(app) -> list[str]:
    """Path templates of every POST route of the page (not the API, not its JSON routes)."""
    return sorted({p for p in post_routes(app.routes) if not p.startswith(("/api/", "/ui/"))})


def test_every_page_form_refuses_a_valid_token_posted_from_another_site(web):
    c, csrf = web.signed_in()
    r = compose(c, csrf)
    assert r.status_code == 303
    ann_id = r.headers["location"].split("/")[-1].split("?")[0]
    delivery_id = web.runtime.ledger.deliveries_of(ann_id)[0].id
    ids = {"ann_id": ann_id, "delivery_id": delivery_id, "draft_id": "drf_none"}
    forms = page_forms(web.app)
    assert {"/compose", "/signin", "/signout", "/announcements/{ann_id}/retract", "/drafts/{draft_id}/publish",
            "/approvals/{ann_id}/approve"} <= set(forms), forms
    for template in forms:
        path = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], template)
        data = {"csrf": field(c.get("/signin").text, "csrf") if path == "/signin" else csrf,
                "token": "x", "confirm": "yes", "status": "resolved", "body": "x", "kind": "incident", "title": "t"}
        for headers in (EVIL, {"Origin": "null"}, {"Referer": "https://evil.example/page"},
                        {"Origin": "null", "Sec-Fetch-Site": "cross-site"}):
            r = c.post(path, data=data, headers=headers, follow_redirects=False)
            assert r.status_code == 403, (path, headers, r.status_code)
    assert [a.id for a in web.runtime.ledger.list_announcements()] == [ann_id], "nothing more was posted"
    assert web.runtime.ledger.get_announcement(ann_id).retracted_at is None
    assert c.get("/").status_code == 200, "still signed in: the sign-out from elsewhere was refused"


@pytest.mark.parametrize("headers", [
    {"Origin": "http://testserver"},
    {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    {"Referer": "http://testserver/compose"},
    {},  # not a browser: the CSRF token decides
])
def test_our_own_page_and_clients_without_the_headers_still_post(web, headers):
    c, csrf = web.signed_in()
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "From here", "channels": ["hook-a"]},
               headers=headers, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]


def test_the_page_asks_browsers_to_name_our_origin_but_tell_no_one_else():
    from broadcaster.web.routes import SECURITY_HEADERS

    assert SECURITY_HEADERS["Referrer-Policy"] == "same-origin"


def test_came_from_reads_origin_then_fetch_metadata_then_referer():
    own = ["https://status.example.test", "http://127.0.0.1:8080/"]
    assert came_from({"origin": "https://status.example.test"}, own) is True
    assert came_from({"origin": "https://STATUS.example.test:443"}, own) is True
    assert came_from({"origin": "http://127.0.0.1:8080"}, own) is True
    assert came_from({"origin": "http://127.0.0.1:8081"}, own) is False
    assert came_from({"origin": "https://evil.example", "sec-fetch-site": "same-origin"}, own) is False
    assert came_from({"origin": "null", "sec-fetch-site": "same-origin"}, own) is True
    assert came_from({"origin": "null"}, own) is None
    assert came_from({"sec-fetch-site": "cross-site"}, own) is False
    assert came_from({"referer": "https://status.example.test/compose?x=1"}, own) is True
    assert came_from({"referer": "https://evil.example/"}, own) is False
    assert came_from({}, own) is None
    assert origin_of("not a url") == "" and origin_of("http://[::1]:80/x") == "http://[::1]"
