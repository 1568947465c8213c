"""``/docs``: Swagger UI served from this process, not from a CDN.

FastAPI's default page pulls its JavaScript and CSS from a public CDN, so on an air-gapped
network — or during the very outage this tool is for — the API docs render blank. The assets
come from the ``swagger-ui-bundle-v2`` distribution (Swagger UI 5, which reads the OpenAPI 3.1
that FastAPI writes) and are mounted under ``/docs/assets``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def assets_dir() -> Path:
    """Where the installed Swagger UI files are (an ImportError names the missing distribution)."""
    try:
        from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - a broken install, not a runtime condition
        raise ImportError("the API docs need the 'swagger-ui-bundle-v2' distribution "
                          "(a dependency of broadcaster: reinstall it)") from exc
    return Path(str(swagger_ui_path))


def install(app: FastAPI, *, path: str = "/docs") -> None:
    """Serve Swagger UI at ``path`` with every asset from this process (create the app with
    ``docs_url=None`` so FastAPI's CDN page is not registered too)."""
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} — API docs"

    @app.get(path, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=title,
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")
