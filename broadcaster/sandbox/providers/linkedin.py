"""LinkedIn Posts API stand-in: ``POST /rest/posts`` answers 201 with the new post's URN in the
``x-restli-id`` header and an empty body; it insists on the versioned headers, an organization
author, a PUBLIC main-feed post, and commentary in little text (an unescaped reserved character
is refused, as are more than 3000 characters). A recent identical commentary is refused with 422
naming the earlier post, which is how LinkedIn reports duplicates. ``POST /oauth/v2/accessToken``
(``grant_type=refresh_token`` with ``client_id`` and ``client_secret``) renews a 60-day access
token with a programmatic refresh token, which keeps its own one-year life (it does not rotate);
an expired access token is answered 401 ``EXPIRED_ACCESS_TOKEN``."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from starlette.responses import Response

from .base import Call, Provider

RESERVED = set("|{}@[]()<>#*_~")
MAX_COMMENTARY = 3000
FIELDS = {"author", "commentary", "visibility", "distribution", "lifecycleState", "isReshareDisabledByAuthor",
          "content", "contentLandingPage", "contentCallToActionLabel", "reshareContext", "adContext", "container"}


def unescaped_reserved(text: str) -> str | None:
    """The first reserved character not preceded by a backslash, or None."""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch in RESERVED:
            return ch
        i += 1
    return None


def plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


class LinkedIn(Provider):
    name = "linkedin"
    limit, window = 150, 86400.0  # a member's daily post quota (approximate)

    def defaults(self) -> dict[str, Any]:
        return {"organizations": {}, "duplicate_window": 86400.0, "min_version": "202401",
                "access_ttl": 60 * 86400.0, "refresh_ttl": 365 * 86400.0, "refresh_tokens": [], "clients": {}}

    def reset(self) -> None:
        super().reset()
        self.posts: dict[str, dict[str, Any]] = {}

    def routes(self):
        return [
            self.route("/rest/posts", self.create, create=True),
            self.route("/rest/posts/{urn}", self.get, ("GET",)),
            self.route("/rest/posts/{urn}", self.delete, ("DELETE",)),
            self.route("/rest/organizations/{id}", self.organization, ("GET",)),
            self.route("/oauth/v2/accessToken", self.token_endpoint, auth=False),
        ]

    # -- dialect: {"message", "status", "serviceErrorCode"?}

    def problem(self, status: int, message: str, **extra: Any) -> Response:
        return self.json({"message": message, "status": status, **extra}, status)

    def unauthorized(self) -> Response:
        return self.problem(401, "Invalid access token", serviceErrorCode=65600, code="INVALID_ACCESS_TOKEN")

    def expired_token(self) -> Response:
        return self.problem(401, "The token used in the request has expired", code="EXPIRED_ACCESS_TOKEN")

    def server_error(self, status: int) -> Response:
        return self.problem(status, "Internal Server Error")

    def client_error(self, status: int) -> Response:
        return self.problem(status, "Bad request")

    def duplicate(self) -> Response:
        return self.problem(422, "Content is a duplicate of urn:li:share:7000000000000000000")

    def rate_limited(self, reset_at: float) -> Response:
        wait = max(1, round(reset_at - self.state.clock()))
        return self.json({"message": "Resource level throttle APPLICATION DAY limit for calls to this resource is reached.",
                          "status": 429}, 429, headers={"Retry-After": str(wait)})

    def versioned(self, call: Call) -> Response | None:
        version = call.request.headers.get("linkedin-version", "")
        if not version:
            return self.problem(400, "A version must be present. Please specify a version by adding the "
                                     "LinkedIn-Version header.", code="VERSION_MISSING")
        if not re.fullmatch(r"\d{6}(\.\d{2})?", version) or version[:6] < str(self.settings["min_version"]):
            return self.problem(426, f"Requested version {version} is not active", code="NONEXISTENT_VERSION")
        if call.request.headers.get("x-restli-protocol-version") != "2.0.0":
            return self.problem(400, "X-Restli-Protocol-Version 2.0.0 is required")
        return None

    # -- endpoints

    def create(self, call: Call) -> Response:
        refused = self.versioned(call)
        if refused is not None:
            return refused
        if not isinstance(call.data, dict):
            return self.problem(400, "The request body must be a JSON object")
        unknown = set(call.data) - FIELDS
        if unknown:
            return self.problem(422, f"ERROR :: unrecognized field(s) {', '.join(sorted(unknown))}")
        author = str(call.field("author") or "")
        if not re.fullmatch(r"urn:li:(organization|person):\d+|urn:li:person:[A-Za-z0-9_-]+", author):
            return self.problem(422, "ERROR :: /author :: invalid URN syntax")
        orgs = self.settings.get("organizations") or {}
        if author.startswith("urn:li:organization:") and orgs and author.rsplit(":", 1)[1] not in orgs:
            return self.problem(403, f"Not enough permissions to post as {author}")
        if call.field("visibility") not in ("PUBLIC", "CONNECTIONS", "LOGGED_IN"):
            return self.problem(422, "ERROR :: /visibility :: missing or invalid")
        if call.field("lifecycleState") != "PUBLISHED":
            return self.problem(422, "ERROR :: /lifecycleState :: must be PUBLISHED")
        dist = call.field("distribution")
        if not isinstance(dist, dict) or dist.get("feedDistribution") not in ("MAIN_FEED", "NONE"):
            return self.problem(422, "ERROR :: /distribution/feedDistribution :: missing or invalid")
        commentary = call.field("commentary")
        if not isinstance(commentary, str) or not commentary.strip():
            return self.problem(422, "ERROR :: /commentary :: a text-only post needs commentary")
        bad = unescaped_reserved(commentary)
        if bad is not None:
            return self.problem(422, f"ERROR :: /commentary :: reserved character {bad!r} must be escaped")
        text = plain(commentary)
        if len(commentary) > MAX_COMMENTARY:
            return self.problem(422, f"ERROR :: /commentary :: length {len(commentary)} exceeds {MAX_COMMENTARY}")
        now = self.state.clock()
        with self.state.lock:
            for urn, p in self.posts.items():
                if p["author"] == author and p["text"] == text and not p.get("deleted") \
                        and now - p["created"] < float(self.settings["duplicate_window"]):
                    return self.problem(422, f"Content is a duplicate of {urn}")
            urn = f"urn:li:share:{7_000_000_000_000_000_000 + int(now * 1000) % 10**12 * 1000 + self.state.next_id() % 1000}"
            self.posts[urn] = {"author": author, "commentary": commentary, "text": text, "created": now}
        self.state.add_post(self.name, id=urn, text=text, author=author)
        return Response(status_code=201, headers={"x-restli-id": urn, "x-linkedin-id": urn})

    def get(self, call: Call) -> Response:
        refused = self.versioned(call)
        if refused is not None:
            return refused
        urn = unquote(call.params["urn"])
        p = self.posts.get(urn)
        if not p or p.get("deleted"):
            return self.problem(404, f"Post {urn} not found")
        return self.json({"id": urn, "author": p["author"], "commentary": p["commentary"], "visibility": "PUBLIC",
                          "lifecycleState": "PUBLISHED"})

    def delete(self, call: Call) -> Response:
        refused = self.versioned(call)
        if refused is not None:
            return refused
        urn = unquote(call.params["urn"])
        if not urn.startswith("urn:li:"):
            return self.problem(400, "The post id must be a URL-encoded URN")
        p = self.posts.get(urn)
        if p and not p.get("deleted"):
            p["deleted"] = True
            self.state.mark_deleted(self.name, urn)
        return Response(status_code=204)

    def token_endpoint(self, call: Call) -> Response:
        def refused(error: str, description: str, status: int = 400) -> Response:
            return self.json({"error": error, "error_description": description}, status)

        if call.field("grant_type") != "refresh_token":
            return refused("unsupported_grant_type", "The sandbox serves grant_type=refresh_token only")
        client, secret = call.field("client_id"), call.field("client_secret")
        clients = self.settings.get("clients") or {}
        if not client or not secret or (clients and clients.get(client) != secret):
            return refused("invalid_client", "Client authentication failed", 401)
        token = call.field("refresh_token")
        taken = self.grants.take_refresh(token, list(self.settings.get("refresh_tokens") or []), rotate=False)
        if taken is None:
            return refused("invalid_request", "The provided authorization grant or refresh token is invalid, "
                                              "expired or revoked")
        now = self.state.clock()
        with self.grants.lock:
            record = self.grants.refresh[token]
            if record.get("expires_at") is None:
                record["expires_at"] = now + float(self.settings["refresh_ttl"])
            refresh_left = int(record["expires_at"] - now)
        ttl = float(self.settings["access_ttl"])
        access = self.grants.issue_access("sbx-li-access", ttl)
        return self.json({"access_token": access, "expires_in": int(ttl), "refresh_token": token,
                          "refresh_token_expires_in": refresh_left, "scope": "w_organization_social"})

    def organization(self, call: Call) -> Response:
        refused = self.versioned(call)
        if refused is not None:
            return refused
        org = call.params["id"]
        names = self.settings.get("organizations") or {}
        return self.json({"id": int(org) if org.isdigit() else org, "localizedName": names.get(org, "Sandbox Org"),
                          "vanityName": "sandbox"})
