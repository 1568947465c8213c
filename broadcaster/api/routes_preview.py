"""``POST /api/v1/preview``: each channel's rendering of an unsent announcement (the use case
is :mod:`broadcaster.preview`, shared with the web page). Rendering is CPU work: it runs in a
render slot off the event loop (:mod:`.render_slots`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import Depends
from fastapi.responses import JSONResponse

from .. import preview as use_case, render_slots
from ..preview import PreviewIn
from ..runtime import Runtime
from ..schemas import ErrorOut, PreviewChannel, PreviewOut
from ..service import Principal
from .auth import principal
from .deps import make_router, runtime
from .routes_announcements import ERRORS

router = make_router(tags=["preview"], responses=ERRORS)


@router.post("/preview", response_model=PreviewOut,
             responses={503: {"model": ErrorOut, "description": "too many previews at once; retry after"}})
async def preview(body: PreviewIn, who: Annotated[Principal, Depends(principal)],
                  rt: Annotated[Runtime, Depends(runtime)]) -> PreviewOut | JSONResponse:
    """Render per channel (explicit ``channels``, else the route for ``kind``) without sending."""
    try:
        rows = await render_slots.render(use_case.preview, rt, body, who.name)
    except render_slots.Busy:
        return render_slots.busy()
    return PreviewOut(channels=[PreviewChannel(**asdict(row)) for row in rows])
