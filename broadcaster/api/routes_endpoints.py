"""Endpoints subscribers bring (their own Slack, Teams Workflows, Discord or generic webhook).

Public (no token, under ``/api/v1/subscribe`` so the same anonymous rate limit applies):
``POST /subscribe/endpoint`` registers one — the answer is the same whatever the URL's state,
and the challenge is posted to the endpoint in the background; ``POST
/subscribe/endpoint/confirm`` takes the code the challenge carried (and answers a generic
endpoint's signing secret, this once). Admin: ``GET /subscribers/endpoints`` and ``POST
/subscribers/endpoints/{id}/enable|disable``. The rules are in ``subscribers/endpoints.py``.
"""

from __future__ import annotations

import builtins
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from .. import limits
from ..requests import subscriber_field
from ..runtime import Runtime
from ..schemas import ErrorOut
from ..service import Principal
from ..subscribers import endpoints as eps
from .deps import runtime
from .routes_subscribers import admin

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 404, 422, 429, 503)}
router = APIRouter(tags=["subscribers"], responses=ERRORS)

Rt = Annotated[Runtime, Depends(runtime)]
#: the one answer to every registration, whatever the endpoint's state
REGISTER_ANSWER = "if this endpoint accepts our posts, a confirmation code is on its way to it"


class EndpointSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    format: str = Field(..., min_length=1, max_length=20, description="slack | teams | discord | generic")
    url: str = Field(..., min_length=8, max_length=2000, description="the webhook URL (https)")


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    list: str = Field(..., min_length=1, max_length=100)
    endpoint: EndpointSpec
    components: builtins.list[str] = Field(default_factory=builtins.list, max_length=50,
                                           description="only announcements about these components (empty: all)")
    owner: str | None = Field(None, max_length=320, description="an address told if the endpoint is disabled")

    _one_line = field_validator("list", "owner", "components")(subscriber_field)


class RegisterOut(BaseModel):
    status: str = "pending"
    message: str


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    code: str = Field(..., min_length=8, max_length=200)


class ConfirmOut(BaseModel):
    status: str
    list: str
    format: str
    components: builtins.list[str]
    secret: str | None = Field(None, description="generic endpoints: the signing secret (shown this once)")


class EndpointOut(BaseModel):
    id: str
    list: str
    format: str
    url: str = Field(description="scheme and host only: the URL is a credential")
    owner: str | None
    components: builtins.list[str]
    state: str
    created_at: float
    confirmed_at: float | None
    failures: int
    last_error: str | None
    disabled_at: float | None
    notice: str | None = Field(description="how the owner heard of the disabling: mailed | failed | none")


class EndpointPage(BaseModel):
    items: builtins.list[EndpointOut]
    next: str | None = None


EndpointId = Annotated[str, Path(max_length=limits.ID, pattern=r"^[A-Za-z0-9_-]+$")]


@router.post("/subscribe/endpoint", status_code=202, response_model=RegisterOut)
def register(body: EndpointIn, rt: Rt) -> RegisterOut:
    """Register a webhook for a list's announcements. A challenge carrying a one-time code is
    posted to it (in the background, at most one per ``subscribers.confirm_resend_after``);
    nothing else is posted until the code comes back to ``/subscribe/endpoint/confirm``."""
    eps.register(rt, body.list, body.endpoint.format, body.endpoint.url, components=body.components,
                 owner=body.owner)
    return RegisterOut(message=REGISTER_ANSWER)


@router.post("/subscribe/endpoint/confirm", response_model=ConfirmOut)
async def confirm(body: ConfirmIn, rt: Rt) -> ConfirmOut:
    """Confirm with the challenge's code. A generic endpoint's answer carries its Standard
    Webhooks signing secret: keep it, it is not shown again."""
    ep, secret = await run_in_threadpool(eps.confirm, rt.ledger, rt.settings, body.code)
    return ConfirmOut(status=ep.state, list=ep.list, format=ep.format, components=list(ep.components), secret=secret)


@router.get("/subscribers/endpoints", response_model=EndpointPage)
def list_endpoints(rt: Rt, who: Annotated[Principal, Depends(admin)],
                   list: str | None = Query(None, max_length=100, description="only this list"),
                   state: str | None = Query(None, max_length=16, description=" | ".join(eps.STATES)),
                   after: str | None = Query(None, max_length=40),
                   limit: int = Query(100, ge=1, le=1000)) -> EndpointPage:
    """Endpoints by id, paged (admin only); URLs are shown as scheme and host."""
    items = eps.list_endpoints(rt.ledger, list_name=list, state=state, after=after, limit=limit)
    return EndpointPage(items=[EndpointOut(**e.to_dict()) for e in items],
                        next=items[-1].id if len(items) == limit else None)


@router.post("/subscribers/endpoints/{endpoint_id}/enable", response_model=EndpointOut)
def enable(endpoint_id: EndpointId, rt: Rt, who: Annotated[Principal, Depends(admin)]) -> EndpointOut:
    """A disabled endpoint receives again; its run of failures starts at 0 (a pending one stays pending)."""
    return EndpointOut(**eps.set_state(rt.ledger, endpoint_id, enabled=True, actor=who.name).to_dict())


@router.post("/subscribers/endpoints/{endpoint_id}/disable", response_model=EndpointOut)
def disable(endpoint_id: EndpointId, rt: Rt, who: Annotated[Principal, Depends(admin)]) -> EndpointOut:
    """Stop posting to an endpoint (its owner may register it again)."""
    return EndpointOut(**eps.set_state(rt.ledger, endpoint_id, enabled=False, actor=who.name).to_dict())
