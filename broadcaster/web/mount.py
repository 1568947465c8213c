"""Serving the page beside the API: its routes, its sessions, its static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import approvals_page, drafts_page
from .routes import router
from .session import session_store

STATIC = Path(__file__).resolve().parent / "static"


def mount(app: FastAPI) -> None:
    """Add the page to an app built by ``api.app.create_api`` (it shares the app's runtime and
    token store; the API's intake guard reads ``app.state.sessions``)."""
    app.include_router(router)
    app.include_router(drafts_page.router)  # built on the page's helpers in routes.py
    app.include_router(approvals_page.router)
    app.state.sessions = session_store(app.state.runtime, app.state.tokens)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
