"""Twilio Messages API stand-in: ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form-encoded,
HTTP basic auth with the account SID and auth token) and the account resource for ``check``.

Numbers listed in the setting ``unsubscribed`` answer error 21610 (the recipient replied STOP),
numbers in ``invalid`` answer 21211. Bodies over 1600 characters answer 21617. Each accepted
message is one stored post addressed to its recipient (``rcpt_tos``), so the same text to two
people is two messages, and the same text to one person twice is a repeat.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...channels._sms import segments
from .base import Call, Provider

MAX_BODY = 1600


def basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class Twilio(Provider):
    name = "twilio"
    limit, window = 100, 1.0

    def defaults(self) -> dict[str, Any]:
        return {"rate_limits": False, "unsubscribed": [], "invalid": []}

    def routes(self):
        base = "/2010-04-01/Accounts/{sid}"
        return [
            self.route(base + "/Messages.json", self.create, create=True),
            self.route(base + ".json", self.account, ("GET",)),
        ]

    def token(self, request: Request, data: Any) -> str | None:
        creds = basic(request)
        if creds is None or creds[0] != request.path_params.get("sid"):
            return None
        return creds[1]

    # -- dialect

    def error(self, status: int, message: str, code: int = 0, **extra: Any) -> Response:
        headers = extra.pop("headers", None)
        return self.json({"code": code or None, "message": message, "status": status,
                          "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else None}, status,
                         headers=headers)

    def unauthorized(self) -> Response:
        return self.error(401, "Authenticate", 20003)

    def client_error(self, status: int) -> Response:
        return self.error(status, "The 'To' number is not a valid phone number.", 21211)

    def rate_limited(self, reset_at: float) -> Response:
        wait = max(1, round(reset_at - self.state.clock()))
        return self.error(429, "Too Many Requests", 20429, headers={"Retry-After": str(wait)})

    # -- endpoints

    def create(self, call: Call) -> Response:
        if not isinstance(call.data, dict) or call.request.headers.get("content-type", "").split(";")[0] != \
                "application/x-www-form-urlencoded":
            return self.error(400, "Request body must be form-encoded", 20001)
        to, body = str(call.field("To") or ""), str(call.field("Body") or "")
        if not call.field("From") and not call.field("MessagingServiceSid"):
            return self.error(400, "A 'From' phone number is required.", 21603)
        if not to.startswith("+") or to in (self.settings.get("invalid") or []):
            return self.error(400, f"The 'To' number {to} is not a valid phone number.", 21211)
        if to in (self.settings.get("unsubscribed") or []):
            return self.error(400, "Attempt to send to unsubscribed recipient", 21610)
        if not body:
            return self.error(400, "Message body is required.", 21602)
        if len(body) > MAX_BODY:
            return self.error(400, "The concatenated message body exceeds the 1600 character limit.", 21617)
        sid = f"SM{self.state.next_id():032x}"
        seg = segments(body)
        self.state.add_post(self.name, id=sid, text=body, rcpt_tos=[to], to=to, num_segments=seg.count,
                            encoding=seg.encoding)
        return self.json({"sid": sid, "account_sid": call.params["sid"], "to": to, "from": call.field("From"),
                          "messaging_service_sid": call.field("MessagingServiceSid"), "body": body,
                          "status": "queued", "num_segments": str(seg.count), "direction": "outbound-api",
                          "error_code": None, "error_message": None}, 201)

    def account(self, call: Call) -> Response:
        return self.json({"sid": call.params["sid"], "friendly_name": "Sandbox account", "status": "active",
                          "type": "Full"})
