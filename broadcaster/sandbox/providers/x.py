"""X API v2 stand-in: ``POST /2/tweets`` with weighted 280 counting, 403 on identical recent
text (the only dedupe signal X gives), problem-JSON errors and epoch ``x-rate-limit-reset``;
``POST /2/oauth2/token`` renews a user token with a refresh token (``grant_type=refresh_token``;
``client_id`` in the form for a public client, HTTP Basic for a confidential one), issuing a
two-hour access token and a new refresh token — the one used is spent (X rotates them)."""

from __future__ import annotations

import base64
from typing import Any

from starlette.responses import Response

from ..textlen import x_weighted_length
from .base import Call, Provider

DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
FIELDS = {"text", "reply", "media", "poll", "quote_tweet_id", "reply_settings", "for_super_followers_only",
          "nullcast", "direct_message_deep_link", "geo", "card_uri", "community_id", "share_with_followers",
          "paid_partnership", "made_with_ai"}


class X(Provider):
    name = "x"
    limit, window = 100, 900.0  # POST /2/tweets per user per 15 min

    def defaults(self) -> dict[str, Any]:
        # clients: client_id → secret (None: a public client); empty → any client
        return {"duplicate_window": 86400.0, "username": "sandbox", "access_ttl": 7200.0, "refresh_tokens": [],
                "clients": {}}

    def reset(self) -> None:
        super().reset()
        self.tweets: dict[str, dict[str, Any]] = {}

    def routes(self):
        return [
            self.route("/2/tweets", self.create, create=True),
            self.route("/2/tweets/{id}", self.get, ("GET",)),
            self.route("/2/tweets/{id}", self.delete, ("DELETE",)),
            self.route("/2/users/me", self.me, ("GET",)),
            self.route("/2/oauth2/token", self.token_endpoint, auth=False),
        ]

    # -- dialect: problem JSON

    def problem(self, status: int, title: str, detail: str, type_: str = "about:blank", **extra: Any) -> Response:
        return self.json({"title": title, "detail": detail, "type": type_, "status": status, **extra}, status)

    def unauthorized(self) -> Response:
        return self.problem(401, "Unauthorized", "Unauthorized")

    def server_error(self, status: int) -> Response:
        return self.problem(status, "Internal Server Error", "Something went wrong. Wait and retry.")

    def client_error(self, status: int) -> Response:
        return self.invalid("the request was refused by the sandbox")

    def duplicate(self) -> Response:
        return self.problem(403, "Forbidden", DUPLICATE)

    def rate_limited(self, reset_at: float) -> Response:
        return self.problem(429, "Too Many Requests", "Too Many Requests", "https://api.twitter.com/2/problems/rate-limit-exceeded")

    def rate_headers(self, limit: int, remaining: int, reset_at: float) -> dict[str, str]:
        return {"x-rate-limit-limit": str(limit), "x-rate-limit-remaining": str(remaining), "x-rate-limit-reset": str(int(reset_at))}

    def invalid(self, message: str) -> Response:
        return self.problem(400, "Invalid Request", "One or more parameters to your request was invalid.",
                            "https://api.twitter.com/2/problems/invalid-request", errors=[{"message": message}])

    # -- endpoints

    def create(self, call: Call) -> Response:
        if not isinstance(call.data, dict):
            return self.invalid("the body must be a JSON object")
        unknown = set(call.data) - FIELDS
        if unknown:
            return self.invalid(f"The following properties are not allowed: {', '.join(sorted(unknown))}")
        text = call.field("text")
        if not isinstance(text, str) or (not text and not call.field("media")):
            return self.invalid("$.text: a non-empty text is required")
        if x_weighted_length(text) > 280:
            return self.invalid("$.text: Your Tweet text is too long (weighted length over 280).")
        reply_to = None
        reply = call.field("reply")
        if reply is not None:
            reply_to = str((reply or {}).get("in_reply_to_tweet_id") or "")
            if not reply_to.isdigit():
                return self.invalid("$.reply.in_reply_to_tweet_id: does not match ^[0-9]{1,19}$")
            if reply_to not in self.tweets or self.tweets[reply_to].get("deleted"):
                return self.problem(404, "Not Found Error", f"Could not find tweet with id: [{reply_to}].",
                                    "https://api.twitter.com/2/problems/resource-not-found")
        now = self.state.clock()
        window = float(self.settings["duplicate_window"])
        with self.state.lock:
            if any(t["text"] == text and not t.get("deleted") and now - t["created"] < window for t in self.tweets.values()):
                return self.duplicate()
            tid = str(1_800_000_000_000_000_000 + int(now * 1000) % 10**12 * 1000 + self.state.next_id() % 1000)
            self.tweets[tid] = {"text": text, "created": now, "reply_to": reply_to}
        self.state.add_post(self.name, id=tid, text=text, reply_to=reply_to)
        return self.json({"data": {"id": tid, "text": text, "edit_history_tweet_ids": [tid], "edit_history_post_ids": [tid]}}, 201)

    def get(self, call: Call) -> Response:
        tid = call.params["id"]
        tweet = self.tweets.get(tid)
        if not tweet or tweet.get("deleted"):
            return self.json({"errors": [{"value": tid, "detail": f"Could not find tweet with id: [{tid}].", "title": "Not Found Error",
                                          "resource_type": "tweet", "parameter": "id", "type": "https://api.twitter.com/2/problems/resource-not-found"}]})
        return self.json({"data": {"id": tid, "text": tweet["text"], "edit_history_tweet_ids": [tid]}})

    def delete(self, call: Call) -> Response:
        tweet = self.tweets.get(call.params["id"])
        if tweet and not tweet.get("deleted"):
            tweet["deleted"] = True
            self.state.mark_deleted(self.name, call.params["id"])
        return self.json({"data": {"deleted": True}})

    def oauth_error(self, error: str, description: str, status: int = 400) -> Response:
        return self.json({"error": error, "error_description": description}, status)

    def token_endpoint(self, call: Call) -> Response:
        if call.request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return self.oauth_error("invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        if call.field("grant_type") != "refresh_token":
            return self.oauth_error("unsupported_grant_type", "Only refresh_token is served by the sandbox")
        client, secret = call.field("client_id"), None
        basic = call.request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                return self.oauth_error("invalid_client", "Malformed Basic credentials", 401)
        clients = self.settings.get("clients") or {}
        if not client or (clients and (client not in clients or clients[client] != secret)):
            return self.oauth_error("invalid_client", "Missing or invalid client credentials", 401)
        taken = self.grants.take_refresh(call.field("refresh_token"), list(self.settings.get("refresh_tokens") or []),
                                         rotate=True)
        if taken is None:
            return self.oauth_error("invalid_request", "Value passed for the token was invalid.")
        ttl = float(self.settings["access_ttl"])
        access = self.grants.issue_access("sbx-x-access", ttl)
        refresh = self.grants.issue_refresh("sbx-x-refresh")
        return self.json({"token_type": "bearer", "expires_in": int(ttl), "access_token": access,
                          "scope": "tweet.write users.read tweet.read offline.access", "refresh_token": refresh})

    def me(self, call: Call) -> Response:
        return self.json({"data": {"id": "1000000001", "name": "Sandbox", "username": self.settings["username"]}})
