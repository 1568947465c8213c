"""The page's drafts: incidents proposed by alerts, each shown with its source alert, editable,
and published (or discarded) with one button — as the signed-in token, through the same
functions as the API (``inbound/drafts.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..errors import BroadcasterError
from ..inbound import drafts
from ..ledger.drafts import DraftStore
from . import session
from .routes import Form, _ctx, error_page, form_refusal, page, redirect, signed_in, to_signin

router: APIRouter = APIRouter(include_in_schema=False)
NOTICES = {"published": "Published: every channel has a delivery in the ledger.", "saved": "Draft saved.",
           "discarded": "Draft discarded."}
LISTED = ("draft", "publishing", "published", "expired", "discarded", "closed")


@router.get("/drafts", response_class=HTMLResponse)
def drafts_page(request: Request, done: str | None = None) -> Response:
    who = signed_in(request)
    if not who:
        return to_signin(request)
    try:
        items = DraftStore(session.runtime_of(request).ledger).page(states=LISTED, limit=100)
    except BroadcasterError as exc:
        return error_page(request, who, exc)
    return page(request, "drafts.html", items=items, notice=NOTICES.get(done or ""), **_ctx(who))


def _act(request: Request, form, draft_id: str, action: str) -> Response:
    who = signed_in(request)
    if not who:
        return to_signin(request)
    if (refusal := form_refusal(request, who, form)) is not None:
        return refusal
    rt = session.runtime_of(request)
    try:
        if action == "saved":
            changes = {k: (form.get(k) or "").strip() for k in ("title", "body", "resolve_body") if k in form}
            if "severity" in form:
                changes["severity"] = form.get("severity") or None
            drafts.edit(rt, draft_id, changes, principal=who[1])
        elif action == "published":
            drafts.publish(rt, draft_id, principal=who[1])
        else:
            drafts.discard(rt, draft_id, principal=who[1])
    except BroadcasterError as exc:
        return error_page(request, who, exc)
    return redirect(f"/drafts?done={action}")


@router.post("/drafts/{draft_id}/edit")
def edit(request: Request, draft_id: str, form: Form) -> Response:
    return _act(request, form, draft_id, "saved")


@router.post("/drafts/{draft_id}/publish")
def publish(request: Request, draft_id: str, form: Form) -> Response:
    return _act(request, form, draft_id, "published")


@router.post("/drafts/{draft_id}/discard")
def discard(request: Request, draft_id: str, form: Form) -> Response:
    return _act(request, form, draft_id, "discarded")
