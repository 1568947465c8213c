"""Announcements: submit, list, show, follow up, retract, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Depends, Query, Request, Response

from .. import service
from ..errors import InvalidRequest
from ..limits import ID, STATUS
from ..models import KINDS, DeliveryState
from ..runtime import Runtime
from ..schemas import (
    AnnouncementDetail,
    AnnouncementPage,
    CancelOut,
    ErrorOut,
    RetractIn,
    RetractOut,
    UpdateAccepted,
    announcement_detail,
    announcement_out,
    delivery_out,
)
from ..service import AnnouncementIn, Principal, UpdateIn
from . import idempotency
from .auth import principal
from .deps import idempotency_key, location, make_router, parse_time, runtime
from .params import Id

ERRORS = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 422: {"model": ErrorOut},
          429: {"model": ErrorOut}, 503: {"model": ErrorOut}}
router = make_router(tags=["announcements"], responses=ERRORS)

Who = Annotated[Principal, Depends(principal)]
Rt = Annotated[Runtime, Depends(runtime)]
Key = Annotated[str | None, Depends(idempotency_key)]


@router.post("/announcements", status_code=202, response_model=AnnouncementDetail,
             responses={200: {"model": AnnouncementDetail, "description": "a replay of an earlier Idempotency-Key"}})
def submit(body: AnnouncementIn, request: Request, who: Who, rt: Rt, key: Key):
    """Accept an announcement: answered only once it and a delivery per channel are in the ledger."""
    res = service.submit(rt, body, principal=who, idempotency_key=key, defer_enqueue=True)
    if res.to_enqueue:
        request.app.state.wakeups.wake(res.to_enqueue)  # published by the wake-up thread (api/wakeups.py)
    metrics = getattr(request.app.state, "metrics", None)
    if res.created and metrics is not None:
        metrics.accepted(body.kind)
    headers = {"Location": location(res.id)}
    if not res.created:
        headers["Idempotent-Replayed"] = "true"
    # submit answers from what it wrote; read it back only if a caller ever gets no snapshot
    detail = announcement_detail(res.status if res.status is not None else service.status_of(rt, res.id))
    # serialised here, as FastAPI would (by alias): returned as a model, it would be validated
    # again against response_model (in one more worker-thread hop) only to be serialised the same way
    return Response(detail.model_dump_json(by_alias=True), status_code=202 if res.created else 200,
                    headers=headers, media_type="application/json")


@router.get("/announcements", response_model=AnnouncementPage)
def list_announcements(
    who: Who, rt: Rt,
    kind: str | None = Query(None, description=" | ".join(KINDS)),
    status: str | None = Query(None, max_length=STATUS,
                               description="the announcement's status, e.g. investigating, resolved"),
    state: str | None = Query(None, description="only announcements with a delivery in this state"),
    since: str | None = Query(None, description="created at or after (ISO 8601 or epoch seconds)"),
    until: str | None = Query(None, description="created before (ISO 8601 or epoch seconds)"),
    open: bool = Query(False, description="only announcements neither resolved nor retracted"),
    limit: int = Query(50, ge=1, le=200),
    before: str | None = Query(None, max_length=ID, description="the `next` cursor of the previous page"),
):
    """Newest first, paged with the ``next`` cursor."""
    if kind is not None and kind not in KINDS:
        raise InvalidRequest(f"kind: must be one of {', '.join(KINDS)}", field="kind")
    if state is not None and state not in {s.value for s in DeliveryState}:
        raise InvalidRequest(f"state: must be one of {', '.join(s.value for s in DeliveryState)}", field="state")
    items = rt.ledger.list_announcements(kind=kind, status=status, state=state, since=parse_time("since", since),
                                         until=parse_time("until", until), before=before, open_only=open, limit=limit)
    deliveries = rt.ledger.deliveries_for([a.id for a in items])
    return AnnouncementPage(items=[announcement_out(a, deliveries[a.id]) for a in items],
                            next=items[-1].id if len(items) == limit else None)


@router.get("/announcements/{ann_id}", response_model=AnnouncementDetail)
def show(ann_id: Id, who: Who, rt: Rt):
    """One announcement with every delivery, its attempt log, and every update."""
    return announcement_detail(service.status_of(rt, ann_id))


@router.post("/announcements/{ann_id}/updates", status_code=202, response_model=UpdateAccepted,
             responses={200: {"model": UpdateAccepted, "description": "a replay of an earlier Idempotency-Key"}})
def add_update(ann_id: Id, body: UpdateIn, response: Response, who: Who, rt: Rt, key: Key):
    """A follow-up (new status and text) to every channel the announcement went to, threaded."""
    res = service.add_update(rt, ann_id, body, principal=who, idempotency_key=key)
    response.status_code = 202 if res.created else 200
    response.headers["Location"] = location(ann_id)
    if not res.created:
        response.headers["Idempotent-Replayed"] = "true"
    upd = rt.ledger.get_update(res.id)
    mine = [d for d in rt.ledger.deliveries_of(ann_id) if d.update_id == res.id]
    return UpdateAccepted(id=res.id, announcement_id=ann_id, status=upd.status,
                          deliveries=[delivery_out(d) for d in mine])


@router.post("/announcements/{ann_id}/retract", status_code=202, response_model=RetractOut,
             responses={200: {"model": RetractOut, "description": "a replay of an earlier Idempotency-Key"}})
def retract(ann_id: Id, response: Response, who: Who, rt: Rt, key: Key,
            body: Annotated[RetractIn | None, Body()] = None):
    """Stop what has not gone out and delete what has, where the channel allows it."""
    reason = body.reason if body else ""

    def run():
        counts = service.retract(rt, ann_id, principal=who, reason=reason)
        return RetractOut(id=ann_id, **counts).model_dump()

    out, replayed = idempotency.once(rt.ledger, scope=who.name, key=key, action="retract", target=ann_id,
                                     request={"reason": reason}, run=run)
    _replayed(response, replayed)
    return out


@router.post("/announcements/{ann_id}/cancel", response_model=CancelOut,
             responses={200: {"model": CancelOut}})
def cancel(ann_id: Id, response: Response, who: Who, rt: Rt, key: Key):
    """Cancel the deliveries of a scheduled announcement that have not been published yet."""

    def run():
        return CancelOut(id=ann_id, cancelled=service.cancel_scheduled(rt, ann_id, principal=who)).model_dump()

    out, replayed = idempotency.once(rt.ledger, scope=who.name, key=key, action="cancel", target=ann_id,
                                     request={}, run=run)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return out


def _replayed(response: Response, replayed: bool) -> None:
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
