"""Token renewal through the real parts: the sandbox's token endpoints on loopback (X, LinkedIn,
Facebook, Matrix, in their documented shapes), a real Celery worker and scheduler, real Redis
for the lock, a real ledger, token files on disk.

- a post whose token the provider refuses as expired is renewed and posted once;
- the scheduler renews a due token with nothing posted;
- two processes due at once make one renewal (the Redis lock), and both use its result;
- a revoked app turns the channel not ready (page, /metrics) before any post;
- no token ever reaches the ledger.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest
import redis as redis_lib

from broadcaster import service
from broadcaster.config import Secret
from broadcaster.models import DeliveryState
from broadcaster.oauth.hook import renew_due
from broadcaster.oauth.store import FileTokenStore
from broadcaster.oauth.tokens import TokenSet, fingerprint
from broadcaster.readiness import check_all
from broadcaster.resilience import MemoryBreaker, MemoryRateLimiter
from broadcaster.runtime import Runtime
from broadcaster.sandbox import Sandbox
from tests.cli.live import make_settings
from tests.support.runtime import Clock, memory_runtime
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow

CONFIG_ACCESS, CONFIG_REFRESH = "configured-access-1a2b", "configured-refresh-3c4d"
STORED_ACCESS, STORED_REFRESH = "stored-access-5e6f7a8b", "stored-refresh-9c0d1e2f"


@pytest.fixture
def sandbox():
    sb = Sandbox(port=0, smtp_port=None, rate_limits=False).start()
    yield sb
    sb.stop()


def x_channel(sandbox, tmp_path, **refresh) -> dict:
    return {"kind": "x", "base_url": sandbox.url("x"), "access_token": CONFIG_ACCESS,
            "refresh": {"client_id": "sandbox-client", "refresh_token": CONFIG_REFRESH,
                        "store": {"file": f"{tmp_path}/tokens/{{channel}}.json"}, **refresh}}


def seed_store(path, *, expires_in: float, age: float = 3600.0) -> FileTokenStore:
    """A token set an earlier renewal stored (the configured refresh token is long spent)."""
    now = time.time()
    store = FileTokenStore(path, "x-main")
    store.save(TokenSet(access=Secret(STORED_ACCESS), refresh=Secret(STORED_REFRESH), expires_at=now + expires_in,
                        obtained_at=now - age, checked_at=now - age, seed=fingerprint(Secret(CONFIG_REFRESH))))
    return store


def strict_x(sandbox) -> None:
    """The X stand-in honours only the stored token set (and what it issues itself)."""
    sandbox.configure("x", tokens=[STORED_ACCESS], refresh_tokens=[STORED_REFRESH], clients={"sandbox-client": None})


def token_requests(sandbox, provider: str = "x", path: str = "/oauth2/token") -> list[dict]:
    return [r for r in sandbox.requests(provider) if r["path"].endswith(path)]


def ledger_text(runtime) -> str:
    """Every row of every table, as text."""
    from sqlalchemy import text

    out = []
    with runtime.ledger.read() as conn:
        names = [r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))]
        for name in names:
            out += [repr(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{name}"'))]
    return "\n".join(out)


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# ---------------------------------------------------------------- X through the real worker


def test_an_expired_token_is_renewed_and_the_post_made_once_by_the_worker(sandbox, tmp_path, private_redis):
    strict_x(sandbox)
    store = seed_store(tmp_path / "tokens" / "x-main.json", expires_in=3600)  # not due yet
    sandbox.expire_tokens("x", STORED_ACCESS)  # …but X has stopped honouring it
    system = System(settings_for(f"sqlite:///{tmp_path}/l.db", private_redis.url,
                                 {"x-main": x_channel(sandbox, tmp_path)}))
    try:
        with system.worker():
            ann = service.submit(system.runtime, {"kind": "incident", "title": "API errors", "body": "Looking."},
                                 principal=service.SYSTEM).id
            [d] = system.wait_settled(ann)
        assert d.state == DeliveryState.DELIVERED, system.runtime.ledger.events_of(d.id)
        assert len(sandbox.posts("x")) == 1
        statuses = [(r["path"].rsplit("/", 1)[-1], r["status"]) for r in sandbox.requests("x")]
        assert statuses == [("tweets", 401), ("token", 200), ("tweets", 201)]
        renewed = store.load()
        assert renewed is not None and renewed.access.reveal().startswith("sbx-x-access-")
        assert renewed.refresh is not None and renewed.refresh.reveal() != STORED_REFRESH
        assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
        assert token_requests(sandbox)[0]["body"] == "grant_type=refresh_token&refresh_token=%2A%2A%2A&client_id=sandbox-client"
        text = ledger_text(system.runtime)
        for secret in (STORED_ACCESS, STORED_REFRESH, renewed.access.reveal(), renewed.refresh.reveal()):
            assert secret not in text
    finally:
        system.stop()


def test_the_scheduler_renews_a_due_token_with_nothing_posted(sandbox, tmp_path, private_redis):
    strict_x(sandbox)
    store = seed_store(tmp_path / "tokens" / "x-main.json", expires_in=600)  # less than the margin (a quarter)
    system = System(settings_for(f"sqlite:///{tmp_path}/l.db", private_redis.url,
                                 {"x-main": x_channel(sandbox, tmp_path)}, readiness={"enabled": False}))
    try:
        system.start_scheduler()
        assert wait_until(lambda: (store.load() or STORED).access.reveal() != STORED_ACCESS)
        renewed = store.load()
        assert renewed is not None and renewed.expires_at is not None and renewed.expires_at > time.time() + 7000
        assert len(token_requests(sandbox)) == 1 and sandbox.posts("x") == []
    finally:
        system.stop()


STORED = TokenSet(access=Secret(STORED_ACCESS))


def test_two_processes_due_at_once_renew_once(sandbox, tmp_path, shared_redis_url):
    strict_x(sandbox)
    sandbox.set_fault("x", "slow", seconds=0.5, path="/oauth2/token")  # a renewal takes a while
    store = seed_store(tmp_path / "tokens" / "x-main.json", expires_in=300)
    settings = make_settings(f"sqlite:///{tmp_path}/l.db", {"x-main": x_channel(sandbox, tmp_path)})
    client = redis_lib.Redis.from_url(shared_redis_url)
    client.delete(*client.keys("bc:oauth:refresh:x-main:*") or ["-"])
    runtimes = []
    for _ in range(2):  # two worker processes: each its own runtime, memory and Redis connection
        first = memory_runtime(settings)
        runtimes.append(Runtime(settings, ledger=first.ledger, breaker=MemoryBreaker(), limiter=MemoryRateLimiter(),
                                redis=redis_lib.Redis.from_url(shared_redis_url)))
    results: list[dict] = [{}, {}]
    go = threading.Barrier(2)

    def renew(i: int) -> None:
        go.wait()
        results[i] = renew_due(runtimes[i])

    threads = [threading.Thread(target=renew, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert len(token_requests(sandbox)) == 1, results  # one renewal; the other waited and adopted it
        tokens = [rt.credential("x-main").token() for rt in runtimes]
        stored = store.load()
        assert stored is not None and tokens == [stored.access.reveal()] * 2
        ch = runtimes[1].build_channel("x-main")
        assert ch.check().startswith("@sandbox")  # the adopted token works at X
    finally:
        for rt in runtimes:
            rt.close()
        runtimes[0].ledger.close()


def test_a_revoked_app_makes_the_channel_not_ready_before_any_post(sandbox, tmp_path):
    strict_x(sandbox)
    seed_store(tmp_path / "tokens" / "x-main.json", expires_in=3600)
    settings = make_settings(f"sqlite:///{tmp_path}/l.db", {"x-main": x_channel(sandbox, tmp_path)})
    rt = memory_runtime(settings)
    try:
        [ok] = check_all(rt)
        assert ok.ready and ok.expires_at is None, ok.detail  # renewed indefinitely: no end to forecast
        sandbox.set_fault("x", "revoked_token")  # every call refused, the token endpoint too
        [bad] = check_all(rt)
        assert not bad.ready and "authorize the app again" in bad.detail
        assert STORED_ACCESS not in bad.detail and STORED_REFRESH not in bad.detail
        assert sandbox.posts("x") == []
    finally:
        rt.close()
        rt.ledger.close()


# ---------------------------------------------------------------- the other providers


def test_linkedin_renews_the_configured_token_and_forecasts_the_refresh_tokens_end(sandbox, tmp_path):
    sandbox.configure("linkedin", tokens=["li-configured-token"], refresh_tokens=["li-refresh-token"],
                      clients={"li-client": "li-secret"})
    channel = {"kind": "linkedin", "base_url": sandbox.url("linkedin"), "organization": "2414183",
               "access_token": "li-configured-token",
               "refresh": {"client_id": "li-client", "client_secret": "li-secret", "refresh_token": "li-refresh-token",
                           "token_url": sandbox.url("linkedin") + "/oauth/v2/accessToken",
                           "store": {"file": f"{tmp_path}/tokens/{{channel}}.json"}}}
    settings = make_settings(f"sqlite:///{tmp_path}/l.db", {"li-page": channel})
    clock = Clock(time.time())
    rt = memory_runtime(settings, clock=clock)
    try:
        [r] = check_all(rt)
        assert r.ready, r.detail
        assert r.expires_at is not None and abs(r.expires_at - (time.time() + 365 * 86400)) < 120
        stored = json.loads((tmp_path / "tokens" / "li-page.json").read_text())
        assert stored["access_token"].startswith("sbx-li-access-") and stored["refresh_token"] == "li-refresh-token"
        assert stored["expires_at"] == pytest.approx(time.time() + 60 * 86400, abs=120)
        body = token_requests(sandbox, "linkedin", "/accessToken")[0]["body"]
        assert "client_secret=%2A%2A%2A" in body and "li-secret" not in body
        # the access token expires early: the post is refused, renewed, repeated — one post
        sandbox.expire_tokens("linkedin")
        clock.advance(3600)  # issued an hour ago: a refusal now is worth a renewal
        ann = service.submit(rt, {"kind": "incident", "title": "Slow sign-ins", "body": "Looking."},
                             principal=service.SYSTEM).id
        from broadcaster.drain import drain

        drain(rt, "li-page")
        [d] = rt.ledger.deliveries_of(ann)
        assert d.state == DeliveryState.DELIVERED, rt.ledger.events_of(d.id)
        assert len(sandbox.posts("linkedin")) == 1 and sandbox.token_refreshes("linkedin") == 2
    finally:
        rt.close()
        rt.ledger.close()


def fb_channel(sandbox, tmp_path, user_token: str | None = "fb-user-token") -> dict:
    refresh = {"client_id": "1234", "client_secret": "fb-app-secret",
               "store": {"file": f"{tmp_path}/tokens/{{channel}}.json"}}
    if user_token:
        refresh["refresh_token"] = user_token
    return {"kind": "facebook", "graph_url": sandbox.url("facebook") + "/v19.0", "page_id": "1000001",
            "access_token": "fb-configured-page-token", "refresh": refresh}


def test_facebook_derives_a_new_page_token_when_the_configured_one_expires_soon(sandbox, tmp_path):
    sandbox.configure("facebook", tokens=["fb-configured-page-token"], user_tokens=["fb-user-token"], app_id="1234",
                      app_secret="fb-app-secret", token_expires={"fb-configured-page-token": time.time() + 300})
    rt = memory_runtime(make_settings(f"sqlite:///{tmp_path}/l.db", {"fb-page": fb_channel(sandbox, tmp_path)}))
    try:
        ann = service.submit(rt, {"kind": "incident", "title": "Checkout errors", "body": "Looking."},
                             principal=service.SYSTEM).id
        from broadcaster.drain import drain

        drain(rt, "fb-page")
        [d] = rt.ledger.deliveries_of(ann)
        assert d.state == DeliveryState.DELIVERED, rt.ledger.events_of(d.id)
        paths = [(r["method"], r["path"].split("/v19.0/")[-1]) for r in sandbox.requests("facebook")]
        assert paths == [("GET", "debug_token"), ("POST", "oauth/access_token"), ("GET", "1000001"),
                         ("GET", "debug_token"), ("POST", "1000001/feed")]
        stored = json.loads((tmp_path / "tokens" / "fb-page.json").read_text())
        assert stored["access_token"].startswith("sbx-fb-page-") and stored["refresh_token"].startswith("sbx-fb-user-")
        assert stored["expires_at"] is None  # a Page token from a long-lived user token does not expire
        [r] = check_all(rt)
        assert r.ready and r.expires_at is None, r.detail
        assert "fb-app-secret" not in json.dumps(sandbox.requests("facebook"))
    finally:
        rt.close()
        rt.ledger.close()


def test_facebook_only_asks_while_the_page_token_does_not_expire(sandbox, tmp_path):
    sandbox.configure("facebook", tokens=["fb-configured-page-token"], app_id="1234", app_secret="fb-app-secret")
    rt = memory_runtime(make_settings(f"sqlite:///{tmp_path}/l.db",
                                      {"fb-page": fb_channel(sandbox, tmp_path, user_token=None)}))
    try:
        [r] = check_all(rt)
        assert r.ready, r.detail
        assert [r["path"].rsplit("/", 1)[-1] for r in sandbox.requests("facebook")] == ["debug_token", "1000001"]
        assert "does not expire" in r.detail
    finally:
        rt.close()
        rt.ledger.close()


def test_matrix_renews_an_expired_token_and_sends_once(sandbox, tmp_path):
    sandbox.configure("matrix", tokens=["mx-configured-token"], refresh_tokens=["mx-refresh-token"])
    channel = {"kind": "matrix", "homeserver": sandbox.url("matrix"), "access_token": "mx-configured-token",
               "room_id": "!ops:sandbox.test",
               "refresh": {"refresh_token": "mx-refresh-token",
                           "store": {"file": f"{tmp_path}/tokens/{{channel}}.json"}}}
    clock = Clock(time.time())
    rt = memory_runtime(make_settings(f"sqlite:///{tmp_path}/l.db", {"mx": channel}), clock=clock)
    try:
        cred = rt.credential("mx")
        first = cred.token()  # the configured token's expiry is unknown: renewed at once
        assert first.startswith("sbx-mx-access-") and sandbox.token_refreshes("matrix") == 1
        sandbox.expire_tokens("matrix")  # revoked early: a soft logout
        clock.advance(120)
        ann = service.submit(rt, {"kind": "incident", "title": "Chat is down", "body": "Looking."},
                             principal=service.SYSTEM).id
        from broadcaster.drain import drain

        drain(rt, "mx")
        [d] = rt.ledger.deliveries_of(ann)
        assert d.state == DeliveryState.DELIVERED, rt.ledger.events_of(d.id)
        assert len(sandbox.posts("matrix")) == 1 and sandbox.token_refreshes("matrix") == 2
        assert [r["status"] for r in sandbox.requests("matrix") if "/send/" in r["path"]] == [401, 200]
    finally:
        rt.close()
        rt.ledger.close()


def test_break_glass_renews_a_refused_token_without_our_redis(sandbox, tmp_path):
    """``post --direct`` runs when our own systems are down: it reads the token store, renews
    under its own process's lock, and stores the result for the workers to find later."""
    import yaml
    from click.testing import CliRunner

    from broadcaster.cli import main

    strict_x(sandbox)
    store = seed_store(tmp_path / "tokens" / "x-main.json", expires_in=3600)
    sandbox.expire_tokens("x", STORED_ACCESS)
    cfg = tmp_path / "b.yaml"
    cfg.write_text(yaml.safe_dump({"ledger": f"sqlite:///{tmp_path}/l.db", "broker": "redis://127.0.0.1:1/0",
                                   "channels": {"x-main": x_channel(sandbox, tmp_path)},
                                   "routes": {"incident": ["x-main"]}}))
    res = CliRunner().invoke(main, ["--config", str(cfg), "post", "--direct", "--kind", "incident", "--title",
                                    "Everything is down", "--journal", str(tmp_path / "j.jsonl")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert len(sandbox.posts("x")) == 1 and len(token_requests(sandbox)) == 1
    renewed = store.load()
    assert renewed is not None and renewed.access.reveal().startswith("sbx-x-access-")
    assert STORED_ACCESS not in res.output and renewed.access.reveal() not in res.output
