"""Two-person review over the API: what waits for approval (with each channel's rendering),
approve, reject. The approver is the calling token; it must not be the author's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends

from .. import review
from ..runtime import Runtime
from ..service import Principal
from .auth import principal
from .deps import make_router, runtime
from .routes_announcements import ERRORS

router = make_router(tags=["review"], responses=ERRORS)
Who = Annotated[Principal, Depends(principal)]
Rt = Annotated[Runtime, Depends(runtime)]


def held_out(rt: Runtime, held: review.Held) -> dict[str, Any]:
    a = held.announcement
    return {"id": a.id, "kind": a.kind, "title": a.title, "body": a.body, "author": a.author,
            "channels": list(a.channels), "publish_at": a.publish_at, "created_at": a.created_at,
            "preview": review.preview_of(rt, held)}


@router.get("/approvals")
def approvals(who: Who, rt: Rt) -> dict[str, Any]:
    """Posts waiting for a second person, each with the exact text every channel would post."""
    return {"items": [held_out(rt, h) for h in review.pending(rt)]}


@router.post("/announcements/{ann_id}/approve", status_code=200)
def approve(ann_id: str, who: Who, rt: Rt) -> dict[str, Any]:
    return review.approve(rt, ann_id, principal=who)


@router.post("/announcements/{ann_id}/reject", status_code=200)
def reject(ann_id: str, who: Who, rt: Rt, body: Annotated[dict[str, Any] | None, Body()] = None) -> dict[str, Any]:
    reason = (body or {}).get("reason")
    return review.reject(rt, ann_id, principal=who, reason=reason if isinstance(reason, str) else "")
