"""The control API (``/_sandbox``): faults, recorded requests, created posts, counters,
settings, and a small HTML page. JSON in and out; the page's forms post form data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .faults import MODES, fault_from
from .providers.bluesky import as_bluesky
from .state import REPEAT_WINDOW

if TYPE_CHECKING:
    from .app import SandboxApp

SECRETISH = ("secret", "password", "token")
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
)


def problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "sandbox", "message": message}}, status_code=status)


def masked(settings: dict[str, Any]) -> dict[str, Any]:
    def hide(key: str, value: Any) -> Any:
        if not any(word in key for word in SECRETISH) or not value:
            return value
        return {k: "***" for k in value} if isinstance(value, dict) else "***"

    return {k: hide(k, v) for k, v in settings.items()}


async def body_of(request: Request) -> tuple[dict[str, Any] | None, bool]:
    """(data, came_from_a_form)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(raw.decode())), True
    try:
        data = await request.json() if raw else {}
    except ValueError:
        return None, False
    return (data if isinstance(data, dict) else None), False


def control_routes(app: SandboxApp) -> list[Route]:
    state = app.state

    def provider_arg(request: Request) -> str | None:
        return request.query_params.get("provider") or None

    async def index(request: Request) -> Response:
        page = _templates.get_template("index.html").render(
            providers=app.names, base=str(request.base_url).rstrip("/"), faults=[f.as_dict() for f in state.faults.listed()],
            counts=state.counts(), requests=list(reversed(state.requests()))[:100], modes=MODES,
            repeat_minutes=round(REPEAT_WINDOW / 60),
        )
        return HTMLResponse(page)

    async def faults(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([f.as_dict() for f in state.faults.listed(provider_arg(request))])
        if request.method == "DELETE":
            return JSONResponse({"cleared": state.faults.clear(provider_arg(request))})
        data, form = await body_of(request)
        if data is None:
            return problem(400, "send a JSON object")
        if data.get("mode") in ("clear", "none", "ok"):
            state.faults.clear(data.get("provider"))
            return RedirectResponse("/_sandbox/", 303) if form else JSONResponse({"cleared": True})
        try:
            fault = fault_from(data)
        except (TypeError, ValueError) as exc:
            return problem(422, str(exc))
        if fault.provider not in app.names:
            return problem(422, f"unknown provider {fault.provider!r}; known: {', '.join(app.names)}")
        state.faults.add(fault)
        return RedirectResponse("/_sandbox/", 303) if form else JSONResponse(fault.as_dict(), status_code=201)

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear_requests(provider_arg(request))
            return Response(status_code=204)
        return JSONResponse(state.requests(provider_arg(request)))

    async def posts(request: Request) -> Response:
        return JSONResponse(state.posts(provider_arg(request)))

    async def counts(request: Request) -> Response:
        return JSONResponse(state.counts())

    async def reset(request: Request) -> Response:
        state.reset()
        return Response(status_code=204)

    async def providers(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse({p: {"base_url": f"{base}/{p}", "settings": masked(app.provider(p).settings)} for p in app.providers})

    async def settings(request: Request) -> Response:
        prefix = request.path_params["provider"]
        if prefix not in app.providers:
            return problem(404, f"unknown provider {prefix!r}")
        if request.method == "GET":
            return JSONResponse(masked(app.provider(prefix).settings))
        data, _ = await body_of(request)
        if data is None:
            return problem(400, "send a JSON object")
        return JSONResponse(masked(app.configure(prefix, data)))

    async def expire_sessions(request: Request) -> Response:
        as_bluesky(app.provider("bluesky")).expire_sessions()
        return Response(status_code=204)

    return [
        Route("/", index, methods=["GET"]),
        Route("/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/requests", requests, methods=["GET", "DELETE"]),
        Route("/posts", posts, methods=["GET"]),
        Route("/counts", counts, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/providers", providers, methods=["GET"]),
        Route("/settings/{provider}", settings, methods=["GET", "PUT", "PATCH"]),
        Route("/bluesky/expire-sessions", expire_sessions, methods=["POST"]),
    ]
