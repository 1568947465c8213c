"""Inbound alerts and their drafts.

``POST /api/v1/inbound/{source}/{receiver}`` needs no API token: each receiver checks its own
sender (``inbound/verify.py``) and answers 401 — having created nothing — when the proof is
missing or wrong. The drafts routes are ordinary token routes: list, show, edit, publish,
discard (publishing acts as the caller, through every check a normal post meets).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import Body, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..errors import InvalidRequest
from ..inbound import drafts
from ..inbound.signals import Ignored, read
from ..inbound.verify import verified
from ..ledger.drafts import DraftStore
from ..runtime import Runtime
from ..service import Principal
from .auth import principal
from .deps import make_router, runtime
from .errors import error_response
from .routes_announcements import ERRORS

log = logging.getLogger(__name__)
router = make_router(tags=["alerts"], responses=ERRORS)
PUBLIC_PATHS = ("/api/v1/inbound/",)

Who = Annotated[Principal, Depends(principal)]
Rt = Annotated[Runtime, Depends(runtime)]


def _handle(rt: Runtime, source: str, name: str, headers: Any, body: bytes) -> JSONResponse:
    rec = rt.settings.inbound.receivers.get(name)
    # an unknown receiver and a wrong credential look the same to the caller
    if rec is None or rec.source != source or not verified(rec, headers, body, rt.clock()):
        log.warning("inbound %s/%s: refused a request that did not prove its sender", source[:20], name[:64])
        # a 401 names a scheme (RFC 9110); one fixed answer, so it tells nothing about the receiver
        return error_response(401, "unauthorized", "this receiver could not verify the sender",
                              headers={"WWW-Authenticate": 'Bearer realm="inbound"'})
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not JSON", field="body") from None
    try:
        signal = read(source, payload)
    except Ignored as exc:
        return JSONResponse({"result": "ignored", "reason": str(exc)}, status_code=200)
    return JSONResponse(drafts.receive(rt, name, source, signal), status_code=202)


@router.post("/inbound/{source}/{receiver}", status_code=202, include_in_schema=True)
async def inbound(source: str, receiver: str, request: Request, rt: Rt) -> JSONResponse:
    """An alert from a monitoring tool (see docs/alerts.md for each tool's set-up)."""
    body = await request.body()  # already read and size-limited by the intake guard
    return await run_in_threadpool(_handle, rt, source, receiver, request.headers, body)


@router.get("/drafts")
def list_drafts(who: Who, rt: Rt, state: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Drafts made from alerts, newest first (``state``: draft, published, expired, discarded, closed)."""
    states = tuple(s for s in (state or "").split(",") if s)
    return {"items": [d.to_dict() for d in DraftStore(rt.ledger).page(states=states, limit=max(1, min(limit, 500)))]}


@router.get("/drafts/{draft_id}")
def show_draft(draft_id: str, who: Who, rt: Rt) -> dict[str, Any]:
    return DraftStore(rt.ledger).get(draft_id).to_dict()


@router.patch("/drafts/{draft_id}")
def edit_draft(draft_id: str, who: Who, rt: Rt, changes: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Change the proposed announcement (title, body, severity, components, channels, …) or ``resolve_body``."""
    return drafts.edit(rt, draft_id, dict(changes), principal=who).to_dict()


@router.post("/drafts/{draft_id}/publish", status_code=202)
def publish_draft(draft_id: str, who: Who, rt: Rt) -> dict[str, Any]:
    """Post the draft (or, once its alert resolved, its resolve update) — once, whoever asks first."""
    return drafts.publish(rt, draft_id, principal=who)


@router.post("/drafts/{draft_id}/discard")
def discard_draft(draft_id: str, who: Who, rt: Rt) -> dict[str, Any]:
    return drafts.discard(rt, draft_id, principal=who).to_dict()


