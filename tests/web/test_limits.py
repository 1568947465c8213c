"""One limiter for every authenticated entry point (issue 13, item 7): the page's session
cookie is charged to its token's rate limit like a bearer token, and cookies that do not verify
are charged to the address like wrong bearer tokens."""

from __future__ import annotations

import pytest

from broadcaster.asgi import create_app
from tests.cli.live import make_settings, memory_runtime
from tests.web.conftest import CHANNELS, Web

RATE = 6  # per token per minute, in this file


@pytest.fixture
def limited(tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", CHANNELS,
                             routes={"incident": ["hook-a", "discord-ops"]},
                             api={"rate_limit": f"{RATE}/1m", "anonymous_rate_limit": "30/1m"})
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
    r = c.post("/ui/preview", json={"kind": "incident", "title": "x"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "Flood", "channels": ["hook-a"]},
               follow_redirects=False)
    assert r.status_code == 429
    assert limited.runtime.ledger.list_announcements() == []
    for path in ("/", "/channels", "/ui/announcements/ann_x"):
        assert c.get(path, follow_redirects=False).status_code == 429, path


def test_page_traffic_counts_against_the_api_too(limited):
    token = limited.token(admin=True)
    c, csrf = limited.signed_in(token)
    for _ in range(RATE):
        c.post("/ui/preview", json={"kind": "incident", "title": "x"}, headers={"X-CSRF-Token": csrf})
    r = limited.client().get("/api/v1/channels", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 429


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
