"""A scripted provider for httpx.MockTransport: the far side of every webhook in unit tests."""

from __future__ import annotations

import httpx


class Provider:
    """Scripted replies per path (a status code, a response, or an exception to raise — a
    ``BaseException`` stands for a worker killed mid-send); every request recorded; 200 once a
    path's script runs out."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.script: dict[str, list] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.script.get(request.url.path) or []
        reply = queue.pop(0) if queue else 200
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return httpx.Response(reply, json={"ok": reply < 300})

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.url.path == path)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]
