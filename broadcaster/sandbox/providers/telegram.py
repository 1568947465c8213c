"""Telegram Bot API stand-in: ``/bot<token>/sendMessage``, ``deleteMessage`` and ``getMe``.

The token is part of the path (that is where the Bot API takes it). Answers are the Bot API's
envelope: ``{"ok": true, "result": …}`` or ``{"ok": false, "error_code", "description",
"parameters"}``; a 429 carries ``parameters.retry_after`` in seconds. Texts are checked as the
real parser would: HTML mode must parse (only entities and a few tags), and the parsed text may
hold at most 4096 UTF-16 code units. The stored post text is the parsed (visible) text.
"""

from __future__ import annotations

import html
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .base import Call, Provider

MAX_TEXT = 4096
#: what Telegram's HTML mode accepts; anything else that looks like a tag fails to parse
_TAG = re.compile(r"</?(b|strong|i|em|u|ins|s|strike|del|a|code|pre|blockquote|tg-spoiler|span)(\s[^>]*)?>")


def parsed_text(text: str) -> str | None:
    """The visible text of an HTML-mode message, or None when Telegram could not parse it."""
    stripped = _TAG.sub("", text)
    if "<" in stripped or ">" in stripped:
        return None
    if re.search(r"&(?!(amp|lt|gt|quot|#\d+|#x[0-9a-fA-F]+);)", stripped):
        return None
    return html.unescape(stripped)


class Telegram(Provider):
    name = "telegram"
    limit, window = 20, 60.0  # about 20 messages a minute into one group or channel

    def defaults(self) -> dict[str, Any]:
        return {"bot_username": "sandbox_bot", "chats": []}  # chats: allowed chat ids ([] = any)

    def reset(self) -> None:
        super().reset()
        self.messages: dict[tuple[str, int], dict[str, Any]] = {}
        self._next = 0

    def routes(self):
        return [
            self.route("/bot{token}/sendMessage", self.send_message, create=True),
            self.route("/bot{token}/deleteMessage", self.delete_message),
            self.route("/bot{token}/getMe", self.get_me, ("GET", "POST")),
        ]

    def token(self, request: Request, data: Any) -> str | None:
        return str(request.path_params.get("token") or "") or None

    # -- dialect

    def error(self, status: int, message: str, **extra: Any) -> Response:
        headers = extra.pop("headers", None)
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": message}
        if extra:
            body["parameters"] = extra
        return self.json(body, status, headers=headers)

    def unauthorized(self) -> Response:
        return self.error(401, "Unauthorized")

    def server_error(self, status: int) -> Response:
        return self.error(status, "Internal Server Error" if status != 502 else "Bad Gateway")

    def client_error(self, status: int) -> Response:
        if status == 403:
            return self.error(403, "Forbidden: bot is not a member of the channel chat")
        return self.error(status, "Bad Request: chat not found")

    def rate_limited(self, reset_at: float) -> Response:
        wait = max(1, round(reset_at - self.state.clock()))
        return self.error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)

    # -- endpoints

    def _chat_ok(self, chat: str) -> bool:
        allowed = [str(c) for c in self.settings.get("chats") or []]
        return not allowed or chat in allowed

    def send_message(self, call: Call) -> Response:
        if not isinstance(call.data, dict):
            return self.error(400, "Bad Request: invalid JSON")
        chat = str(call.field("chat_id") or "")
        if not chat or not self._chat_ok(chat):
            return self.error(400, "Bad Request: chat not found")
        raw = str(call.field("text") or "")
        text = parsed_text(raw) if call.field("parse_mode") == "HTML" else raw
        if text is None:
            return self.error(400, "Bad Request: can't parse entities: unsupported start tag")
        if not text.strip():
            return self.error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > MAX_TEXT:
            return self.error(400, "Bad Request: message is too long")
        reply = call.field("reply_parameters") or {}
        parent = reply.get("message_id") if isinstance(reply, dict) else None
        lenient = isinstance(reply, dict) and reply.get("allow_sending_without_reply")
        if parent is not None and (chat, int(parent)) not in self.messages and not lenient:
            return self.error(400, "Bad Request: message to be replied not found")
        with self.state.lock:
            self._next += 1
            mid = self._next
            msg = {"message_id": mid, "date": int(self.state.clock()), "text": text,
                   "chat": {"id": chat, "type": "channel", "username": chat.lstrip("@")}}
            if parent is not None and (chat, int(parent)) in self.messages:
                msg["reply_to_message"] = {"message_id": int(parent)}
            self.messages[(chat, mid)] = msg
        self.state.add_post(self.name, id=str(mid), text=text, reply_to=None if parent is None else str(parent),
                            chat=chat, audience=chat)
        return self.json({"ok": True, "result": msg})

    def delete_message(self, call: Call) -> Response:
        chat, mid = str(call.field("chat_id") or ""), call.field("message_id")
        with self.state.lock:
            msg = self.messages.pop((chat, int(mid or 0)), None)
        if msg is None:
            return self.error(400, "Bad Request: message to delete not found")
        self.state.mark_deleted(self.name, str(mid))
        return self.json({"ok": True, "result": True})

    def get_me(self, call: Call) -> Response:
        return self.json({"ok": True, "result": {"id": 4242, "is_bot": True, "first_name": "Sandbox",
                                                 "username": self.settings["bot_username"]}})
