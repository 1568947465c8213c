"""Endpoints subscribers bring (their own Slack, Teams Workflows, Discord or generic webhook).

Public (no token, under ``/api/v1/subscribe`` so the same anonymous rate limit applies):
``POST /subscribe/endpoint`` registers one — the answer is the same whatever the URL's state,
and the challenge is posted to the endpoint in the background; ``POST
/subscribe/endpoint/confirm`` takes the code the challenge carried (and answers a generic
endpoint's signing secret, this once). Admin: ``GET /subscribers/endpoints`` and ``POST
/subscribers/endpoints/{id}/enable|disable``. The rules are in ``subscribers/endpoints.py``.

For people (the status site's "By webhook" link): ``GET /subscribe/endpoint/form`` is the form
(kind of webhook, its URL, tick boxes of the configured components); the challenge links to
``GET /subscribe/endpoint/confirm?code=``, a page whose button confirms; every post links to
``GET /unsubscribe/endpoint?token=``, a page whose button (a POST) stops the posts. A GET never
changes anything: chat apps fetch links to preview them.
"""

from __future__ import annotations

import builtins
import html
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from .. import limits
from ..errors import InvalidRequest
from ..ledger.endpoints import masked
from ..requests import subscriber_field, validation_problem
from ..runtime import Runtime
from ..schemas import ErrorOut
from ..service import Principal
from ..subscribers import endpoints as eps
from .deps import runtime
from .routes_subscribers import (
    Form,
    admin,
    component_boxes,
    fields_of,
    html_error,
    page,
    refuse_cross_site,
    token_of,
    wants_html,
)

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 404, 422, 429, 503)}
router = APIRouter(tags=["subscribers"], responses=ERRORS)

Rt = Annotated[Runtime, Depends(runtime)]
#: the one answer to every registration, whatever the endpoint's state
REGISTER_ANSWER = "if this endpoint accepts our posts, a confirmation code is on its way to it"
FORM_ACTION = "/api/v1/subscribe/endpoint/form"
CONFIRM_FORM_ACTION = "/api/v1/subscribe/endpoint/confirm/form"
#: what the form calls each format
FORMAT_LABELS = {"slack": "Slack (incoming webhook)", "teams_workflow": "Microsoft Teams (Workflows webhook)",
                 "discord": "Discord (channel webhook)", "generic": "Your own receiver (signed JSON, Standard Webhooks)"}


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


# ---------------------------------------------------------------- pages for people


def _what(ep: eps.Endpoint) -> str:
    about = f" about {', '.join(ep.components)}" if ep.components else ""
    return f"the announcements of {ep.list}{about} to your {FORMAT_LABELS.get(ep.format, ep.format)} ({masked(ep.url)})"


def _code_form(code: str = "") -> str:
    e = html.escape
    field = (f'<input type="hidden" name="code" value="{e(code, quote=True)}">' if code else
             '<p><label>Code <input type="text" name="code" required minlength="8" maxlength="200" '
             'autocomplete="one-time-code"></label></p>')
    label = "Confirm" if code else "Confirm with this code"
    return f'<form method="post" action="{CONFIRM_FORM_ACTION}">{field}<button type="submit">{label}</button></form>'


@router.get("/subscribe/endpoint/form", include_in_schema=False)
def endpoint_form(rt: Rt, list: str | None = Query(None, max_length=100)) -> HTMLResponse:
    """The public form (link to it as ``/api/v1/subscribe/endpoint/form?list=NAME``)."""
    e = html.escape
    names = sorted(eps.endpoint_lists(rt.settings))
    if not names:
        return page("Subscribe by webhook", ["There are no lists to subscribe to by webhook."], status=404)
    chosen = list if list in names else names[0]
    served = eps.serving(rt.settings, chosen)
    formats = served[1].formats if served else ()
    lists = "".join(f'<option value="{e(n, quote=True)}"{" selected" if n == chosen else ""}>{e(n)}</option>'
                    for n in names)
    kinds = "".join(f'<option value="{e(f, quote=True)}">{e(FORMAT_LABELS.get(f, f))}</option>' for f in formats)
    form = (f'<form method="post" action="{FORM_ACTION}">'
            f'<p><label>List <select name="list">{lists}</select></label></p>'
            f'<p><label>Kind of webhook <select name="format">{kinds}</select></label></p>'
            '<p><label>Webhook URL <input type="url" name="url" required maxlength="2000" '
            'placeholder="https://hooks.slack.com/services/…"></label></p>'
            + component_boxes(rt.settings) +
            '<p><label>Your e-mail address (optional: we tell you if posts to it keep failing) '
            '<input type="email" name="owner" maxlength="320"></label></p>'
            '<button type="submit">Subscribe</button></form>')
    return page("Subscribe by webhook", [
        "We post a confirmation code to the webhook; nothing else is posted to it until the code comes back.",
        "Every post carries a link that stops them."], markup=form)


@router.post("/subscribe/endpoint/form", include_in_schema=False)
async def endpoint_form_post(request: Request, rt: Rt) -> HTMLResponse:
    """The form's POST: exactly :func:`register` (same rules, the same answer for every URL)."""
    try:
        fields = await fields_of(request, joined=("components",))
        data = {"list": fields.get("list", ""), "owner": fields.get("owner") or None,
                "endpoint": {"format": fields.get("format", ""), "url": fields.get("url", "")},
                "components": [c.strip() for c in fields.get("components", "").split(",") if c.strip()]}
        try:
            body = EndpointIn.model_validate(data)
        except ValidationError as exc:
            raise validation_problem(exc) from None
        await run_in_threadpool(eps.register, rt, body.list, body.endpoint.format, body.endpoint.url,
                                components=body.components, owner=body.owner)
    except InvalidRequest as exc:
        return page("Not subscribed", [str(exc), "Go back and correct it."], status=422)
    return page("Check your channel", [REGISTER_ANSWER[0].upper() + REGISTER_ANSWER[1:] + ".",
                                        "Open the link in that message and press the button, or enter its code here."],
                 markup=_code_form())


@router.get("/subscribe/endpoint/confirm", include_in_schema=False)
def confirm_page(request: Request, rt: Rt, code: str = Query(..., max_length=200)) -> Response:
    """What the challenge's link opens: a page with a button. A GET never confirms."""
    try:
        ep = eps.pending_by_code(rt.ledger, rt.settings, code)
    except InvalidRequest as exc:
        return html_error(request, exc)
    if not wants_html(request):
        return JSONResponse({"status": ep.state, "list": ep.list, "format": ep.format,
                             "components": list(ep.components), "confirm": f"POST {{\"code\": …}} to {eps.CONFIRM_PATH}"})
    return page("Confirm the webhook", [f"Post {_what(ep)}?",
                                         "Nothing is posted to it until you press the button."], markup=_code_form(code))


@router.post("/subscribe/endpoint/confirm/form", include_in_schema=False)
async def confirm_form(request: Request, rt: Rt) -> HTMLResponse:
    """The page's button (or the code typed in): confirms, and shows a generic endpoint's secret once."""
    try:
        refuse_cross_site(request, rt)
        fields = await fields_of(request)
        ep, secret = await run_in_threadpool(eps.confirm, rt.ledger, rt.settings, fields.get("code", ""))
    except InvalidRequest as exc:
        return page("Not confirmed", [str(exc)], status=422)
    e = html.escape
    markup = (f"<p>Its signing secret, shown this once (keep it to verify our signatures): "
              f"<code>{e(secret)}</code></p>") if secret else ""
    return page("Subscribed", [f"We will post {_what(ep)}.",
                                "Every post carries a link that stops them."], markup=markup)


@router.get("/unsubscribe/endpoint", responses={200: {"content": {"text/html": {}}}})
def unsubscribe_page(request: Request, rt: Rt, token: str = Query(..., max_length=1000)) -> Response:
    """What the link in every post to an endpoint opens: a page with a button. A GET never
    unsubscribes (chat apps fetch links to preview them)."""
    try:
        ep = eps.unsubscribe_target(rt.ledger, rt.settings, token)
    except InvalidRequest as exc:
        return html_error(request, exc)
    if not wants_html(request):
        return JSONResponse({"list": ep.list, "format": ep.format, "state": ep.state,
                             "unsubscribe": "POST to this URL"})
    if ep.state == "unsubscribed":
        return page("Unsubscribed", [f"Nothing more is posted to this {FORMAT_LABELS.get(ep.format, ep.format)}."])
    stop = Form(action=str(request.url), fields={}, button="Stop these posts",
                note="To get them again, subscribe the webhook again (a new confirmation code is posted to it).")
    return page("Stop the posts", [f"Stop posting {_what(ep)}?"], (stop,))


@router.post("/unsubscribe/endpoint", responses={200: {"content": {"text/html": {}}}})
async def unsubscribe(request: Request, rt: Rt, token: str | None = Query(None, max_length=1000)) -> Response:
    """Stop every post to the endpoint the signed token names (form field ``token`` or
    ``?token=``); a pending request is cancelled. Repeating it is harmless."""
    try:
        fields = await fields_of(request)
        ep = await run_in_threadpool(eps.unsubscribe, rt.ledger, rt.settings, token_of(token, fields))
    except InvalidRequest as exc:
        return html_error(request, exc)
    if wants_html(request):
        return page("Unsubscribed", [f"Nothing more of {ep.list} is posted to this "
                                      f"{FORMAT_LABELS.get(ep.format, ep.format)}."])
    return JSONResponse({"status": ep.state, "list": ep.list})
