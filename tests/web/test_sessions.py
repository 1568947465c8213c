"""The web page's session is its own credential (issue 13, item 8): the token is exchanged at
sign-in for a random session secret stored hashed in the ledger; the session expires (idle and
absolute), ends at sign-out and with its token, and its cookie is ``Secure`` when the request
came over https — directly or through a trusted proxy, whose X-Forwarded-For also gives every
client its own address for the per-address limits."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import inspect, select, text

from broadcaster.asgi import create_app
from broadcaster.config import load_settings
from broadcaster.errors import ConfigError
from broadcaster.ledger import Ledger, schema as t
from broadcaster.ledger.engine import MIGRATIONS, make_engine, migrate
from tests.cli.live import make_settings, memory_runtime, serve
from tests.support.runtime import Clock
from tests.web.conftest import CHANNELS, Web, field


def make_web(tmp_path, clock: Clock | None = None, **api) -> Web:
    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", CHANNELS, routes={"incident": ["hook-a"]},
                             api={"rate_limit": "10000/1m", "anonymous_rate_limit": "10000/1m", **api})
    rt = memory_runtime(settings, clock=clock)
    return Web(create_app(settings, rt), rt)


def session_cookie(response) -> str:
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith("bc_session="))


def sign_in(web: Web, token: str, client=None):
    c = client or web.client()
    pre = field(c.get("/signin").text, "csrf")
    r = c.post("/signin", data={"csrf": pre, "token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return c, r


def signed_in(c) -> bool:
    return c.get("/compose", follow_redirects=False).status_code == 200


def test_the_cookie_is_a_session_not_the_token(tmp_path):
    web = make_web(tmp_path)
    token = web.token(admin=True)
    c, r = sign_in(web, token)
    secret = c.cookies["bc_session"]
    assert token not in session_cookie(r) and secret != token and secret.startswith("bcs_")
    with web.runtime.ledger.read() as conn:
        rows = conn.execute(select(t.web_sessions)).all()
    assert len(rows) == 1 and rows[0].token_name == "ops"
    assert secret not in repr(rows[0]._mapping) and rows[0].secret_hash.startswith("sha256:")
    # the raw token presented as a session cookie is no session
    other = web.client()
    other.cookies.set("bc_session", token)
    assert not signed_in(other)


def test_cookie_flags_over_plain_http_and_https(tmp_path):
    web = make_web(tmp_path)
    token = web.token(admin=True)
    _, r = sign_in(web, token)
    flags = session_cookie(r).lower()
    assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags
    tls = web.client()
    tls.base_url = httpx.URL("https://testserver")
    _, r = sign_in(web, token, tls)
    flags = session_cookie(r).lower()
    assert "httponly" in flags and "samesite=lax" in flags and "; secure" in flags


def test_sign_out_ends_the_session_for_every_copy_of_the_cookie(tmp_path):
    web = make_web(tmp_path)
    c, _ = sign_in(web, web.token(admin=True))
    stolen = web.client()
    stolen.cookies.set("bc_session", c.cookies["bc_session"])
    assert signed_in(stolen)
    csrf = field(c.get("/compose").text, "csrf")
    r = c.post("/signout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert not signed_in(stolen), "the session lives on after sign-out"
    with web.runtime.ledger.read() as conn:
        assert conn.execute(select(t.web_sessions.c.revoked_at)).scalar() is not None


def test_revoking_the_token_ends_its_sessions(tmp_path):
    web = make_web(tmp_path)
    c, _ = sign_in(web, web.token("temp", admin=True))
    keep, _ = sign_in(web, web.token("other", admin=True))
    web.app.state.tokens.revoke("temp", actor="test")
    assert not signed_in(c) and signed_in(keep)
    with web.runtime.ledger.read() as conn:
        states = dict(conn.execute(select(t.web_sessions.c.token_name, t.web_sessions.c.revoked_at)).all())
    assert states["temp"] is not None and states["other"] is None


def test_sessions_expire_when_idle(tmp_path):
    clock = Clock()
    web = make_web(tmp_path, clock, session_idle="1h", session_lifetime="3h")
    token = web.token(admin=True)
    c, r = sign_in(web, token)
    assert "max-age=10800" in session_cookie(r).lower()
    clock.advance(3599)
    assert signed_in(c)  # used: the idle clock starts again
    clock.advance(3599)
    assert signed_in(c)
    clock.advance(3601)
    assert not signed_in(c), "idle for over an hour"
    c, _ = sign_in(web, token)  # a new sign-in is a new session
    assert signed_in(c)


def test_the_absolute_end_holds_for_a_busy_session(tmp_path):
    clock = Clock()
    web = make_web(tmp_path, clock, session_idle="1h", session_lifetime="3h")
    c, _ = sign_in(web, web.token(admin=True))
    for _ in range(5):
        clock.advance(30 * 60)
        assert signed_in(c)
    clock.advance(30 * 60 + 1)  # 3 h after sign-in
    assert not signed_in(c)


def test_default_session_limits():
    api = load_settings({"channels": {}}, env={}).api
    assert (api.session_idle, api.session_lifetime) == (12 * 3600, 7 * 86400)


def test_trusted_proxies_are_checked_and_read_from_a_list_or_a_string():
    assert load_settings({"api": {"trusted_proxies": "127.0.0.1, ::1,10.0.0.0/8"}}, env={}).api.trusted_proxies == (
        "127.0.0.1", "::1", "10.0.0.0/8")
    with pytest.raises(ConfigError) as exc:
        load_settings({"api": {"trusted_proxies": ["nginx.local"]}}, env={})
    assert "api.trusted_proxies" in str(exc.value)


def test_an_older_ledger_gets_the_sessions_table(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    Ledger.open(url).close()
    engine = make_engine(url)
    version = next(v for v, what, _ in MIGRATIONS if what == "web page sessions")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE web_sessions"))
        conn.execute(text(f"DELETE FROM schema_version WHERE version = {version}"))
    assert migrate(engine) == [version]
    assert inspect(engine).has_table("web_sessions")
    engine.dispose()


# ---------------------------------------------------------------- behind a reverse proxy (real HTTP)


def proxied_settings(tmp_path, trusted: list[str]):
    data = {"ledger": f"sqlite:///{tmp_path}/ledger.db", "channels": CHANNELS,
            "routes": {"incident": ["hook-a"]},
            "api": {"rate_limit": "10000/1m", "anonymous_rate_limit": "5/1m", "trusted_proxies": trusted}}
    return load_settings(data, env={})


def via_proxy(client_ip: str, proto: str = "https") -> dict[str, str]:
    return {"X-Forwarded-For": f"198.51.100.99, {client_ip}", "X-Forwarded-Proto": proto}


def test_behind_a_trusted_proxy_each_client_has_its_own_address_and_https_cookies(tmp_path):
    settings = proxied_settings(tmp_path, ["127.0.0.1"])
    rt = memory_runtime(settings)
    with serve(settings, rt) as (url, app):
        raw, _ = app.state.tokens.create("ops", admin=True, actor="test")
        junk = [httpx.get(url + "/api/v1/channels", headers={"Authorization": "Bearer bct_junk",
                                                              **via_proxy("203.0.113.7")}).status_code
                for _ in range(8)]
        assert junk[-1] == 429, junk
        # another client behind the same proxy is not locked out by the first one's junk
        c = httpx.Client(base_url=url, headers=via_proxy("203.0.113.8"))
        form = c.get("/signin")
        assert "; secure" in form.headers["set-cookie"].lower()
        pre = field(form.text, "csrf")  # the browser speaks https to the proxy: it sends Secure cookies back
        r = c.post("/signin", data={"csrf": pre, "token": raw}, headers={"Cookie": f"bc_presign={pre}"})
        assert r.status_code == 303, r.text
        assert "; secure" in session_cookie(r).lower(), "https at the proxy: the cookie must be Secure"
    rt.ledger.close()


def test_forwarded_headers_from_anyone_else_are_ignored(tmp_path):
    settings = proxied_settings(tmp_path, [])
    rt = memory_runtime(settings)
    with serve(settings, rt) as (url, _app):
        codes = [httpx.get(url + "/api/v1/channels", headers={"Authorization": "Bearer bct_junk",
                                                               **via_proxy(f"203.0.113.{i}")}).status_code
                 for i in range(8)]
        assert codes[-1] == 429, "a client picked fresh addresses with X-Forwarded-For"
        r = httpx.get(url + "/signin", headers=via_proxy("203.0.113.50"))
        assert "secure" not in r.headers["set-cookie"].lower(), "X-Forwarded-Proto from an untrusted peer"
    rt.ledger.close()


def test_the_session_rows_on_both_ledgers(ledger_url):
    ledger = Ledger.open(ledger_url)
    try:
        store = ledger.sessions
        store.create("ses_1", "sha256:" + "a" * 64, "ops", now=100.0, expires_at=200.0)
        store.create("ses_2", "sha256:" + "b" * 64, "ops", now=100.0, expires_at=200.0)
        store.create("ses_3", "sha256:" + "c" * 64, "ci", now=100.0, expires_at=200.0)
        found = store.find("sha256:" + "a" * 64)
        assert found is not None and found.live(150.0, idle=60.0) is True and found.live(161.0, idle=60.0) is False
        store.touch("ses_1", 150.0)
        assert store.find("sha256:" + "a" * 64).live(200.0 - 1, idle=60.0)
        assert store.revoke("sha256:" + "a" * 64, 151.0) and not store.revoke("sha256:" + "a" * 64, 152.0)
        assert store.revoke_for_token("ops", 153.0) == 1  # ses_2; ses_1 was already ended
        assert store.find("sha256:" + "x" * 64) is None
        assert store.prune(now=155.0, idle=60.0) == 2  # the revoked ones; ses_3 lives on
        assert store.find("sha256:" + "c" * 64) is not None
    finally:
        ledger.close()
