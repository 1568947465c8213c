"""One limiter for every authenticated entry point (issue 13, item 7): the page's session
cookie is charged to its token's rate limit like a bearer token, and cookies that do not verify
are charged to the address like wrong bearer tokens. Previews have a budget of their own, so
typing on the compose page never blocks the post; a page over the limit answers a readable page,
and a form re-renders itself with what was entered (never raw JSON)."""

from __future__ import annotations

import pytest

from broadcaster.asgi import create_app
from tests.cli.live import make_settings, memory_runtime
from tests.web.conftest import CHANNELS, Web, field

RATE = 6  # per token per minute, in this file
PREVIEWS = 20  # previews per token per minute, in this file


@pytest.fixture
def limited(tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", CHANNELS,
                             routes={"incident": ["hook-a", "discord-ops"]},
                             api={"rate_limit": f"{RATE}/1m", "anonymous_rate_limit": "30/1m",
                                  "preview_rate_limit": f"{PREVIEWS}/1m"})
    rt = memory_runtime(settings)
    yield Web(create_app(settings, rt), rt)
    rt.ledger.close()


def use_up_the_api_budget(web: Web, token: str) -> None:
    api = web.client()
    codes = [api.get("/api/v1/channels", headers={"Authorization": f"Bearer {token}"}).status_code
             for _ in range(RATE + 1)]
    assert codes[-1] == 429, codes


def test_the_page_shares_the_tokens_api_rate_limit(limited):
    token = limited.token(admin=True)
    c, csrf = limited.signed_in(token)  # one page load (the compose form) is already charged
    use_up_the_api_budget(limited, token)
    r = c.get("/compose", follow_redirects=False)
    assert r.status_code == 429 and r.headers["retry-after"]
    assert r.headers["content-type"].startswith("text/html") and "Too many requests" in r.text
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "Flood", "channels": ["hook-a"]},
               follow_redirects=False)
    assert r.status_code == 429
    assert limited.runtime.ledger.list_announcements() == []
    for path in ("/", "/channels"):
        assert c.get(path, follow_redirects=False).status_code == 429, path
    r = c.get("/ui/announcements/ann_x", follow_redirects=False)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited", "the page's JSON stays JSON"


def test_page_traffic_counts_against_the_api_too(limited):
    token = limited.token(admin=True)
    c, _ = limited.signed_in(token)
    for _ in range(RATE):
        c.get("/channels")
    r = limited.client().get("/api/v1/channels", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 429


def test_typing_previews_never_use_up_the_posting_budget(limited):
    """The outside trial: ~130 previews while typing, then Post got 429 and raw JSON."""
    token = limited.token(admin=True)
    c, csrf = limited.signed_in(token)
    codes = [c.post("/ui/preview", json={"kind": "incident", "title": f"Typing {i}"},
                    headers={"X-CSRF-Token": csrf}).status_code for i in range(PREVIEWS + 5)]
    assert codes[:PREVIEWS - 2] == [200] * (PREVIEWS - 2) and codes[-1] == 429, codes
    api = {"Authorization": f"Bearer {token}"}
    previews = limited.client()
    assert previews.post("/api/v1/preview", json={"kind": "incident", "title": "x"}, headers=api).status_code == 429
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "Typed at last", "body": "Looking.",
                                 "channels": ["hook-a"]}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert [a.title for a in limited.runtime.ledger.list_announcements()] == ["Typed at last"]
    assert limited.client().get("/api/v1/channels", headers=api).status_code == 200


def test_a_form_over_the_limit_comes_back_with_what_was_entered_and_a_readable_error(limited):
    token = limited.token(admin=True)
    c, csrf = limited.signed_in(token)
    use_up_the_api_budget(limited, token)
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "Checkout is failing",
                                 "body": "We are looking into it.", "channels": ["hook-a"]}, follow_redirects=False)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.headers["content-type"].startswith("text/html")
    assert not r.text.lstrip().startswith("{") and "rate_limited" not in r.text, "no raw JSON"
    assert "Too many requests with this token just now, so nothing was done." in r.text
    assert 'value="Checkout is failing"' in r.text and "We are looking into it." in r.text, "the form, as entered"
    assert limited.runtime.ledger.list_announcements() == []
    r = c.post("/signout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 429 and "nothing was done" in r.text, "every form: acts on nothing, says so"


def test_sign_in_over_the_address_limit_says_so_on_the_form(limited):
    c = limited.client()
    codes = []
    for _ in range(35):
        pre = field(c.get("/signin").text, "csrf")
        r = c.post("/signin", data={"csrf": pre, "token": "bct_wrong"}, follow_redirects=False)
        codes.append(r.status_code)
    assert codes[:30] == [401] * 30 and codes[-1] == 429, codes
    assert r.headers["content-type"].startswith("text/html") and "Too many sign-in attempts" in r.text
    assert r.headers["retry-after"]


def test_guessing_session_cookies_meets_429(limited):
    codes = []
    for i in range(40):
        c = limited.client()
        c.cookies.set("bc_session", f"bct_guess-{i:04d}-" + "x" * 30)
        codes.append(c.get("/compose", follow_redirects=False).status_code)
    assert set(codes[:30]) == {303}, codes  # refused: back to the sign-in form
    assert 429 in codes[30:], codes


def test_a_refused_cookie_is_cleared_on_the_way_to_sign_in(limited):
    c = limited.client()
    c.cookies.set("bc_session", "bct_stale")
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert any(h.startswith('bc_session=""') or "bc_session=;" in h or "max-age=0" in h.lower()
               for h in r.headers.get_list("set-cookie"))


def test_wrong_cookies_and_wrong_bearer_tokens_share_the_address_budget(limited):
    for i in range(20):
        r = limited.client().get("/api/v1/channels", headers={"Authorization": f"Bearer bct_no-{i}"})
        assert r.status_code == 401
    codes = []
    for i in range(15):
        c = limited.client()
        c.cookies.set("bc_session", f"bct_guess-{i}")
        codes.append(c.get("/", follow_redirects=False).status_code)
    assert 429 in codes, codes


def test_pages_without_a_cookie_cost_nothing(limited):
    c = limited.client()
    for _ in range(40):
        assert c.get("/compose", follow_redirects=False).status_code == 303
    assert c.get("/signin").status_code == 200
