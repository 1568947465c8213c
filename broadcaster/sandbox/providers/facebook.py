"""Facebook Graph API stand-in for Page posts: errors are classified by ``error.code`` (not by
HTTP status), 506 on a consecutive duplicate, rate limits as codes with usage headers."""

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
        return {"page_name": "Sandbox Page"}

    def reset(self) -> None:
        super().reset()
        self.posts: dict[str, dict[str, Any]] = {}
        self.last_message: dict[str, str] = {}  # page → last message (506 is about consecutive posts)
        self.rate_code = 32

    def routes(self):
        return [
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

    def get(self, call: Call) -> Response:
        oid = call.params["object_id"]
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
