"""Operator actions on one delivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from .. import service
from ..requests import Url
from ..runtime import Runtime
from ..schemas import RetryOut
from ..service import Principal
from . import idempotency
from .auth import principal
from .deps import idempotency_key, make_router, runtime
from .params import Id
from .routes_announcements import ERRORS

router = make_router(tags=["deliveries"], responses=ERRORS)


@router.post("/deliveries/{delivery_id}/retry", status_code=202, response_model=RetryOut,
             responses={200: {"model": RetryOut, "description": "a replay of an earlier Idempotency-Key"}})
def retry(delivery_id: Id, response: Response, who: Annotated[Principal, Depends(principal)],
          rt: Annotated[Runtime, Depends(runtime)], key: Annotated[str | None, Depends(idempotency_key)]):
    """Send a failed, unknown or fallen-back delivery again (the operator has checked the channel)."""

    def run():
        service.retry_delivery(rt, delivery_id, principal=who)
        d = rt.ledger.get_delivery(delivery_id)
        return RetryOut(id=d.id, announcement_id=d.announcement_id, channel=d.channel, state=str(d.state)).model_dump()

    out, replayed = idempotency.once(rt.ledger, scope=who.name, key=key, action="retry", target=delivery_id,
                                     request={}, run=run)
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return out


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url | None = Field(None, description="where the operator found the post")


@router.post("/deliveries/{delivery_id}/confirm", response_model=RetryOut)
def confirm(delivery_id: Id, who: Annotated[Principal, Depends(principal)], rt: Annotated[Runtime, Depends(runtime)],
            body: ConfirmIn | None = None):
    """Settle an `unknown` delivery as delivered: the operator found the post on the channel."""
    service.confirm_delivered(rt, delivery_id, principal=who, url=body.url if body else None)
    d = rt.ledger.get_delivery(delivery_id)
    return RetryOut(id=d.id, announcement_id=d.announcement_id, channel=d.channel, state=str(d.state))
