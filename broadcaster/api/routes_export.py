"""Data export (admin), open incidents, and cancelling a maintenance window.

``GET /export`` streams the whole ledger as JSON Lines (see ``broadcaster/export.py``);
``GET /export/subscribers.csv`` the subscribers as CSV; ``GET /incidents?open=true`` the
incidents still open; ``POST /maintenance/{id}/cancel`` cancels a window and tells every channel.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import export, lifecycle
from ..requests import Reason
from ..runtime import Runtime
from ..schemas import AnnouncementPage, ErrorOut, announcement_out
from ..service import Principal
from .auth import principal
from .deps import runtime
from .params import Id

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 404, 422, 429, 503)}
router = APIRouter(responses=ERRORS)

Who = Annotated[Principal, Depends(principal)]
Rt = Annotated[Runtime, Depends(runtime)]


@router.get("/export", tags=["export"], response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
def export_all(who: Who, rt: Rt):
    """Everything — announcements, updates, deliveries with their attempts, subscribers, audit
    log — as JSON Lines, streamed (admin only). ``broadcaster import`` restores it."""
    who.check_admin("exporting the ledger")
    return StreamingResponse(export.export_lines(rt.ledger), media_type="application/x-ndjson",
                             headers={"Content-Disposition": 'attachment; filename="broadcaster-export.jsonl"',
                                      "Cache-Control": "no-store"})


@router.get("/export/subscribers.csv", tags=["export"], response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
def export_subscribers(who: Who, rt: Rt, list: str | None = Query(None, max_length=100)):
    """Subscribers as CSV (admin only); ``broadcaster subscribers import`` reads it back."""
    who.check_admin("exporting subscribers")
    return StreamingResponse(export.subscriber_csv_lines(rt.ledger, list_name=list), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="subscribers.csv"',
                                      "Cache-Control": "no-store"})


@router.get("/incidents", tags=["announcements"], response_model=AnnouncementPage)
def incidents(who: Who, rt: Rt, open: bool = Query(True, description="only incidents not yet resolved"),
              limit: int = Query(100, ge=1, le=500)):
    """Incidents, newest first; with ``open=true`` (the default) only those not resolved or retracted."""
    items = lifecycle.open_incidents(rt.ledger, limit=limit) if open else \
        rt.ledger.list_announcements(kind="incident", limit=limit)
    deliveries = rt.ledger.deliveries_for([a.id for a in items])
    return AnnouncementPage(items=[announcement_out(a, deliveries[a.id]) for a in items], next=None)


class CancelWindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: Reason = ""


class CancelWindowOut(BaseModel):
    id: str
    status: str
    told_channels: int = Field(description="channels that get the 'cancelled' update")
    cancelled_deliveries: int = Field(description="deliveries stopped before they were published")


@router.post("/maintenance/{ann_id}/cancel", tags=["announcements"], response_model=CancelWindowOut)
def cancel_window(ann_id: Id, who: Who, rt: Rt, body: CancelWindowIn | None = None):
    """Cancel a maintenance window: every channel that has it gets a threaded 'cancelled'
    update; if it was not published yet, it is simply stopped. Repeating it changes nothing."""
    return CancelWindowOut(**lifecycle.cancel_window(rt, ann_id, principal=who, reason=body.reason if body else ""))
