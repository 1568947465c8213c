"""A renewable credential with the X adapter against a fake X (token endpoint that rotates, posts
that want a live token): renewed ahead of expiry and after a 401 (one repeat, one post), written
to the store before its first use, adopted from another process, never shown."""

from __future__ import annotations

import base64
import logging
import threading
from urllib.parse import parse_qs

import httpx
import pytest

from broadcaster.channels.x import X, XSettings
from broadcaster.config import Secret
from broadcaster.errors import AuthError, TransientError
from broadcaster.models import Post
from broadcaster.oauth.credential import Credential
from broadcaster.oauth.lock import LocalRefreshLock, RedisRefreshLock
from broadcaster.oauth.providers import PROVIDERS
from broadcaster.oauth.store import MemoryTokenStore
from broadcaster.oauth.tokens import TokenSet, fingerprint
from tests.support.runtime import Clock

SEED_ACCESS, SEED_REFRESH = "seed-access-0000aaaa", "seed-refresh-0000bbbb"


class FakeX:
    """Issues two-hour tokens and single-use refresh tokens; posts need a live token."""

    def __init__(self, clock: Clock, store: MemoryTokenStore | None = None):
        self.clock = clock
        self.store = store
        self.live: dict[str, float] = {SEED_ACCESS: clock() + 60}
        self.refresh = {SEED_REFRESH}
        self.grants = 0
        self.posts: list[str] = []
        self.token_calls = 0
        self.token_down = False
        self.n = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/2/oauth2/token":
            self.token_calls += 1
            if self.token_down:
                return httpx.Response(503, json={"error": "temporarily_unavailable"})
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            if form.get("refresh_token") not in self.refresh or form.get("client_id") != "client-1":
                return httpx.Response(400, json={"error": "invalid_request",
                                                 "error_description": "Value passed for the token was invalid."})
            self.refresh.discard(form["refresh_token"])  # spent: X rotates refresh tokens
            self.n += 1
            access, refresh = f"access-{self.n}-zzzz", f"refresh-{self.n}-yyyy"
            self.live[access] = self.clock() + 7200
            self.refresh.add(refresh)
            self.grants += 1
            return httpx.Response(200, json={"token_type": "bearer", "expires_in": 7200, "access_token": access,
                                             "refresh_token": refresh, "scope": "tweet.write offline.access"})
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.live.get(token, 0) <= self.clock():
            return httpx.Response(401, json={"title": "Unauthorized", "status": 401, "detail": "Unauthorized"})
        if request.url.path == "/2/tweets":
            if self.store is not None:  # write before use: the token making this post is already stored
                assert self.store.tokens is not None and self.store.tokens.access.reveal() == token
            self.posts.append(token)
            return httpx.Response(201, json={"data": {"id": str(1000 + len(self.posts)), "text": "t"}})
        return httpx.Response(200, json={"data": {"id": "42", "username": "ops"}})


def settings(refresh_token: str = SEED_REFRESH, **refresh) -> XSettings:
    return XSettings(base_url="https://api.x.test", access_token=SEED_ACCESS,
                     refresh={"client_id": "client-1", "refresh_token": refresh_token,
                              "store": {"file": "/unused/{channel}.json"}, **refresh})


class Rig:
    def __init__(self, cfg: XSettings | None = None, store: MemoryTokenStore | None = None, lock=None):
        self.clock = Clock()
        self.store = store if store is not None else MemoryTokenStore()
        self.fake = FakeX(self.clock, self.store)
        self.http = httpx.Client(transport=httpx.MockTransport(self.fake))
        self.cfg = cfg or settings()
        self.lock = lock or LocalRefreshLock()
        self.cred = self.credential()
        self.x = X("x-main", self.cfg, http=self.http, clock=self.clock, credentials=lambda name: self.cred)

    def credential(self) -> Credential:
        """Another process's view of the same channel: same store and lock, its own memory."""
        return Credential("x-main", self.cfg, provider=PROVIDERS["x"], store=self.store, lock=self.lock,
                          http=self.http, clock=self.clock)

    def post(self, text: str = "hello") -> str:
        receipt = self.x.send(Post(channel="x-main", kind="incident", title="t", text=text, parts=(text,)), key="k")
        assert receipt.remote_id
        return receipt.remote_id


def test_the_configured_token_is_renewed_first_and_stored_before_it_posts():
    rig = Rig()
    rig.post()
    assert rig.fake.grants == 1 and rig.fake.posts == ["access-1-zzzz"]
    stored = rig.store.tokens
    assert stored is not None and stored.refresh == Secret("refresh-1-yyyy")
    assert stored.expires_at == rig.clock() + 7200 and stored.seed == fingerprint(Secret(SEED_REFRESH))
    rig.post("again")
    assert rig.fake.grants == 1  # not due: no second renewal


def test_renewed_ahead_of_expiry_with_the_rotated_refresh_token():
    rig = Rig()
    rig.post()
    rig.clock.advance(7200 - 1800 + 1)  # a quarter of two hours left, less a second
    rig.post("later")
    assert rig.fake.grants == 2 and rig.fake.posts[-1] == "access-2-zzzz"
    assert rig.store.tokens is not None and rig.store.tokens.refresh == Secret("refresh-2-yyyy")
    assert [s.refresh for s in rig.store.saves] == [Secret("refresh-1-yyyy"), Secret("refresh-2-yyyy")]


def test_a_margin_from_the_configuration():
    rig = Rig(settings(margin="10m"))
    rig.post()
    rig.clock.advance(7200 - 1800)  # 30 minutes left: fine with a 10-minute margin
    assert not rig.cred.renew_if_due()
    rig.clock.advance(1200 + 1)
    assert rig.cred.renew_if_due() and rig.fake.grants == 2


def test_a_refused_token_is_renewed_and_the_request_repeated_once():
    rig = Rig()
    rig.post()
    rig.clock.advance(120)
    rig.fake.live.clear()  # X revoked/expired every access token early
    rig.post("after refusal")
    assert rig.fake.grants == 2 and rig.fake.posts == ["access-1-zzzz", "access-2-zzzz"]


def test_a_token_refused_right_after_its_renewal_is_not_renewed_again():
    rig = Rig()
    rig.post()
    rig.fake.live.clear()
    with pytest.raises(AuthError, match="401"):
        rig.post("refused")
    assert rig.fake.grants == 1 and len(rig.fake.posts) == 1


def test_another_process_renewed_meanwhile_its_token_is_adopted_without_a_renewal():
    rig = Rig()
    rig.post()
    other = rig.credential()
    rig.clock.advance(7200 - 1000)
    assert other.renew_if_due() and rig.fake.grants == 2  # the other process renewed (refresh-1 is spent now)
    rig.fake.live.pop("access-1-zzzz")
    rig.clock.advance(120)
    rig.post("ours, with its token")  # our access-1 is refused: the stored access-2 is taken, no third grant
    assert rig.fake.grants == 2 and rig.fake.posts[-1] == "access-2-zzzz"


def test_a_due_renewal_adopts_the_stored_set_instead_of_spending_the_refresh_token_again():
    rig = Rig()
    rig.post()
    other = rig.credential()
    rig.clock.advance(7200 - 1000)
    other.renew_if_due()
    rig.post("due here too")  # due in our memory; under the lock the store shows the fresh set
    assert rig.fake.grants == 2 and rig.fake.posts[-1] == "access-2-zzzz"


def test_two_threads_due_at_once_renew_once():
    rig = Rig()
    start = threading.Barrier(8)
    errors: list[Exception] = []

    def use():
        start.wait()
        try:
            rig.cred.token()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and rig.fake.grants == 1


def test_a_store_that_refuses_the_write_keeps_the_new_set_and_writes_it_later(caplog):
    store = MemoryTokenStore()
    rig = Rig(store=store)
    rig.fake.store = None  # this test is about the failure path: the post may come first
    store.fail_saves = 2
    with caplog.at_level(logging.INFO):
        rig.post()  # renewed; the write fails; the new set is used (the old refresh token is spent anyway)
        assert store.tokens is None and "could not be stored" in caplog.text
        rig.post("next")  # the write fails again
        assert store.tokens is None
        rig.post("third")  # now it is stored
    assert store.tokens is not None and store.tokens.refresh == Secret("refresh-1-yyyy")
    assert rig.fake.grants == 1 and "stored now" in caplog.text


def test_a_failed_renewal_keeps_a_live_token_and_stops_at_an_expired_one(caplog):
    rig = Rig()
    rig.post()
    rig.fake.token_down = True
    rig.clock.advance(7200 - 1000)  # due, still valid for 1000 s
    rig.post("still works")
    assert rig.fake.token_calls == 2 and "renewing its token failed" in caplog.text
    rig.post("no new attempt within a minute")
    assert rig.fake.token_calls == 2
    rig.clock.advance(1001)  # expired now; the renewal still fails
    with pytest.raises(TransientError, match="token endpoint failed"):
        rig.post("cannot")
    rig.fake.token_down = False
    rig.clock.advance(61)
    rig.post("renewed again")
    assert rig.fake.posts[-1] == "access-2-zzzz"


def test_a_new_refresh_token_in_the_configuration_replaces_the_stored_set():
    rig = Rig()
    rig.post()
    rig.fake.refresh.add("reauthorized-refresh-cccc")
    again = Rig(settings(refresh_token="reauthorized-refresh-cccc"), store=rig.store)
    again.fake = rig.fake
    again.x = X("x-main", again.cfg, http=rig.http, clock=rig.clock, credentials=lambda name: again.cred)
    again.cred = Credential("x-main", again.cfg, provider=PROVIDERS["x"], store=rig.store, lock=rig.lock,
                            http=rig.http, clock=rig.clock)
    again.post("with the new authorization")
    assert rig.fake.grants == 2
    assert rig.store.tokens is not None and rig.store.tokens.seed == fingerprint(Secret("reauthorized-refresh-cccc"))


def test_a_refresh_token_that_stops_working_fails_the_check_and_later_the_post(caplog):
    rig = Rig()
    rig.fake.refresh.clear()  # the account revoked the app's refresh token; the seed token lives a minute more
    rig.fake.store = None  # the configured token is used as it is: nothing new to store
    rig.post()
    assert rig.fake.posts == [SEED_ACCESS] and "renewing its token failed" in caplog.text
    with pytest.raises(AuthError, match="authorize the app again"):
        rig.x.check()  # the readiness check says it now, before the token runs out
    rig.clock.advance(61)
    with pytest.raises(AuthError):
        rig.post("after the seed token ran out")


def test_no_token_in_logs_reprs_or_errors(caplog):
    rig = Rig()
    with caplog.at_level(logging.DEBUG):
        rig.post()
        rig.fake.live.clear()
        rig.clock.advance(120)
        rig.post("renewed after a refusal")
        rig.fake.refresh.clear()
        rig.fake.live.clear()
        rig.clock.advance(120)
        with pytest.raises(AuthError) as info:
            rig.post("cannot")
    everything = " ".join([caplog.text, repr(rig.cred), repr(rig.x), repr(rig.store.tokens), str(info.value),
                           str(info.value.response), repr(rig.cfg)])
    for secret in [SEED_ACCESS, SEED_REFRESH, "access-1-zzzz", "refresh-1-yyyy", "access-2-zzzz", "refresh-2-yyyy"]:
        assert secret not in everything
    assert rig.cred.secrets() >= {"access-1-zzzz", "refresh-2-yyyy"}  # what the engine redacts with


def test_check_reports_the_renewal_and_the_chain_end():
    rig = Rig()
    said = rig.x.check()
    assert "@ops" in said and "token renewed" in said and "current one expires" in said
    assert rig.x.credential_expires_at is None  # X names no end for its refresh tokens


def test_basic_auth_for_a_confidential_client_reaches_the_endpoint():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"access_token": "a", "expires_in": 7200, "refresh_token": "r"})

    cfg = settings(client_secret="shh-client-secret")
    store = MemoryTokenStore()
    cred = Credential("x-main", cfg, provider=PROVIDERS["x"], store=store, lock=LocalRefreshLock(),
                      http=httpx.Client(transport=httpx.MockTransport(handler)), clock=Clock())
    assert cred.token() == "a"
    assert seen[0].headers["authorization"] == "Basic " + base64.b64encode(b"client-1:shh-client-secret").decode()


# ---------------------------------------------------------------- without Redis (the lock itself: tests/contract)


def test_without_redis_nothing_is_renewed_and_the_stored_token_stays_in_use():
    class Down:
        def set(self, *a, **kw):
            raise ConnectionError("redis down")

    store = MemoryTokenStore(TokenSet(access=Secret("stored-access-1111"), refresh=Secret("r-1111"),
                                      expires_at=Clock()() + 600, obtained_at=Clock()() - 7000,
                                      checked_at=Clock()() - 7000, seed=fingerprint(Secret(SEED_REFRESH))))
    rig = Rig(store=store, lock=RedisRefreshLock(Down()))
    rig.fake.live["stored-access-1111"] = rig.clock() + 600
    rig.fake.store = None
    rig.post()
    assert rig.fake.posts == ["stored-access-1111"] and rig.fake.token_calls == 0
