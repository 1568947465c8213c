"""Generic Standard Webhooks receiver at ``/webhook/{name}``.

Records every delivery, treats ``webhook-id`` as its idempotency key (a repeat is answered 200
but creates nothing), and, when a secret is configured for ``name``, checks the signature and
the timestamp tolerance with ``broadcaster.channels.webhook.verify``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from .base import Call, Provider

TOLERANCE = 300.0  # seconds either side, as the spec suggests


class Webhook(Provider):
    name = "webhook"
    limit, window = 1000, 60.0

    def defaults(self) -> dict[str, Any]:
        return {"secrets": {}, "rate_limits": False}

    def reset(self) -> None:
        super().reset()
        self.seen: dict[tuple[str, str], str] = {}

    def routes(self):
        return [self.route("/{hook}", self.receive, create=True, auth=False)]

    def unauthorized(self) -> Response:
        return self.error(401, "invalid signature")

    def duplicate(self) -> Response:
        return self.json({"received": True, "duplicate": True})

    def receive(self, call: Call) -> Response:
        hook = call.params["hook"]
        headers = call.request.headers
        msg_id = headers.get("webhook-id")
        secret = (self.settings.get("secrets") or {}).get(hook)
        if secret:
            problem = self._verify(secret, call)
            if problem:
                call.record["outcome"] = problem
                return self.error(401, problem)
        if msg_id:
            with self.state.lock:
                first = (hook, msg_id) not in self.seen
                self.seen.setdefault((hook, msg_id), msg_id)
            if not first:
                call.record["outcome"] = "duplicate webhook-id"
                return self.duplicate()
        data = call.data if isinstance(call.data, dict) else {}
        nested = data.get("data")
        inner = nested if isinstance(nested, dict) else {}
        text = str(inner.get("text") or data.get("text") or "")
        self.state.add_post(self.name, id=msg_id or f"anon-{self.state.next_id()}", text=text, key=msg_id, hook=hook, audience=hook,
                            event=data.get("type"), signed=bool(secret))
        return self.json({"received": True, "duplicate": False})

    def _verify(self, secret: str, call: Call) -> str | None:
        from ...channels.webhook import verify  # the project's reference check

        h = call.request.headers
        if not all(h.get(k) for k in ("webhook-id", "webhook-timestamp", "webhook-signature")):
            return "missing webhook-id, webhook-timestamp or webhook-signature"
        try:
            stamp = int(h["webhook-timestamp"])
        except ValueError:
            return "webhook-timestamp is not an integer"
        if abs(self.state.clock() - stamp) > TOLERANCE:
            return "webhook-timestamp outside the tolerance"
        headers = {k: h[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        try:
            ok = verify(secret, headers, call.body)
        except (ValueError, TypeError):
            ok = False
        return None if ok else "invalid signature"
