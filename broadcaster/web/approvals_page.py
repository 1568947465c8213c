"""The page's approvals: posts waiting for a second person, each with the exact text every
channel would post, and Approve / Reject buttons acting as the signed-in token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from .. import review
from ..errors import BroadcasterError
from . import session
from .routes import Form, _ctx, error_page, form_refusal, page, redirect, signed_in, to_signin

router: APIRouter = APIRouter(include_in_schema=False)
NOTICES = {"approved": "Approved: its deliveries are due.", "rejected": "Rejected: nothing was posted."}


@router.get("/approvals", response_class=HTMLResponse)
def approvals_page(request: Request, done: str | None = None) -> Response:
    who = signed_in(request)
    if not who:
        return to_signin(request)
    rt = session.runtime_of(request)
    try:
        items = [(h.announcement, review.preview_of(rt, h)) for h in review.pending(rt)]
    except BroadcasterError as exc:
        return error_page(request, who, exc)
    return page(request, "approvals.html", items=items, notice=NOTICES.get(done or ""), **_ctx(who))


def _act(request: Request, form, ann_id: str, done: str) -> Response:
    who = signed_in(request)
    if not who:
        return to_signin(request)
    if (refusal := form_refusal(request, who, form)) is not None:
        return refusal
    rt = session.runtime_of(request)
    try:
        if done == "approved":
            review.approve(rt, ann_id, principal=who[1])
        else:
            review.reject(rt, ann_id, principal=who[1], reason=(form.get("reason") or "")[:200])
    except BroadcasterError as exc:
        return error_page(request, who, exc)
    return redirect(f"/approvals?done={done}")


@router.post("/approvals/{ann_id}/approve")
def approve(request: Request, ann_id: str, form: Form) -> Response:
    return _act(request, form, ann_id, "approved")


@router.post("/approvals/{ann_id}/reject")
def reject(request: Request, ann_id: str, form: Form) -> Response:
    return _act(request, form, ann_id, "rejected")
