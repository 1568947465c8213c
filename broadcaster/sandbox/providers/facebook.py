"""Facebook Graph API stand-in for Page posts: errors are classified by ``error.code`` (not by
HTTP status), 506 on a consecutive duplicate, rate limits as codes with usage headers.

Tokens: ``POST /oauth/access_token`` (``grant_type=fb_exchange_token`` with the app's
``client_id``/``client_secret``) exchanges a user token for a long-lived one (60 days);
``GET /{page-id}?fields=access_token`` with a user token answers the Page token (one derived from
a long-lived user token does not expire); ``GET /debug_token?input_token=…`` with the app token
(``app-id|app-secret``) tells whether a token is valid and when it expires (``expires_at``, 0 for
never). Configured Page tokens may be given an expiry with the ``token_expires`` setting."""

from __future__ import annotations

import json
import math
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .base import Call, Provider, bearer

RATE_MESSAGES = {4: "(#4) Application request limit reached", 17: "(#17) User request limit reached",
                 32: "(#32) Page request limit reached", 613: "(#613) Calls to this api have exceeded the rate limit.",
                 80001: "(#80001) There have been too many calls to this Page account. Wait a bit and try again."}


class Facebook(Provider):
    name = "facebook"
    limit, window = 4800, 86400.0

    def defaults(self) -> dict[str, Any]:
        # app_id/app_secret None: any app; user_tokens []: any token may be exchanged;
        # token_expires: {configured token: epoch seconds} (others never expire)
        return {"page_name": "Sandbox Page", "app_id": None, "app_secret": None, "user_tokens": [],
                "user_ttl": 60 * 86400.0, "token_expires": {}}

    def reset(self) -> None:
        super().reset()
        self.posts: dict[str, dict[str, Any]] = {}
        self.last_message: dict[str, str] = {}  # page → last message (506 is about consecutive posts)
        self.rate_code = 32

    def routes(self):
        return [
            self.route("/{version}/oauth/access_token", self.exchange, ("POST", "GET"), auth=False),
            self.route("/{version}/debug_token", self.debug_token, ("GET",), auth=False),
            self.route("/{version}/{page_id}/feed", self.create, create=True),
            self.route("/{version}/{object_id}/comments", self.comment, create=True),
            self.route("/{version}/{object_id}", self.get, ("GET",)),
            self.route("/{version}/{object_id}", self.delete, ("DELETE",)),
        ]

    def token(self, request: Request, data: Any) -> str | None:
        form_token = data.get("access_token") if isinstance(data, dict) else None
        return request.query_params.get("access_token") or form_token or bearer(request)

    # -- dialect

    def graph_error(self, http: int, code: int, message: str, type_: str = "OAuthException", **extra: Any) -> Response:
        err = {"message": message, "type": type_, "code": code, **extra, "fbtrace_id": secrets.token_urlsafe(8)}
        return self.json({"error": err}, http)

    def unauthorized(self) -> Response:
        return self.graph_error(400, 190, "Error validating access token: Session has expired.", error_subcode=463)

    def server_error(self, status: int) -> Response:
        return self.graph_error(status, 2, "An unexpected error has occurred. Please retry your request later.", is_transient=True)

    def client_error(self, status: int) -> Response:
        return self.graph_error(status, 100, "(#100) Invalid parameter", is_transient=False)

    def duplicate(self) -> Response:
        return self.graph_error(400, 506, "Duplicate status message", error_subcode=1455006, is_transient=False,
                                error_user_title="Duplicate post",
                                error_user_msg="Duplicate posts can't be published consecutively. Change the content.")

    def fault_response(self, fault):
        if fault.mode == "429":
            self.rate_code = fault.code or 32
        return super().fault_response(fault)

    def rate_limited(self, reset_at: float) -> Response:
        code = self.rate_code
        minutes = max(1, math.ceil((reset_at - self.state.clock()) / 60))
        usage = {"sandbox": [{"type": "pages", "call_count": 100, "total_cputime": 100, "total_time": 100,
                              "estimated_time_to_regain_access": minutes}]}
        resp = self.graph_error(403 if code == 4 else 400, code, RATE_MESSAGES.get(code, f"(#{code}) rate limited"), is_transient=True)
        resp.headers["X-Business-Use-Case-Usage"] = json.dumps(usage, separators=(",", ":"))
        return resp

    def rate_headers(self, limit: int, remaining: int, reset_at: float) -> dict[str, str]:
        pct = 100 if remaining <= 0 else int(100 * (limit - remaining) / limit)
        return {"X-App-Usage": json.dumps({"call_count": pct, "total_cputime": 0, "total_time": 0}, separators=(",", ":"))}

    # -- endpoints

    def create(self, call: Call) -> Response:
        version = call.params["version"]
        if not (version.startswith("v") and version[1:].replace(".", "").isdigit()):
            return self.graph_error(400, 2500, "Unknown path components: /" + version)
        page = call.params["page_id"]
        message, link = call.field("message"), call.field("link")
        if not message and not link:
            return self.graph_error(400, 100, "(#100) Missing message or attachment")
        with self.state.lock:
            if message and self.last_message.get(page) == message:
                return self.duplicate()
            post_id = f"{page}_{int(self.state.clock() * 1000)}{self.state.next_id():04d}"
            self.posts[post_id] = {"message": message, "link": link, "page": page}
            self.last_message[page] = message or ""
        self.state.add_post(self.name, id=post_id, text=message or "", link=link)
        return self.json({"id": post_id})

    def comment(self, call: Call) -> Response:
        """A comment under a post (or under another comment): how the adapter threads updates."""
        parent = call.params["object_id"]
        message = call.field("message")
        if not message:
            return self.graph_error(400, 100, "(#100) Missing message")
        with self.state.lock:
            target = self.posts.get(parent)
            if target is None or target.get("deleted"):
                return self.graph_error(400, 100, f"Unsupported post request. Object with ID '{parent}' does not exist",
                                        "GraphMethodException", error_subcode=33)
            comment_id = f"{parent.split('_')[0]}_{int(self.state.clock() * 1000)}{self.state.next_id():04d}"
            self.posts[comment_id] = {"message": message, "page": target.get("page"), "parent": parent}
        self.state.add_post(self.name, id=comment_id, text=message, reply_to=parent)
        return self.json({"id": comment_id})

    # -- tokens

    def _app_ok(self, client_id: str | None, secret: str | None) -> bool:
        want_id, want_secret = self.settings.get("app_id"), self.settings.get("app_secret")
        if not client_id or not secret:
            return False
        return (want_id is None or str(want_id) == client_id) and (want_secret is None or want_secret == secret)

    def authorized(self, token: str | None) -> bool:
        expires = (self.settings.get("token_expires") or {}).get(token) if token else None
        if expires and float(expires) <= self.state.clock():
            return False
        return super().authorized(token)

    def _is_user_token(self, token: str | None) -> bool:
        if not token:
            return False
        info = self.grants.info(token)
        if info is not None:
            return info.get("type") == "USER" and self.grants.state(token) == "valid"
        seeds = self.settings.get("user_tokens") or []
        return token not in self.grants.expired and (not seeds or token in seeds)

    def exchange(self, call: Call) -> Response:
        data = call.data if isinstance(call.data, dict) and call.data else call.query
        if data.get("grant_type") != "fb_exchange_token":
            return self.graph_error(400, 100, "(#100) The sandbox serves grant_type=fb_exchange_token only")
        if not self._app_ok(data.get("client_id"), data.get("client_secret")):
            return self.graph_error(400, 1, "Error validating client secret.")
        if not self._is_user_token(data.get("fb_exchange_token")):
            return self.graph_error(400, 190, "Error validating access token: Session has expired.", error_subcode=463)
        ttl = float(self.settings["user_ttl"])
        token = self.grants.issue_access("sbx-fb-user", ttl, type="USER")
        self.grants.refreshes += 1
        return self.json({"access_token": token, "token_type": "bearer", "expires_in": int(ttl)})

    def debug_token(self, call: Call) -> Response:
        app = bearer(call.request) or call.query.get("access_token") or ""
        app_id, _, app_secret = app.partition("|")
        if not self._app_ok(app_id, app_secret):
            return self.graph_error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        token = call.query.get("input_token") or ""
        if not token:
            return self.graph_error(400, 100, "(#100) The parameter input_token is required")
        info = self.grants.info(token)
        now = self.state.clock()
        data: dict[str, Any] = {"app_id": app_id, "application": "Sandbox App",
                                "scopes": ["pages_manage_posts", "pages_read_engagement", "pages_show_list"]}
        if info is not None:
            expires = info.get("expires_at")
            data.update(type=info.get("type", "PAGE"), expires_at=int(expires or 0), issued_at=int(info["issued_at"]),
                        is_valid=self.grants.state(token) == "valid")
            if info.get("page"):
                data["profile_id"] = info["page"]
        else:
            expires = (self.settings.get("token_expires") or {}).get(token)
            known = self.authorized(token)
            valid = known and token not in self.grants.expired and (not expires or float(expires) > now)
            data.update(type="PAGE", expires_at=int(float(expires or 0)), is_valid=bool(valid))
        if not data["is_valid"]:
            data["error"] = {"code": 190, "subcode": 463, "message": "Session has expired"}
        return self.json({"data": data})

    def page_token(self, call: Call, page: str) -> Response:
        if not self._is_user_token(call.token):
            return self.graph_error(400, 190, "(#190) A user access token is required to read the Page token")
        token = self.grants.issue_access("sbx-fb-page", None, type="PAGE", page=page)
        return self.json({"access_token": token, "id": page})

    def get(self, call: Call) -> Response:
        oid = call.params["object_id"]
        if "access_token" in (call.query.get("fields") or "").split(","):
            return self.page_token(call, oid)
        if oid in ("me",) or "_" not in oid:
            return self.json({"id": oid if oid != "me" else "1000", "name": self.settings["page_name"]})
        post = self.posts.get(oid)
        if not post or post.get("deleted"):
            return self.graph_error(400, 100, f"Unsupported get request. Object with ID '{oid}' does not exist",
                                    "GraphMethodException", error_subcode=33)
        page, _, pid = oid.partition("_")
        return self.json({"id": oid, "message": post["message"], "permalink_url": f"https://www.facebook.com/{page}/posts/{pid}"})

    def delete(self, call: Call) -> Response:
        post = self.posts.get(call.params["object_id"])
        if not post or post.get("deleted"):
            return self.graph_error(400, 100, "(#100) This post could not be loaded", "GraphMethodException", error_subcode=33)
        post["deleted"] = True
        self.state.mark_deleted(self.name, call.params["object_id"])
        return self.json({"success": True})
