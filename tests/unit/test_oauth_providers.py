"""Each provider's token endpoint against a fake: the exact request (documented shape), the
answer read into a TokenSet, and every refusal as one of our errors without a token in it."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs

import httpx
import pytest

from broadcaster.channels.facebook import FacebookSettings
from broadcaster.channels.linkedin import LinkedInSettings
from broadcaster.channels.matrix import MatrixSettings
from broadcaster.channels.x import XSettings
from broadcaster.config import Secret
from broadcaster.errors import AuthError, PermanentError, RateLimited, TransientError
from broadcaster.oauth.providers import PROVIDERS
from broadcaster.oauth.tokens import TokenSet

NOW = 1_700_000_000.0
STORE = {"file": "/nonexistent/{channel}.json"}
OLD = TokenSet(access=Secret("old-access-token-1"), refresh=Secret("old-refresh-token-1"), seed="s")


def client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def form(request: httpx.Request) -> dict[str, str]:
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def x_settings(**refresh) -> XSettings:
    return XSettings(access_token="old-access-token-1", base_url="https://api.x.test",
                     refresh={"client_id": "client-1", "store": STORE, **refresh})


def test_x_public_client_posts_the_refresh_grant_with_its_client_id():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"token_type": "bearer", "expires_in": 7200, "access_token": "new-access-2",
                                         "scope": "tweet.write users.read tweet.read offline.access",
                                         "refresh_token": "new-refresh-2"})

    new = PROVIDERS["x"].renew(client(handler), x_settings(), OLD, now=NOW, margin=600, force=False)
    [req] = seen
    assert (req.method, str(req.url)) == ("POST", "https://api.x.test/2/oauth2/token")
    assert form(req) == {"grant_type": "refresh_token", "refresh_token": "old-refresh-token-1", "client_id": "client-1"}
    assert "authorization" not in req.headers
    assert new.access.reveal() == "new-access-2" and new.refresh is not None and new.refresh.reveal() == "new-refresh-2"
    assert (new.expires_at, new.obtained_at, new.checked_at, new.seed) == (NOW + 7200, NOW, NOW, "s")
    assert PROVIDERS["x"].rotates


def test_x_confidential_client_authenticates_with_basic():
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"access_token": "a2", "expires_in": 7200, "refresh_token": "r2"})

    PROVIDERS["x"].renew(client(handler), x_settings(client_secret="client-secret-9"), OLD, now=NOW, margin=1,
                         force=False)
    auth = seen[0].headers["authorization"]
    assert auth == "Basic " + base64.b64encode(b"client-1:client-secret-9").decode()
    assert "client_id" not in form(seen[0])


def test_linkedin_sends_client_credentials_and_keeps_the_refresh_tokens_life():
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"access_token": "li-new", "expires_in": 5184000,
                                         "refresh_token": "old-refresh-token-1",
                                         "refresh_token_expires_in": 25_000_000})

    cfg = LinkedInSettings(organization="2414183", access_token="old-access-token-1",
                           refresh={"client_id": "li-client", "client_secret": "li-secret", "store": STORE})
    new = PROVIDERS["linkedin"].renew(client(handler), cfg, OLD, now=NOW, margin=1, force=False)
    assert str(seen[0].url) == "https://www.linkedin.com/oauth/v2/accessToken"
    assert form(seen[0]) == {"grant_type": "refresh_token", "refresh_token": "old-refresh-token-1",
                             "client_id": "li-client", "client_secret": "li-secret"}
    assert new.expires_at == NOW + 5184000 and new.refresh_expires_at == NOW + 25_000_000
    assert not PROVIDERS["linkedin"].rotates


def test_matrix_posts_json_and_reads_milliseconds():
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"access_token": "mx-2", "refresh_token": "mx-r2", "expires_in_ms": 300_000})

    cfg = MatrixSettings(homeserver="https://matrix.example.test", access_token="old-access-token-1",
                         room_id="!room:example.test", refresh={"store": STORE})
    new = PROVIDERS["matrix"].renew(client(handler), cfg, OLD, now=NOW, margin=1, force=False)
    assert str(seen[0].url) == "https://matrix.example.test/_matrix/client/v3/refresh"
    assert json.loads(seen[0].content) == {"refresh_token": "old-refresh-token-1"}
    assert new.expires_at == NOW + 300 and new.refresh is not None and new.refresh.reveal() == "mx-r2"


class FakeGraph:
    """debug_token, the user-token exchange and the Page token read, as the Graph API answers them."""

    def __init__(self, page_expires: int = 0, valid: bool = True):
        self.page_expires, self.valid = page_expires, valid
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("/debug_token"):
            token = request.url.params["input_token"]
            expires = 0 if token == "page-new" else self.page_expires
            return httpx.Response(200, json={"data": {"app_id": "app-1", "type": "PAGE", "expires_at": expires,
                                                      "is_valid": self.valid or token == "page-new",
                                                      "profile_id": "1000001"}})
        if path.endswith("/oauth/access_token"):
            return httpx.Response(200, json={"access_token": "user-long-lived", "token_type": "bearer",
                                             "expires_in": 5183944})
        if path.endswith("/1000001"):
            return httpx.Response(200, json={"access_token": "page-new", "id": "1000001"})
        return httpx.Response(404)


def fb_settings() -> FacebookSettings:
    return FacebookSettings(page_id="1000001", access_token="old-access-token-1",
                            refresh={"client_id": "app-1", "client_secret": "app-secret-1", "store": STORE})


def test_facebook_only_asks_while_the_page_token_is_valid_and_not_expiring():
    fake = FakeGraph(page_expires=0)
    same = PROVIDERS["facebook"].renew(client(fake), fb_settings(), OLD, now=NOW, margin=86400, force=False)
    [req] = fake.requests
    assert req.method == "GET" and req.url.path == "/v19.0/debug_token"
    assert req.url.params["input_token"] == "old-access-token-1"
    assert req.headers["authorization"] == "Bearer app-1|app-secret-1"
    assert same.access == OLD.access and same.expires_at is None and same.checked_at == NOW


def test_facebook_exchanges_the_user_token_and_reads_a_new_page_token_when_expiring():
    fake = FakeGraph(page_expires=int(NOW + 3600))
    new = PROVIDERS["facebook"].renew(client(fake), fb_settings(), OLD, now=NOW, margin=86400, force=False)
    first, exchange, page, debug_new = fake.requests
    assert first.url.path == "/v19.0/debug_token"
    assert (exchange.method, exchange.url.path) == ("POST", "/v19.0/oauth/access_token")
    assert form(exchange) == {"grant_type": "fb_exchange_token", "client_id": "app-1",
                              "client_secret": "app-secret-1", "fb_exchange_token": "old-refresh-token-1"}
    assert "fb_exchange_token" not in str(exchange.url) and "client_secret" not in str(exchange.url)
    assert (page.method, page.url.path, page.url.params["fields"]) == ("GET", "/v19.0/1000001", "access_token")
    assert page.headers["authorization"] == "Bearer user-long-lived"
    assert debug_new.url.params["input_token"] == "page-new"
    assert new.access.reveal() == "page-new" and new.refresh is not None and new.refresh.reveal() == "user-long-lived"
    assert new.expires_at is None and new.refresh_expires_at == NOW + 5183944


def test_facebook_forced_renewal_skips_the_question():
    fake = FakeGraph(page_expires=0)
    new = PROVIDERS["facebook"].renew(client(fake), fb_settings(), OLD, now=NOW, margin=1, force=True)
    assert [r.url.path for r in fake.requests][:1] == ["/v19.0/oauth/access_token"]
    assert new.access.reveal() == "page-new"


def test_facebook_without_a_user_token_cannot_renew():
    fake = FakeGraph(valid=False)
    with pytest.raises(AuthError, match="no refresh token"):
        PROVIDERS["facebook"].renew(client(fake), fb_settings(), OLD.replace(refresh=None), now=NOW, margin=1,
                                    force=False)


@pytest.mark.parametrize("status,body,error", [
    (400, {"error": "invalid_request", "error_description": "Value passed for the token was invalid."}, AuthError),
    (401, {"error": "invalid_client", "error_description": "client old-refresh-token-1 unknown"}, AuthError),
    (429, {"error": "rate_limited"}, RateLimited),
    (503, {"error": "temporarily_unavailable"}, TransientError),
    (200, {"token_type": "bearer"}, TransientError),  # no access_token in a 200
    (200, "not json", TransientError),
])
def test_x_refusals_are_ours_and_never_quote_a_token(status, body, error):
    def handler(request):
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    with pytest.raises(error) as info:
        PROVIDERS["x"].renew(client(handler), x_settings(), OLD, now=NOW, margin=1, force=False)
    text = f"{info.value} {info.value.response or ''}"
    assert "old-refresh-token-1" not in text and "old-access-token-1" not in text
    if error is AuthError:
        assert "authorize the app again" in str(info.value)


def test_a_graph_throttle_is_a_rate_limit_not_a_refusal():
    def handler(request):
        return httpx.Response(400, json={"error": {"code": 4, "message": "(#4) Application request limit reached",
                                                   "type": "OAuthException"}})

    with pytest.raises(RateLimited):
        PROVIDERS["facebook"].renew(client(handler), fb_settings(), OLD, now=NOW, margin=1, force=True)


@pytest.mark.parametrize("exc,expected,words", [
    (httpx.ConnectError("refused"), TransientError, "was not sent"),
    (httpx.ReadTimeout("slow"), TransientError, "may have issued a new token"),
    (httpx.UnsupportedProtocol("ftp"), PermanentError, "token_url"),
])
def test_transport_failures_never_say_maybe_posted(exc, expected, words):
    from broadcaster.errors import AmbiguousDelivery

    def handler(request):
        raise exc

    with pytest.raises(expected) as info:
        PROVIDERS["x"].renew(client(handler), x_settings(), OLD, now=NOW, margin=1, force=False)
    assert not isinstance(info.value, AmbiguousDelivery) and words in str(info.value)


def test_token_url_overrides_and_defaults():
    assert PROVIDERS["x"].token_url(x_settings()) == "https://api.x.test/2/oauth2/token"
    assert PROVIDERS["x"].token_url(x_settings(token_url="https://auth.example.test/t")) == "https://auth.example.test/t"
    assert PROVIDERS["facebook"].token_url(fb_settings()) == "https://graph.facebook.com/v19.0/oauth/access_token"
