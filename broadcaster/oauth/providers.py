"""Each provider's renewal: the token endpoint's request and answer, in the documented shapes.

- **X** — ``POST {base_url}/2/oauth2/token`` (form ``grant_type=refresh_token``,
  ``refresh_token``, and ``client_id`` for a public client; a confidential client authenticates
  with HTTP Basic ``client_id:client_secret``) → ``{token_type, expires_in, access_token, scope,
  refresh_token}``. Access tokens live two hours; each refresh token is good for one use (it
  rotates).
- **LinkedIn** — ``POST https://www.linkedin.com/oauth/v2/accessToken`` (form
  ``grant_type=refresh_token``, ``refresh_token``, ``client_id``, ``client_secret``) →
  ``{access_token, expires_in, refresh_token, refresh_token_expires_in}``. Access tokens live 60
  days; the refresh token keeps its original one-year life and does not rotate.
- **Facebook** — a Page token is derived from a Page admin's user token: the user token is
  exchanged for a long-lived one (``POST {graph_url}/oauth/access_token``, form
  ``grant_type=fb_exchange_token``, ``client_id``, ``client_secret``, ``fb_exchange_token``) →
  ``{access_token, token_type, expires_in}``; then ``GET {graph_url}/{page-id}?fields=access_token``
  with it → ``{access_token, id}`` (a Page token from a long-lived user token does not expire).
  ``GET {graph_url}/debug_token?input_token=…`` with the app token (``app-id|app-secret``) tells
  whether a token is valid and when it expires (``data.expires_at``, 0 for never) — so a renewal
  that is not forced first asks, and only exchanges when the Page token is invalid or expiring.
  (``input_token`` is a query parameter by the endpoint's definition; the request goes to the
  Graph API over TLS and its URL is never logged.)
- **Matrix** — ``POST {homeserver}/_matrix/client/v3/refresh`` ``{"refresh_token"}`` →
  ``{access_token, refresh_token, expires_in_ms}``; the refresh token rotates.

Every failure is one of our :class:`~broadcaster.errors.DeliveryError` kinds, never "may have
been sent" (nothing was posted): a refusal of the refresh credential is an :class:`AuthError`
that says to authorize again; a network failure or provider error is a :class:`TransientError`.
No message ever carries a token: a token endpoint's answer is never quoted, only its ``error``
code and a redacted description.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from ..channels import _http
from ..config import Secret, redact
from ..errors import AmbiguousDelivery, AuthError, DeliveryError, PermanentError, RateLimited, TransientError
from .tokens import TokenSet

#: Graph API error codes that mean "too many calls", whatever the HTTP status
GRAPH_THROTTLED = frozenset({4, 17, 32, 341, 613, 80001})


class Provider:
    kind: ClassVar[str] = ""
    #: each refresh token is good for one use (a lost answer loses the chain)
    rotates: ClassVar[bool] = False

    def token_url(self, cfg: Any) -> str:
        raise NotImplementedError

    def renew(self, http: httpx.Client, cfg: Any, tokens: TokenSet, *, now: float, margin: float,
              force: bool) -> TokenSet:
        """A renewed set (or ``tokens`` with its expiry learnt, where the provider can tell that
        no renewal is needed yet and ``force`` is false)."""
        raise NotImplementedError


# ---------------------------------------------------------------- shared pieces


def _exchange(http: httpx.Client, method: str, url: str, what: str, **kw: Any) -> httpx.Response:
    """One request to a token endpoint. Failing to reach it is transient (nothing was posted);
    an answer lost on the way says that the refresh credential may have been spent."""
    try:
        return http.request(method, url, **kw)
    except httpx.HTTPError as exc:
        mapped = _http.map_transport_error(exc, what)
        if isinstance(mapped, AmbiguousDelivery):
            raise TransientError(f"{what}: {type(exc).__name__}; the provider may have issued a new token that was "
                                 "not received — if the next renewal is refused, authorize again") from exc
        if isinstance(mapped, PermanentError):
            raise PermanentError(f"{what}: {type(exc).__name__} (check refresh.token_url)") from exc
        raise TransientError(str(mapped)) from exc


def _oauth_error(response: httpx.Response, what: str, secrets: set[str]) -> DeliveryError:
    """An OAuth 2.0 error answer (``{error, error_description}``) as one of ours."""
    found = _http.json_or_none(response)
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    code = data.get("error") or data.get("errcode") or data.get("serviceErrorCode") or ""
    if isinstance(code, dict):  # Graph API: {"error": {"code", "message"}}
        code = code.get("code") or ""
    said = data.get("error_description") or data.get("message") or data.get("error") or ""
    said = redact(" ".join(str(said if not isinstance(said, dict) else said.get("message", "")).split())[:160],
                  secrets) or ""
    label = f"{what}: HTTP {response.status_code}" + (f" {code}" if code else "") + (f" ({said})" if said else "")
    status = response.status_code
    graph: dict[str, Any] = data["error"] if isinstance(data.get("error"), dict) else {}
    if status == 429 or graph.get("code") in GRAPH_THROTTLED:
        wait = _http.parse_retry_after(response.headers.get("retry-after"))
        return RateLimited(f"{label}: rate limited", retry_after=wait, status=status)
    if status in (408, 425) or status >= 500 or graph.get("is_transient") is True:
        return TransientError(f"{label}: the token endpoint failed; will try again", status=status)
    return AuthError(f"{label}: the refresh credential was refused — authorize the app again and configure "
                     "the new refresh token", status=status)


def _ask(http: httpx.Client, method: str, url: str, what: str, secrets: set[str], **kw: Any) -> dict[str, Any]:
    """A token endpoint's JSON answer (build → one request → classify → parse): an error answer
    raised as one of ours with ``secrets`` kept out of its message."""
    resp = _exchange(http, method, url, what, **kw)
    if not 200 <= resp.status_code < 300:
        raise _oauth_error(resp, what, secrets)
    return _json(resp, what)


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    data = _http.json_or_none(response)
    if not isinstance(data, dict):
        raise TransientError(f"{what}: the token endpoint answered HTTP {response.status_code} without JSON",
                             status=response.status_code)
    return data


def _token(data: dict[str, Any], key: str, what: str) -> Secret:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise TransientError(f"{what}: the answer has no {key}")
    return Secret(value)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        n = float(value)
    except ValueError:
        return None
    return n if n > 0 else None


def oauth2_answer(data: dict[str, Any], old: TokenSet, *, now: float, what: str) -> TokenSet:
    """The standard ``{access_token, expires_in, refresh_token?, refresh_token_expires_in?}``."""
    access = _token(data, "access_token", what)
    refresh = Secret(data["refresh_token"]) if isinstance(data.get("refresh_token"), str) and data["refresh_token"] \
        else old.refresh
    lives = _seconds(data.get("expires_in"))
    refresh_lives = _seconds(data.get("refresh_token_expires_in"))
    return TokenSet(access=access, refresh=refresh, expires_at=now + lives if lives else None,
                    refresh_expires_at=now + refresh_lives if refresh_lives else old.refresh_expires_at,
                    obtained_at=now, checked_at=now, seed=old.seed)


def _needs_refresh_token(tokens: TokenSet, what: str) -> Secret:
    if tokens.refresh is None or not tokens.refresh.reveal():
        raise AuthError(f"{what}: no refresh token is configured or stored — authorize the app and set "
                        "refresh.refresh_token")
    return tokens.refresh


# ---------------------------------------------------------------- the providers


class XProvider(Provider):
    kind = "x"
    rotates = True

    def token_url(self, cfg: Any) -> str:
        return cfg.refresh.token_url or f"{cfg.base_url.rstrip('/')}/2/oauth2/token"

    def renew(self, http, cfg, tokens, *, now, margin, force):
        what = "X token refresh"
        refresh = _needs_refresh_token(tokens, what)
        form = {"grant_type": "refresh_token", "refresh_token": refresh.reveal()}
        auth = None
        if cfg.refresh.client_secret is not None:
            auth = httpx.BasicAuth(cfg.refresh.client_id, cfg.refresh.client_secret.reveal())
        else:
            form["client_id"] = cfg.refresh.client_id
        secrets = tokens.secrets()
        answer = _ask(http, "POST", self.token_url(cfg), what, secrets, data=form, auth=auth)
        return oauth2_answer(answer, tokens, now=now, what=what)


class LinkedInProvider(Provider):
    kind = "linkedin"

    def token_url(self, cfg: Any) -> str:
        return cfg.refresh.token_url or "https://www.linkedin.com/oauth/v2/accessToken"

    def renew(self, http, cfg, tokens, *, now, margin, force):
        what = "LinkedIn token refresh"
        refresh = _needs_refresh_token(tokens, what)
        form = {"grant_type": "refresh_token", "refresh_token": refresh.reveal(),
                "client_id": cfg.refresh.client_id, "client_secret": cfg.refresh.client_secret.reveal()}
        secrets = tokens.secrets()
        answer = _ask(http, "POST", self.token_url(cfg), what, secrets, data=form)
        return oauth2_answer(answer, tokens, now=now, what=what)


class MatrixProvider(Provider):
    kind = "matrix"
    rotates = True

    def token_url(self, cfg: Any) -> str:
        return cfg.refresh.token_url or f"{cfg.homeserver.rstrip('/')}/_matrix/client/v3/refresh"

    def renew(self, http, cfg, tokens, *, now, margin, force):
        what = "Matrix token refresh"
        refresh = _needs_refresh_token(tokens, what)
        secrets = tokens.secrets()
        data = _ask(http, "POST", self.token_url(cfg), what, secrets, json={"refresh_token": refresh.reveal()})
        ms = _seconds(data.get("expires_in_ms"))
        answer = {**data, "expires_in": ms / 1000.0 if ms else None}
        return oauth2_answer(answer, tokens, now=now, what=what)


class FacebookProvider(Provider):
    kind = "facebook"

    def token_url(self, cfg: Any) -> str:
        return cfg.refresh.token_url or f"{cfg.graph_url.rstrip('/')}/oauth/access_token"

    def _graph(self, cfg: Any) -> str:
        return cfg.graph_url.rstrip("/")

    def debug(self, http: httpx.Client, cfg: Any, token: Secret, secrets: set[str]) -> dict[str, Any]:
        """``debug_token``'s ``data`` for ``token`` (asked with the app token)."""
        what = "Facebook debug_token"
        app = f"{cfg.refresh.client_id}|{cfg.refresh.client_secret.reveal()}"
        data = _ask(http, "GET", f"{self._graph(cfg)}/debug_token", what, secrets | {app},
                    params={"input_token": token.reveal()}, headers={"Authorization": f"Bearer {app}"}).get("data")
        if not isinstance(data, dict):
            raise TransientError(f"{what}: the answer has no data")
        return data

    @staticmethod
    def _expiry(data: dict[str, Any]) -> float | None:
        value = _seconds(data.get("expires_at"))
        return value  # 0 (never) → None

    def renew(self, http, cfg, tokens, *, now, margin, force):
        secrets = tokens.secrets() | {cfg.refresh.client_secret.reveal()}
        if not force:
            info = self.debug(http, cfg, tokens.access, secrets)
            expires = self._expiry(info)
            if info.get("is_valid") is True and (expires is None or expires - now > margin):
                return tokens.replace(expires_at=expires, checked_at=now)
        what = "Facebook token exchange"
        user = _needs_refresh_token(tokens, what)
        form = {"grant_type": "fb_exchange_token", "client_id": cfg.refresh.client_id,
                "client_secret": cfg.refresh.client_secret.reveal(), "fb_exchange_token": user.reveal()}
        data = _ask(http, "POST", self.token_url(cfg), what, secrets, data=form)
        long_lived = _token(data, "access_token", what)
        lives = _seconds(data.get("expires_in"))
        what = f"Facebook page token of {cfg.page_id}"
        secrets |= {long_lived.reveal()}
        page = _ask(http, "GET", f"{self._graph(cfg)}/{quote(cfg.page_id, safe='')}", what, secrets,
                    params={"fields": "access_token"},
                    headers={"Authorization": f"Bearer {long_lived.reveal()}"}).get("access_token")
        if not isinstance(page, str) or not page:
            raise AuthError(f"{what}: no Page token in the answer — the user must be an admin of the Page and "
                            "grant pages_manage_posts")
        page_token = Secret(page)
        expires = None
        try:
            expires = self._expiry(self.debug(http, cfg, page_token, secrets | {page}))
        except TransientError:
            pass  # the new token works; its expiry is learnt next time
        return TokenSet(access=page_token, refresh=long_lived, expires_at=expires,
                        refresh_expires_at=now + lives if lives else None, obtained_at=now, checked_at=now,
                        seed=tokens.seed)


PROVIDERS: dict[str, Provider] = {p.kind: p for p in (XProvider(), LinkedInProvider(), FacebookProvider(),
                                                       MatrixProvider())}
