"""Matrix homeserver stand-in (client-server API v3): send with transaction ids, redact, whoami.

Transaction ids are remembered per access token, as the spec requires: a repeated
``PUT …/send/{type}/{txnId}`` answers with the event it made the first time and makes no new
one — so a send whose answer was lost (``accept_then_drop``) and is repeated yields one event.
Errors are ``{"errcode", "error"}``; a 429 is ``M_LIMIT_EXCEEDED`` with ``retry_after_ms``.
``POST /refresh`` renews an access token with a refresh token (spec v1.3), which rotates; an
expired access token is answered 401 ``M_UNKNOWN_TOKEN`` with ``soft_logout: true``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from .base import Call, Provider

MAX_EVENT = 65_536


class Matrix(Provider):
    name = "matrix"
    limit, window = 10, 1.0

    def defaults(self) -> dict[str, Any]:
        return {"rate_limits": False, "user_id": "@status:sandbox.test", "rooms": [],  # rooms: joined ([] = any)
                "access_ttl": 300.0, "refresh_tokens": []}

    def reset(self) -> None:
        super().reset()
        self.events: dict[str, dict[str, Any]] = {}
        self.txns: dict[tuple[str, str, str], str] = {}

    def routes(self):
        base = "/_matrix/client/v3"
        return [
            self.route(base + "/rooms/{room}/send/{etype}/{txn}", self.send, ("PUT",), create=True),
            self.route(base + "/rooms/{room}/redact/{event}/{txn}", self.redact, ("PUT",)),
            self.route(base + "/account/whoami", self.whoami, ("GET",)),
            self.route(base + "/refresh", self.refresh, auth=False),
        ]

    # -- dialect

    def error(self, status: int, message: str, errcode: str = "M_UNKNOWN", **extra: Any) -> Response:
        headers = extra.pop("headers", None)
        return self.json({"errcode": errcode, "error": message, **extra}, status, headers=headers)

    def unauthorized(self) -> Response:
        return self.error(401, "Unknown access token", "M_UNKNOWN_TOKEN", soft_logout=False)

    def expired_token(self) -> Response:
        return self.error(401, "Access token has expired", "M_UNKNOWN_TOKEN", soft_logout=True)

    def client_error(self, status: int) -> Response:
        if status == 403:
            return self.error(403, "User not in room", "M_FORBIDDEN")
        return self.error(status, "Bad request", "M_BAD_JSON" if status == 400 else "M_UNRECOGNIZED")

    def duplicate(self) -> Response:
        return self.error(400, "Duplicate transaction", "M_BAD_JSON")

    def rate_limited(self, reset_at: float) -> Response:
        wait_ms = max(1, round((reset_at - self.state.clock()) * 1000))
        return self.error(429, "Too Many Requests", "M_LIMIT_EXCEEDED", retry_after_ms=wait_ms,
                          headers={"Retry-After": str(max(1, round(wait_ms / 1000)))})

    # -- endpoints

    def _room_ok(self, room: str) -> bool:
        rooms = self.settings.get("rooms") or []
        return not rooms or room in rooms

    def send(self, call: Call) -> Response:
        room, etype, txn = call.params["room"], call.params["etype"], call.params["txn"]
        token = call.token or ""
        with self.state.lock:
            seen = self.txns.get((token, room, txn))
        if seen is not None:
            return self.json({"event_id": seen})
        if not self._room_ok(room):
            return self.error(403, "User not in room", "M_FORBIDDEN")
        if not isinstance(call.data, dict):
            return self.error(400, "Content not JSON.", "M_NOT_JSON")
        if len(call.body) > MAX_EVENT:
            return self.error(413, "event too large", "M_TOO_LARGE")
        content = call.data
        if etype == "m.room.message" and (not isinstance(content.get("body"), str) or not content.get("msgtype")):
            return self.error(400, "m.room.message needs body and msgtype", "M_BAD_JSON")
        found = content.get("m.relates_to")
        relates: dict[str, Any] = found if isinstance(found, dict) else {}
        thread = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        if thread is not None and thread not in self.events:
            return self.error(400, "thread root not found", "M_INVALID_PARAM")
        with self.state.lock:
            event_id = f"${self.state.next_id():08d}sandbox"
            self.events[event_id] = {"room": room, "type": etype, "content": content, "token": token}
            self.txns[(token, room, txn)] = event_id
        self.state.add_post(self.name, id=event_id, text=str(content.get("body") or ""), key=txn, reply_to=thread,
                            room=room, audience=room, content=json.loads(json.dumps(content)))
        return self.json({"event_id": event_id})

    def redact(self, call: Call) -> Response:
        room, event_id, txn = call.params["room"], call.params["event"], call.params["txn"]
        token = call.token or ""
        with self.state.lock:
            seen = self.txns.get((token, room, txn))
            if seen is not None:
                return self.json({"event_id": seen})
            event = self.events.get(event_id)
            if event is None or event["room"] != room:
                return self.error(404, "Event not found", "M_NOT_FOUND")
            redaction = f"${self.state.next_id():08d}redaction"
            self.txns[(token, room, txn)] = redaction
            event["content"] = {}
        self.state.mark_deleted(self.name, event_id)
        return self.json({"event_id": redaction})

    def refresh(self, call: Call) -> Response:
        token = call.field("refresh_token")
        if not isinstance(token, str) or not token:
            return self.error(400, "refresh_token is required", "M_MISSING_PARAM")
        if self.grants.take_refresh(token, list(self.settings.get("refresh_tokens") or []), rotate=True) is None:
            return self.error(401, "Unknown refresh token", "M_UNKNOWN_TOKEN", soft_logout=False)
        ttl = float(self.settings["access_ttl"])
        return self.json({"access_token": self.grants.issue_access("sbx-mx-access", ttl),
                          "refresh_token": self.grants.issue_refresh("sbx-mx-refresh"),
                          "expires_in_ms": int(ttl * 1000)})

    def whoami(self, call: Call) -> Response:
        return self.json({"user_id": self.settings["user_id"], "device_id": "SANDBOX"})
