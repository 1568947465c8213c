"""Subscribers: the public double opt-in and one-click unsubscribe, and the admin list.

Public (no token): ``POST /subscribe``; ``GET /subscribe/confirm?token=`` (a page with a button)
and ``POST /subscribe/confirm`` (the button: confirms); ``GET /unsubscribe?token=`` (a page with
buttons) and ``POST /unsubscribe?token=`` (RFC 8058 one-click: the mail client posts
``List-Unsubscribe=One-Click``; answered 200). A GET never changes anything, since mail scanners
follow links. Admin: ``GET /subscribers``.

Answers to the public subscribe never say whether an address was already subscribed.
"""

from __future__ import annotations

import builtins
import html
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from .. import subscribers as subs
from ..errors import Forbidden, InvalidRequest
from ..requests import subscriber_field, validation_problem
from ..runtime import Runtime
from ..schemas import ErrorOut
from ..service import Principal
from .deps import runtime
from .intake import bearer
from .public_pages import Form, component_boxes, fields_of, html_error, page, refuse_cross_site, token_of, wants_html

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 422, 429, 503)}
router = APIRouter(tags=["subscribers"], responses=ERRORS)

Rt = Annotated[Runtime, Depends(runtime)]
#: paths that must work without a token (app.py adds them to the intake guard's public list)
PUBLIC_PATHS = ("/api/v1/subscribe", "/api/v1/unsubscribe", "/api/v1/subscribers/confirm")
CONFIRM_ACTION = "/api/v1/subscribe/confirm"
FORM_ACTION = "/api/v1/subscribe/form"
#: the one answer to every subscribe request, whatever the address's state
SUBSCRIBE_ANSWER = "if this address can receive mail, a confirmation link is on its way"


def admin(request: Request) -> Principal:
    """An admin caller. ``/api/v1/subscribers`` shares its prefix with the public
    ``/api/v1/subscribe``, so the intake guard may have let it through unverified: check here."""
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

    _one_line = field_validator("list", "address", "name", "components", mode="before")(subscriber_field)


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


def _components_text(sub: subs.Subscriber) -> str:
    return f" (about {', '.join(sub.components)})" if sub.components else ""


@router.post("/subscribe", status_code=202, response_model=SubscribeOut)
def subscribe(body: SubscribeIn, rt: Rt) -> SubscribeOut:
    """Ask to subscribe. The answer is the same for a new, a pending and a confirmed address; a
    confirmation mail goes out (in the background, at most one per address per
    ``subscribers.confirm_resend_after``) only while the subscription waits for confirmation.
    A pending subscription is never changed by a new request: only its own link confirms it."""
    subs.subscribe(rt, body.list, body.address, components=body.components, name=body.name,
                   marketing=body.marketing)
    return SubscribeOut(message=SUBSCRIBE_ANSWER)


@router.get("/subscribe/form", include_in_schema=False)
def subscribe_form(rt: Rt, list: str | None = Query(None, max_length=100)) -> HTMLResponse:
    """A public page with the subscribe form (link to it as ``/api/v1/subscribe/form?list=NAME``)."""
    e = html.escape
    names = sorted(subs.public_lists(rt.settings))
    if not names:
        return page("Subscribe", ["There are no public lists to subscribe to."], status=404)
    chosen = list if list in names else names[0]
    options = "".join(f'<option value="{e(n, quote=True)}"{" selected" if n == chosen else ""}>{e(n)}</option>'
                      for n in names)
    form = (f'<form method="post" action="{FORM_ACTION}">'
            f'<p><label>List <select name="list">{options}</select></label></p>'
            '<p><label>Email address <input type="email" name="address" required maxlength="320"></label></p>'
            '<p><label>Name (optional) <input type="text" name="name" maxlength="200"></label></p>'
            + component_boxes(rt.settings) +
            '<p><label><input type="checkbox" name="marketing" value="yes"> Also send me promotions</label></p>'
            '<button type="submit">Subscribe</button></form>')
    return page("Subscribe", ["We will mail you a link; nothing is sent until you confirm on the page it opens."],
                 markup=form)


@router.post("/subscribe/form", include_in_schema=False)
async def subscribe_form_post(request: Request, rt: Rt) -> HTMLResponse:
    """The form's POST: exactly :func:`subscribe` (same rules, same answer for every address)."""
    try:
        fields = await fields_of(request, joined=("components",))
        data = {"list": fields.get("list", ""), "address": fields.get("address", ""),
                "name": fields.get("name") or None, "marketing": fields.get("marketing") == "yes",
                "components": [c.strip() for c in fields.get("components", "").split(",") if c.strip()]}
        try:
            body = SubscribeIn.model_validate(data)
        except ValidationError as exc:
            raise validation_problem(exc) from None
        await run_in_threadpool(subs.subscribe, rt, body.list, body.address, components=body.components,
                                name=body.name, marketing=body.marketing)
    except InvalidRequest as exc:
        return page("Not subscribed", [str(exc), "Go back and correct it."], status=422)
    return page("Check your inbox", [SUBSCRIBE_ANSWER[0].upper() + SUBSCRIBE_ANSWER[1:] + ".",
                                      "Open it and press the button on the page to confirm."])


def _confirm_page(request: Request, rt: Runtime, token: str) -> Response:
    try:
        sub = subs.pending_of(rt.ledger, rt.settings, token)
    except InvalidRequest as exc:
        return html_error(request, exc)
    if not wants_html(request):
        return JSONResponse({"status": sub.state, "list": sub.list, "components": list(sub.components),
                             "marketing": sub.marketing,
                             "confirm": "POST the token (and optionally marketing: true|false) to this URL"})
    if sub.state == "confirmed":
        return page("Subscribed", [f"This address already receives the announcements of {sub.list}."])
    form = Form(action=CONFIRM_ACTION, fields={"token": token, "choices": "1"}, button="Confirm subscription",
                checkbox=("marketing", "Also send me promotions", sub.marketing),
                note="Nothing is sent to this address until you press the button.")
    return page("Confirm your subscription",
                 [f"Subscribe {sub.address} to the announcements of {sub.list}{_components_text(sub)}?"], (form,))


async def _confirm(request: Request, rt: Runtime, query_token: str | None) -> Response:
    try:
        refuse_cross_site(request, rt)
        fields = await fields_of(request)
        token = token_of(query_token, fields)
        marketing: bool | None = None
        if "choices" in fields:  # the page's form: an unticked checkbox is simply absent
            marketing = fields.get("marketing") == "yes"
        elif "marketing" in fields:
            marketing = fields["marketing"] in ("yes", "true", "1", "on")
        sub = await run_in_threadpool(subs.confirm, rt.ledger, rt.settings, token, marketing=marketing)
    except InvalidRequest as exc:
        return html_error(request, exc)
    if wants_html(request):
        promos = "and promotions " if sub.marketing else ""
        return page("Subscribed", [f"You will receive the announcements {promos}of {sub.list}."])
    return JSONResponse({"status": "confirmed", "list": sub.list, "components": list(sub.components),
                         "marketing": sub.marketing})


@router.get("/subscribe/confirm", responses={200: {"content": {"text/html": {}}}})
def confirm_page(request: Request, rt: Rt, token: str = Query(..., max_length=1000)) -> Response:
    """What the emailed link opens: a page with a button (JSON: what would be confirmed). A GET
    never confirms — mail scanners follow links."""
    return _confirm_page(request, rt, token)


@router.post("/subscribe/confirm", responses={200: {"content": {"text/html": {}}}})
async def confirm(request: Request, rt: Rt, token: str | None = Query(None, max_length=1000)) -> Response:
    """Confirm: the page's button posts the signed token (form field ``token``, or ``?token=``);
    ``marketing`` (checkbox ``yes``, or JSON true/false) is the owner's answer to promotions."""
    return await _confirm(request, rt, token)


@router.get("/subscribers/confirm", include_in_schema=False)
def confirm_page_alias(request: Request, rt: Rt, token: str = Query(..., max_length=1000)) -> Response:
    return _confirm_page(request, rt, token)


@router.post("/subscribers/confirm", include_in_schema=False)
async def confirm_alias(request: Request, rt: Rt, token: str | None = Query(None, max_length=1000)) -> Response:
    return await _confirm(request, rt, token)


@router.get("/unsubscribe", responses={200: {"content": {"text/html": {}}}})
def unsubscribe_page(request: Request, rt: Rt, token: str = Query(..., max_length=1000)) -> Response:
    """What the link in a mail opens: a page with a button. A GET never unsubscribes."""
    try:
        sub, scope = subs.unsubscribe_target(rt.ledger, rt.settings, token)
    except InvalidRequest as exc:
        return html_error(request, exc)
    if not wants_html(request):
        return JSONResponse({"list": sub.list, "scope": scope, "state": sub.state, "marketing": sub.marketing,
                             "stops": "promotions" if scope == "marketing" else "everything"})
    action = str(request.url)
    everything = Form(action=action, fields={"scope": "list"}, button="Unsubscribe from everything",
                      note=f"No more mail of any kind from {sub.list}: no incident, maintenance or other "
                           "notices, and no promotions.")
    if scope == "marketing":
        promotions = Form(action=action, fields={"List-Unsubscribe": "One-Click"}, button="Stop promotions")
        return page("Stop promotions", [
            f"Stop receiving promotions from {sub.list}? Incident, maintenance and other notices keep coming.",
            "To stop those too, unsubscribe from everything instead."], (promotions, everything))
    return page("Unsubscribe", [f"Leave {sub.list}?"], (everything,))


@router.post("/unsubscribe", responses={200: {"content": {"text/html": {}}}})
async def unsubscribe(request: Request, rt: Rt, token: str | None = Query(None, max_length=1000)) -> Response:
    """One-click unsubscribe (RFC 8058): the body ``List-Unsubscribe=One-Click`` is what mail
    clients send; the signed token alone decides. A promotion's link stops promotions only;
    any other link — or ``scope=list`` with any link — stops every kind of mail from the list.
    Repeating it is harmless."""
    try:
        fields = await fields_of(request)
        tok = token_of(token, fields)
        sub, stopped = await run_in_threadpool(subs.unsubscribe, rt.ledger, rt.settings, tok,
                                               everything=fields.get("scope") == "list")
    except InvalidRequest as exc:
        return html_error(request, exc)
    if wants_html(request):
        if stopped == "promotions":
            return page("Promotions stopped", [
                (f"You will no longer receive promotions from {sub.list}. Incident, maintenance and other "
                "notices keep coming; the link at the bottom of those mails stops them too.")])
        return page("Unsubscribed", [f"You will receive no more mail of any kind from {sub.list}."])
    return JSONResponse({"status": sub.state, "list": sub.list, "marketing": sub.marketing, "stopped": stopped})


@router.get("/subscribers", response_model=SubscriberPage)
def list_subscribers(rt: Rt, who: Annotated[Principal, Depends(admin)],
                     list: str | None = Query(None, max_length=100, description="only this list"),
                     state: str | None = Query(None, description=" | ".join(subs.STATES)),
                     after: str | None = Query(None, max_length=40),
                     limit: int = Query(100, ge=1, le=1000)):
    """Subscribers by id, paged (admin only)."""
    if state is not None and state not in subs.STATES:
        raise InvalidRequest(f"state: must be one of {', '.join(subs.STATES)}", field="state")
    items = subs.list_subscribers(rt.ledger, list_name=list, state=state, after=after, limit=limit)
    return SubscriberPage(items=[SubscriberOut(**s.to_dict()) for s in items],
                          next=items[-1].id if len(items) == limit else None)
