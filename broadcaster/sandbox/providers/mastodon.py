"""Mastodon stand-in: statuses with Idempotency-Key (1 h, per account), grapheme length with
URLs at a fixed weight, ``/api/v2/instance`` limits and ISO-8601 ``X-RateLimit-Reset``."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from ..textlen import mastodon_length
from .base import Call, Provider

IDEMPOTENCY_TTL = 3600.0
VISIBILITIES = {"public", "unlisted", "private", "direct"}


def iso(ts: float, micro: bool = False) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.isoformat(timespec="microseconds" if micro else "milliseconds").replace("+00:00", "Z")


class Mastodon(Provider):
    name = "mastodon"
    limit, window = 300, 300.0

    def defaults(self) -> dict[str, Any]:
        return {"max_characters": 500, "characters_reserved_per_url": 23, "domain": "mastodon.sandbox", "username": "sandbox"}

    def reset(self) -> None:
        super().reset()
        self.statuses: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[tuple[str, str], tuple[str, float]] = {}

    def routes(self):
        return [
            self.route("/api/v1/statuses", self.create, create=True),
            self.route("/api/v1/statuses/{id}", self.get, ("GET",)),
            self.route("/api/v1/statuses/{id}", self.delete, ("DELETE",)),
            self.route("/api/v1/accounts/verify_credentials", self.verify_credentials, ("GET",)),
            self.route("/api/v2/instance", self.instance, ("GET",), auth=False),
        ]

    # -- dialect

    def unauthorized(self) -> Response:
        return self.error(401, "The access token is invalid")

    def server_error(self, status: int) -> Response:
        return self.error(status, "There was a temporary problem serving your request, please try again")

    def client_error(self, status: int) -> Response:
        return self.error(status, "Validation failed")

    def duplicate(self) -> Response:
        return self.error(422, "Duplicate record")

    def rate_limited(self, reset_at: float) -> Response:
        return self.error(429, "Too many requests")  # no Retry-After: the reset header says when

    def rate_headers(self, limit: int, remaining: int, reset_at: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": iso(reset_at, micro=True)}

    # -- entities

    def account(self) -> dict[str, Any]:
        user, domain = self.settings["username"], self.settings["domain"]
        return {"id": "1", "username": user, "acct": user, "display_name": "Sandbox", "url": f"https://{domain}/@{user}"}

    def status(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        domain, user = self.settings["domain"], self.settings["username"]
        text = data["text"]
        return {
            "id": sid,
            "created_at": iso(data["created"]),
            "in_reply_to_id": data.get("in_reply_to_id"),
            "visibility": data.get("visibility", "public"),
            "spoiler_text": data.get("spoiler_text", ""),
            "language": data.get("language"),
            "uri": f"https://{domain}/users/{user}/statuses/{sid}",
            "url": f"https://{domain}/@{user}/{sid}",
            "content": "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p) or "",
            "account": self.account(),
        }

    # -- endpoints

    def create(self, call: Call) -> Response:
        if not isinstance(call.data, dict):
            return self.error(400, "Invalid JSON")
        key = call.request.headers.get("idempotency-key")
        now = self.state.clock()
        if key:
            with self.state.lock:
                seen = self.idempotency.get((call.token or "", key))
            if seen and seen[1] > now and seen[0] in self.statuses:
                return self.json(self.status(seen[0], self.statuses[seen[0]]))
        text = str(call.field("status") or "")
        spoiler = str(call.field("spoiler_text") or "")
        if not text.strip() and not call.field("media_ids") and not call.field("media_ids[]"):
            return self.error(422, "Validation failed: Text can't be blank")
        limit = int(self.settings["max_characters"])
        if mastodon_length(text, spoiler, int(self.settings["characters_reserved_per_url"])) > limit:
            return self.error(422, f"Validation failed: Text character limit of {limit} exceeded")
        visibility = call.field("visibility") or "public"
        if visibility not in VISIBILITIES:
            return self.error(422, "Validation failed: Visibility is not included in the list")
        reply_to = call.field("in_reply_to_id")
        if reply_to is not None:
            reply_to = str(reply_to)
            if reply_to not in self.statuses or self.statuses[reply_to].get("deleted"):
                return self.error(404, "Record not found")
        sid = str(int(now * 1000) * 65536 + self.state.next_id() % 65536)
        data = {"text": text, "spoiler_text": spoiler, "visibility": visibility, "in_reply_to_id": reply_to,
                "language": call.field("language"), "created": now}
        with self.state.lock:
            self.statuses[sid] = data
            if key:
                self.idempotency[(call.token or "", key)] = (sid, now + IDEMPOTENCY_TTL)
        self.state.add_post(self.name, id=sid, text=text, key=key, reply_to=reply_to)
        return self.json(self.status(sid, data))

    def get(self, call: Call) -> Response:
        data = self.statuses.get(call.params["id"])
        if not data or data.get("deleted"):
            return self.error(404, "Record not found")
        return self.json(self.status(call.params["id"], data))

    def delete(self, call: Call) -> Response:
        sid = call.params["id"]
        data = self.statuses.get(sid)
        if not data or data.get("deleted"):
            return self.error(404, "Record not found")
        data["deleted"] = True
        self.state.mark_deleted(self.name, sid)
        return self.json({**self.status(sid, data), "text": data["text"]})

    def verify_credentials(self, call: Call) -> Response:
        return self.json(self.account())

    def instance(self, call: Call) -> Response:
        return self.json({
            "domain": self.settings["domain"],
            "title": "Mastodon sandbox",
            "version": "4.3.0 (broadcaster sandbox)",
            "configuration": {"statuses": {
                "max_characters": int(self.settings["max_characters"]),
                "max_media_attachments": 4,
                "characters_reserved_per_url": int(self.settings["characters_reserved_per_url"]),
            }},
        })
