"""Chat webhook stand-ins. The URL is the credential, so none of them reads an auth header.

- Slack: 200 ``ok`` as text/plain; plain-text error words; 429 + Retry-After.
- Discord: ``?wait=true`` → the message object, else 204; JSON errors with numeric codes;
  429 with JSON ``retry_after`` (float seconds) and ``X-RateLimit-*``.
- Teams (Workflows): 202 Accepted for an Adaptive Card message. A path with ``/webhookb2/`` is a
  retired Office 365 connector URL and answers 403 as those do now.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import PlainTextResponse, Response

from .base import Call, Provider


class Slack(Provider):
    name = "slack"
    limit, window = 60, 60.0  # about one message a second

    def routes(self):
        return [self.route("/services/{team}/{bot}/{secret}", self.post, create=True, auth=False)]

    def error(self, status: int, message: str, **extra: Any) -> Response:
        return PlainTextResponse(message, status_code=status, **extra)

    def unauthorized(self) -> Response:
        return self.error(403, "invalid_token")

    def server_error(self, status: int) -> Response:
        return self.error(status, "rollup_error")

    def client_error(self, status: int) -> Response:
        return self.error(status, {404: "no_service", 410: "channel_is_archived"}.get(status, "invalid_payload"))

    def duplicate(self) -> Response:
        return self.error(400, "invalid_payload")

    def rate_limited(self, reset_at: float) -> Response:
        return self.error(429, "rate_limited", headers={"Retry-After": str(max(1, round(reset_at - self.state.clock())))})

    def post(self, call: Call) -> Response:
        if not isinstance(call.data, dict):
            return self.error(400, "invalid_payload")
        if not call.field("text") and not call.field("blocks") and not call.field("attachments"):
            return self.error(400, "no_text")
        self.state.add_post(self.name, id=str(self.state.next_id()), text=str(call.field("text") or ""),
                            hook="/".join(call.params.values()), audience="/".join(call.params.values()))
        return PlainTextResponse("ok")


class Discord(Provider):
    name = "discord"
    limit, window = 5, 2.0  # per-webhook bucket as Discord reports it

    def defaults(self) -> dict[str, Any]:
        return {"rate_limits": False}

    def reset(self) -> None:
        super().reset()
        self.messages: dict[str, dict[str, Any]] = {}

    def routes(self):
        out = []
        for base in ("/api/webhooks/{hook}/{secret}", "/api/v{v:int}/webhooks/{hook}/{secret}"):
            out += [
                self.route(base, self.execute, create=True, auth=False),
                self.route(base, self.info, ("GET",), auth=False),
                self.route(base + "/messages/{mid}", self.delete_message, ("DELETE",), auth=False),
            ]
        return out

    def error(self, status: int, message: str, code: int = 0, **extra: Any) -> Response:
        return self.json({"message": message, "code": code}, status, **extra)

    def unauthorized(self) -> Response:
        return self.error(401, "Invalid Webhook Token", 50027)

    def server_error(self, status: int) -> Response:
        return self.error(status, "Internal Server Error" if status != 502 else "Gateway unavailable", 0)

    def client_error(self, status: int) -> Response:
        if status == 404:
            return self.error(404, "Unknown Webhook", 10015)
        return self.error(status, "Invalid Form Body", 50035)

    def duplicate(self) -> Response:
        return self.client_error(400)

    def rate_limited(self, reset_at: float) -> Response:
        wait = max(0.001, reset_at - self.state.clock())
        return self.json({"message": "You are being rate limited.", "retry_after": round(wait, 3), "global": False}, 429,
                         headers={"Retry-After": str(max(1, round(wait))), "X-RateLimit-Scope": "shared", "X-RateLimit-Global": "false"})

    def rate_headers(self, limit: int, remaining: int, reset_at: float) -> dict[str, str]:
        after = max(0.0, reset_at - self.state.clock())
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": f"{reset_at:.3f}",
                "X-RateLimit-Reset-After": f"{after:.3f}", "X-RateLimit-Bucket": "sandbox-webhook"}

    def execute(self, call: Call) -> Response:
        if not isinstance(call.data, dict):
            return self.error(400, "Invalid Form Body", 50035)
        content = call.field("content") or ""
        if not content and not call.field("embeds") and not call.field("components") and not call.field("poll"):
            return self.error(400, "Cannot send an empty message", 50006)
        if len(content) > 2000:
            return self.json({"message": "Invalid Form Body", "code": 50035, "errors": {"content": {"_errors": [
                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}}, 400)
        mid = str(1_200_000_000_000_000_000 + self.state.next_id())
        msg = {"id": mid, "type": 0, "content": content, "channel_id": "100000000000000001", "webhook_id": call.params["hook"],
               "author": {"id": call.params["hook"], "username": call.field("username") or "Sandbox hook", "bot": True},
               "embeds": call.field("embeds") or [], "timestamp": datetime.fromtimestamp(self.state.clock(), UTC).isoformat()}
        with self.state.lock:
            self.messages[mid] = msg
        self.state.add_post(self.name, id=mid, text=content, audience=call.params["hook"])
        if str(call.query.get("wait", "")).lower() == "true":
            return self.json(msg)
        return Response(status_code=204)

    def info(self, call: Call) -> Response:
        return self.json({"id": call.params["hook"], "type": 1, "name": "Sandbox hook", "channel_id": "100000000000000001",
                          "token": "***"})

    def delete_message(self, call: Call) -> Response:
        with self.state.lock:
            msg = self.messages.pop(call.params["mid"], None)
        if msg is None:
            return self.error(404, "Unknown Message", 10008)
        self.state.mark_deleted(self.name, call.params["mid"])
        return Response(status_code=204)


class Teams(Provider):
    name = "teams"
    limit, window = 4, 1.0

    def defaults(self) -> dict[str, Any]:
        return {"rate_limits": False}

    def routes(self):
        return [self.route("/{path:path}", self.post, create=True, auth=False)]

    def error(self, status: int, message: str, **extra: Any) -> Response:
        return self.json({"error": {"code": "SandboxError", "message": message}}, status, **extra)

    def post(self, call: Call) -> Response:
        if "webhookb2/" in call.params["path"]:
            return self.error(403, "Office 365 Connectors are retired; this webhook no longer accepts messages.")
        atts = call.field("attachments")
        if not isinstance(atts, list) or not atts or not all(isinstance(a, dict) and a.get("content") for a in atts):
            return self.error(400, "The request body must be a message with at least one attachment.")
        if call.field("type") != "message" or any(
                a.get("contentType") != "application/vnd.microsoft.card.adaptive"
                or a["content"].get("type") != "AdaptiveCard" for a in atts):
            return self.error(400, "Each attachment must be an Adaptive Card "
                                   "(application/vnd.microsoft.card.adaptive).")
        texts = [b.get("text", "") for a in atts for b in (a["content"].get("body") or []) if isinstance(b, dict)]
        self.state.add_post(self.name, id=str(self.state.next_id()), text="\n".join(t for t in texts if t), path=call.params["path"],
                            audience=call.params["path"])
        return Response(status_code=202)
