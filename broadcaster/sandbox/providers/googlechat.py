"""Google Chat incoming-webhook stand-in: ``POST /v1/spaces/{space}/messages?key=…&token=…``.

The ``key`` and ``token`` query parameters are the credential (any non-empty pair, or the
``tokens`` setting's list for ``token``). A ``thread.threadKey`` puts the message in that key's
thread: with ``messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`` an existing thread is
replied to, otherwise every message starts its own thread (as Google Chat does). Errors are
Google's ``{"error": {"code", "message", "status"}}``; 429 is ``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .base import Call, Provider

MAX_TEXT = 4096
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


class GoogleChat(Provider):
    name = "googlechat"
    limit, window = 60, 60.0  # about one message a second per space

    def defaults(self) -> dict[str, Any]:
        return {"rate_limits": False}

    def reset(self) -> None:
        super().reset()
        self.threads: dict[tuple[str, str], str] = {}

    def routes(self):
        return [self.route("/v1/spaces/{space}/messages", self.create, create=True)]

    def token(self, request: Request, data: Any) -> str | None:
        q = request.query_params
        return q.get("token") if q.get("key") else None

    def error(self, status: int, message: str, **extra: Any) -> Response:
        headers = extra.pop("headers", None)
        return self.json({"error": {"code": status, "message": message, "status": STATUS.get(status, "UNKNOWN")}},
                         status, headers=headers)

    def unauthorized(self) -> Response:
        return self.error(401, "Request had invalid authentication credentials.")

    def rate_limited(self, reset_at: float) -> Response:
        wait = max(1, round(reset_at - self.state.clock()))
        return self.error(429, "Resource has been exhausted (e.g. check quota).", headers={"Retry-After": str(wait)})

    def create(self, call: Call) -> Response:
        if not isinstance(call.data, dict):
            return self.error(400, "Invalid JSON payload received.")
        text = call.field("text")
        if not isinstance(text, str) or not text.strip():
            return self.error(400, "Message cannot be empty.")
        if len(text) > MAX_TEXT:
            return self.error(400, f"Message text is longer than {MAX_TEXT} characters.")
        space = call.params["space"]
        thread = call.field("thread") if isinstance(call.field("thread"), dict) else {}
        key = (thread or {}).get("threadKey")
        reply = call.query.get("messageReplyOption") == "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
        n = self.state.next_id()
        with self.state.lock:
            existing = self.threads.get((space, key)) if key else None
            thread_name = existing if existing and reply else f"spaces/{space}/threads/t{n}"
            if key and not existing:
                self.threads[(space, key)] = thread_name
        name = f"spaces/{space}/messages/m{n}"
        self.state.add_post(self.name, id=name, text=text, thread_key=key, reply_to=existing if reply else None,
                            thread=thread_name, audience=space)
        created = datetime.fromtimestamp(self.state.clock(), UTC).isoformat().replace("+00:00", "Z")
        return self.json({"name": name, "sender": {"name": "users/webhook", "type": "BOT"}, "text": text,
                          "createTime": created, "thread": {"name": thread_name, "threadKey": key},
                          "space": {"name": f"spaces/{space}", "type": "ROOM"}})
