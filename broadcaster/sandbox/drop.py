"""Closing a connection without an answer, which ASGI itself cannot express.

An endpoint marks ``scope["sandbox"]["drop"]``; this wrapper then swallows the response and
closes the socket. Under uvicorn the transport is reached through the server's bound ``send``
(uvicorn-specific, checked at run time); elsewhere (TestClient, ``httpx.ASGITransport``) the
wrapper raises ``httpx.RemoteProtocolError``, which is what a real client would have seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def transport_of(send: Any) -> Any:
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    return transport if transport is not None and hasattr(transport, "close") else None


class DropConnections:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        flags: dict[str, Any] = {}
        scope = dict(scope, sandbox=flags)

        async def guarded_send(message: dict) -> None:
            if not flags.get("drop"):
                await send(message)

        await self.app(scope, receive, guarded_send)
        if not flags.get("drop"):
            return
        transport = transport_of(send)
        if transport is None:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        transport.close()
        await asyncio.sleep(0.05)  # let uvicorn see connection_lost before the app returns
