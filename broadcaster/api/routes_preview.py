"""``POST /api/v1/preview``: each channel's rendering of an unsent announcement (the use case
is :mod:`broadcaster.preview`, shared with the web page)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import Depends

from .. import preview as use_case
from ..preview import PreviewIn
from ..runtime import Runtime
from ..service import Principal
from .auth import principal
from .deps import make_router, runtime
from .routes_announcements import ERRORS
from .schemas import PreviewChannel, PreviewOut

router = make_router(tags=["preview"], responses=ERRORS)


@router.post("/preview", response_model=PreviewOut)
def preview(body: PreviewIn, who: Annotated[Principal, Depends(principal)], rt: Annotated[Runtime, Depends(runtime)]):
    """Render per channel (explicit ``channels``, else the route for ``kind``) without sending."""
    rows = use_case.preview(rt, body, who.name)
    return PreviewOut(channels=[PreviewChannel(**asdict(row)) for row in rows])
