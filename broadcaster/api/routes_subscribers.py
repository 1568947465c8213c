"""Subscribers: the public double opt-in and one-click unsubscribe, and the admin list.

Public (no token): ``POST /subscribe``, ``GET /subscribe/confirm?token=``,
``GET /unsubscribe?token=`` (a page with a button — a GET never unsubscribes, since mail
scanners follow links) and ``POST /unsubscribe?token=`` (RFC 8058 one-click: the mail client
posts ``List-Unsubscribe=One-Click``; answered 200). Admin: ``GET /subscribers``.

Answers to the public routes never say whether an address was already subscribed.
"""

from __future__ import annotations

import builtins
import html
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import subscribers as subs
from ..runtime import Runtime
from ..service import Principal
from .deps import runtime
from .intake import bearer
from .schemas import ErrorOut

ERRORS = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 422: {"model": ErrorOut}, 429: {"model": ErrorOut},
          503: {"model": ErrorOut}}
router = APIRouter(tags=["subscribers"], responses=ERRORS)

Rt = Annotated[Runtime, Depends(runtime)]
#: paths that must work without a token (app.py adds them to the intake guard's public list)
PUBLIC_PATHS = ("/api/v1/subscribe", "/api/v1/unsubscribe", "/api/v1/subscribers/confirm")


def admin(request: Request) -> Principal:
    """An admin caller. ``/api/v1/subscribers`` shares its prefix with the public
    ``/api/v1/subscribe``, so the intake guard may have let it through unverified: check here."""
    from ..errors import Forbidden
    from .auth import Unauthenticated

    who = request.scope.get("state", {}).get("principal")
    if not isinstance(who, Principal):
        raw = bearer(request.headers.get("authorization"))
        tokens = getattr(request.app.state, "tokens", None)
        who = tokens.verify(raw) if raw and tokens is not None else None
    if not isinstance(who, Principal):
        raise Unauthenticated()
    if not who.admin:
        raise Forbidden(f"listing subscribers needs an admin token; {who.name!r} is not one")
    return who


class SubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    list: str = Field(..., min_length=1, max_length=100)
    address: str = Field(..., min_length=3, max_length=320)
    components: builtins.list[str] = Field(default_factory=builtins.list, max_length=50,
                                  description="only announcements about these components (empty: all)")
    name: str | None = Field(None, max_length=200)
    marketing: bool = Field(False, description="also send promotions (explicit consent; off unless asked)")


class SubscribeOut(BaseModel):
    status: str = "pending"
    message: str


class SubscriberOut(BaseModel):
    id: str
    list: str
    address: str
    name: str | None
    components: builtins.list[str]
    state: str
    marketing: bool
    created_at: float
    confirmed_at: float | None
    unsubscribed_at: float | None


class SubscriberPage(BaseModel):
    items: builtins.list[SubscriberOut]
    next: str | None = Field(None, description="pass as ?after= for the next page; null at the end")


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


def _page(title: str, text: str, form_action: str | None = None, status: int = 200) -> HTMLResponse:
    e = html.escape
    form = ""
    if form_action:
        form = (f'<form method="post" action="{e(form_action, quote=True)}">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                '<button type="submit">Unsubscribe</button></form>')
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{e(title)}</title></head>'
            f'<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">'
            f'<h1>{e(title)}</h1><p>{e(text)}</p>{form}</body></html>')
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store",
                                                            "Referrer-Policy": "no-referrer"})


def _html_error(request: Request, exc: Exception):
    from ..errors import InvalidRequest

    if isinstance(exc, InvalidRequest) and _wants_html(request):
        return _page("This link does not work", str(exc), status=422)
    raise exc


@router.post("/subscribe", status_code=202, response_model=SubscribeOut)
def subscribe(body: SubscribeIn, rt: Rt):
    """Ask to subscribe: a confirmation link is mailed; nothing else is sent until it is followed."""
    subs.subscribe(rt, body.list, body.address, components=body.components, name=body.name,
                   marketing=body.marketing)
    return SubscribeOut(message="if this address can receive mail, a confirmation link is on its way")


def _confirm(request: Request, rt: Runtime, token: str):
    try:
        sub = subs.confirm(rt.ledger, rt.settings, token)
    except Exception as exc:  # noqa: BLE001 - re-raised unless shown as a page
        return _html_error(request, exc)
    if _wants_html(request):
        return _page("Subscribed", f"You will receive the announcements of {sub.list}.")
    return JSONResponse({"status": "confirmed", "list": sub.list, "components": list(sub.components)})


@router.get("/subscribe/confirm", responses={200: {"content": {"text/html": {}}}})
def confirm(request: Request, rt: Rt, token: str = Query(..., max_length=1000)):
    """Follow the emailed confirmation link."""
    return _confirm(request, rt, token)


@router.get("/subscribers/confirm", include_in_schema=False)
def confirm_alias(request: Request, rt: Rt, token: str = Query(..., max_length=1000)):
    return _confirm(request, rt, token)


@router.get("/unsubscribe", responses={200: {"content": {"text/html": {}}}})
def unsubscribe_page(request: Request, rt: Rt, token: str = Query(..., max_length=1000)):
    """What the link in a mail opens: a page with a button. A GET never unsubscribes."""
    try:
        fields = subs.verify(rt.settings, token, "unsubscribe")
        sub = subs.get(rt.ledger, fields[0])
    except Exception as exc:  # noqa: BLE001
        from ..errors import NotFound

        if isinstance(exc, NotFound):
            from ..errors import InvalidRequest

            exc = InvalidRequest("this link is not valid any more", field="token")
        return _html_error(request, exc)
    what = "promotional mail from" if fields[1] == "marketing" else "announcements of"
    if _wants_html(request):
        return _page("Unsubscribe", f"Stop receiving {what} {sub.list}?", form_action=str(request.url))
    return JSONResponse({"list": sub.list, "scope": fields[1], "state": sub.state})


@router.post("/unsubscribe", responses={200: {"content": {"text/html": {}}}})
def unsubscribe(request: Request, rt: Rt, token: str = Query(..., max_length=1000)):
    """One-click unsubscribe (RFC 8058): the body ``List-Unsubscribe=One-Click`` is what mail
    clients send; the signed token alone decides. Repeating it is harmless."""
    try:
        sub = subs.unsubscribe(rt.ledger, rt.settings, token)
    except Exception as exc:  # noqa: BLE001
        return _html_error(request, exc)
    if _wants_html(request):
        return _page("Unsubscribed", f"You will no longer receive these messages from {sub.list}.")
    return JSONResponse({"status": sub.state, "list": sub.list})


@router.get("/subscribers", response_model=SubscriberPage)
def list_subscribers(rt: Rt, who: Annotated[Principal, Depends(admin)],
                     list: str | None = Query(None, max_length=100, description="only this list"),
                     state: str | None = Query(None, description=" | ".join(subs.STATES)),
                     after: str | None = Query(None, max_length=40),
                     limit: int = Query(100, ge=1, le=1000)):
    """Subscribers by id, paged (admin only)."""
    from ..errors import InvalidRequest

    if state is not None and state not in subs.STATES:
        raise InvalidRequest(f"state: must be one of {', '.join(subs.STATES)}", field="state")
    items = subs.list_subscribers(rt.ledger, list_name=list, state=state, after=after, limit=limit)
    return SubscriberPage(items=[SubscriberOut(**s.to_dict()) for s in items],
                          next=items[-1].id if len(items) == limit else None)
