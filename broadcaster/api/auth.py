"""Who is calling: the token was already verified by the intake guard (``intake.py``), before
any body was read; routes only pick up the resulting :class:`Principal`.

The ``HTTPBearer`` dependency does no checking of its own: it is there so OpenAPI (``/docs``)
documents the scheme and offers an "Authorize" button. :func:`principal` does no I/O, so it is
``async def`` (no worker-thread hop per request).
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..service import Principal

_scheme = HTTPBearer(auto_error=False, description="an API token from `broadcaster tokens create`")


class Unauthenticated(Exception):
    """Raised if a route is reached without a verified token (a wiring mistake, answered 401)."""


async def principal(request: Request, _creds: HTTPAuthorizationCredentials | None = Depends(_scheme)) -> Principal:
    who = request.scope.get("state", {}).get("principal")
    if not isinstance(who, Principal):
        raise Unauthenticated()
    return who
