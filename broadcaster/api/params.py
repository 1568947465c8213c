"""Path and query values checked before any route runs: no control characters, ids in shape.

An id or a filter goes straight into a ``WHERE``; PostgreSQL refuses a NUL byte in any text
parameter, so ``/announcements/ann%00x`` or ``?status=%00`` used to become a database error
and a 500. Nothing legitimate puts a control character or a line break in a path or a query:

* :class:`CleanParams`, in front of every route, answers 422 naming the parameter for a bad
  query value or a bad character in an API path parameter (the name is found from the OpenAPI
  path templates), and 404 for a bad character in any other path (the web page's ids);
* ids in API paths are declared :data:`Id` (their characters and their column's length), so a
  malformed or over-long id is a 422 naming it too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Path
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..limits import ID, text_problem
from .errors import JSON_PREFIXES, error_response

#: the characters of every id this service makes (``ann_18c2f0a1b2c0001a3f9c2e1``), up to its column
ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
Id = Annotated[str, Path(max_length=ID, pattern=ID_PATTERN, description="an id as the API returned it")]


def query_problem(query_string: bytes) -> tuple[str, str] | None:
    """``(parameter, problem)`` for the first query value no route should see, else None."""
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        problem = text_problem(name, one_line=True)
        if problem:
            return "query", problem
        problem = text_problem(value, one_line=True)
        if problem:
            return name, problem
    return None


def _templates(app: Any) -> list[re.Pattern[str]]:
    """The app's API path templates as patterns with named groups (built once per app)."""
    cached = getattr(app.state, "param_templates", None)
    if cached is None:
        cached = []
        for path in app.openapi().get("paths", {}):
            if "{" in path:
                named = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
                cached.append(re.compile(f"^{named}$"))
        app.state.param_templates = cached
    return cached


def path_param(app: Any, path: str) -> str | None:
    """The name of the path parameter holding a bad character, if ``path`` is an API route's."""
    try:
        templates = _templates(app)
    except Exception:  # noqa: BLE001 - no OpenAPI document to read: the caller answers without a name
        return None
    for pattern in templates:
        m = pattern.match(path)
        if m:
            for name, value in m.groupdict().items():
                if text_problem(value, one_line=True):
                    return name
    return None


class CleanParams:
    """ASGI middleware: refuse control characters and line breaks in query values and paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        accept = dict(scope.get("headers") or ()).get(b"accept", b"").decode("latin-1")
        as_json = path.startswith(JSON_PREFIXES) or "application/json" in accept
        response: Response | None = None
        found = query_problem(scope.get("query_string") or b"")
        if found is not None:
            field, problem = found
            response = error_response(422, "invalid_request", f"{field}: {problem}", {"field": field}) if as_json \
                else PlainTextResponse(f"{field}: {problem}", status_code=422)
        elif text_problem(path, one_line=True):
            name = path_param(scope.get("app"), path) if path.startswith(JSON_PREFIXES) else None
            if name is not None:
                response = error_response(422, "invalid_request", f"{name}: {text_problem(path, one_line=True)}",
                                          {"field": name})
            else:
                response = error_response(404, "not_found", "no such page", {"field": "path"}) if as_json \
                    else PlainTextResponse("no such page", status_code=404)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)
