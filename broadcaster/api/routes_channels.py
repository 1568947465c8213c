"""Channel health: what an operator needs to see during an incident, one row per channel."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends

from ..runtime import Runtime, queue_name
from ..schemas import BreakerOut, ChannelList, ChannelOut, iso
from ..service import Principal
from .auth import principal
from .deps import make_router, runtime
from .routes_announcements import ERRORS

log = logging.getLogger(__name__)
router = make_router(tags=["channels"], responses=ERRORS)


def breaker_of(rt: Runtime, name: str) -> BreakerOut:
    """The shared breaker state; ``unknown`` when Redis cannot be asked (never an error)."""
    try:
        b = rt.breaker.state(name, rt.settings.policy_for(name).breaker.cooldown)
    except Exception as exc:  # noqa: BLE001
        log.warning("breaker state of %s unavailable (%s)", name, type(exc).__name__)
        return BreakerOut(state="unknown")
    return BreakerOut(state=b.state, failures=b.failures, opened_at=iso(b.opened_at), retry_at=iso(b.retry_at))


def channel_rows(rt: Runtime) -> list[ChannelOut]:
    stats = rt.ledger.channel_stats()
    rows = []
    for name, cfg in rt.settings.channels.items():
        s = stats.get(name, {})
        rows.append(ChannelOut(
            name=name, kind=cfg.kind, enabled=cfg.enabled, description=cfg.description, queue=queue_name(name),
            breaker=breaker_of(rt, name), last_success=iso(s.get("last_success")), backlog=s.get("backlog", 0),
            oldest_due=iso(s.get("oldest_due")), counts=dict(s.get("states", {})),
        ))
    return rows


@router.get("/channels", response_model=ChannelList)
def channels(who: Annotated[Principal, Depends(principal)], rt: Annotated[Runtime, Depends(runtime)]):
    """Per configured channel: breaker state, last success, backlog and deliveries per state."""
    return ChannelList(items=channel_rows(rt))
