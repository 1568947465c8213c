"""Mattermost incoming-webhook stand-in: ``POST /hooks/{id}`` answers ``200 ok`` (text/plain).

The hook id is the credential (``tokens`` lists the valid ones; empty = any). Errors are
Mattermost's ``{"id", "message", "status_code"}``; an unknown hook answers 400
``web.incoming_webhook.invalid.app_error``; 429 carries ``X-Ratelimit-*`` (reset in seconds)
and ``Retry-After``. Posts longer than 16383 characters are refused.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .base import Call, Provider

MAX_TEXT = 16383


class Mattermost(Provider):
    name = "mattermost"
    limit, window = 10, 1.0

    def defaults(self) -> dict[str, Any]:
        return {"rate_limits": False}

    def routes(self):
        return [self.route("/hooks/{hook}", self.create, create=True)]

    def token(self, request: Request, data: Any) -> str | None:
        return str(request.path_params.get("hook") or "") or None

    def error(self, status: int, message: str, err_id: str = "api.context.invalid_param.app_error",
              **extra: Any) -> Response:
        headers = extra.pop("headers", None)
        return self.json({"id": err_id, "message": message, "detailed_error": "", "request_id": "sandbox",
                          "status_code": status}, status, headers=headers)

    def unauthorized(self) -> Response:
        return self.error(400, "Invalid webhook.", "web.incoming_webhook.invalid.app_error")

    def rate_limited(self, reset_at: float) -> Response:
        wait = max(1, round(reset_at - self.state.clock()))
        return self.error(429, "too many requests", "api.context.rate_limit.app_error",
                          headers={"Retry-After": str(wait), "X-Ratelimit-Reset": str(wait)})

    def rate_headers(self, limit: int, remaining: int, reset_at: float) -> dict[str, str]:
        return {"X-Ratelimit-Limit": str(limit), "X-Ratelimit-Remaining": str(remaining),
                "X-Ratelimit-Reset": str(max(0, round(reset_at - self.state.clock())))}

    def create(self, call: Call) -> Response:
        if not isinstance(call.data, dict):
            return self.error(400, "Unable to parse incoming data.", "web.incoming_webhook.parse.app_error")
        text = call.field("text")
        if not isinstance(text, str) or not text.strip():
            return self.error(400, "No text specified.", "web.incoming_webhook.text.app_error")
        if len(text) > MAX_TEXT:
            return self.error(400, "Message is too long.", "model.post.is_valid.msg.app_error")
        self.state.add_post(self.name, id=str(self.state.next_id()), text=text, username=call.field("username"),
                            channel_override=call.field("channel"), audience=call.params["hook"])
        return PlainTextResponse("ok")
