"""The web page at ``/``: sign in, compose with live preview, list, timeline, actions, health.

Server-rendered (Jinja2, autoescape on) so it works on a phone and without JavaScript; the JS
only adds the live preview and the live timeline, both from the ``/ui/...`` JSON routes below.
Every action calls the same service functions as the API, as the signed-in token's principal.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData

from .. import origins, render_slots, service, templates
from ..errors import BroadcasterError, Forbidden, InvalidRequest, LedgerUnavailable, NotFound
from ..models import KINDS, SEVERITIES
from . import session, views
from .compose import STATE_LABELS, announcement_data, chosen_states, compose_ctx, form_values, from_template

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml", ".png": "image/png"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser posts our own forms with
    # ``Origin: null``; this way it names our origin to us and still tells no other site anything
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
DONE = {  # fixed messages, so a crafted link cannot put words on the page
    "created": "Accepted: every channel has a delivery in the ledger.",
    "update": "Update accepted.",
    "retract": "Retraction started.",
    "cancel": "Scheduled deliveries cancelled.",
    "retry": "Delivery queued again.",
    "confirm": "Delivery marked as delivered.",
}

env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)
env.filters["when"] = views.when
env.filters["safe_link"] = views.safe_link

router = APIRouter(include_in_schema=False)


# ---------------------------------------------------------------- plumbing


def page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    html = env.get_template(template).render(request=request, kinds=KINDS, severities=SEVERITIES, **ctx)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def to_signin(request: Request) -> RedirectResponse:
    """Back to the sign-in form; a session cookie the intake guard refused is cleared, so an
    expired or revoked session is not presented (and counted against the address) again."""
    resp = redirect("/signin")
    if (request.scope.get("state") or {}).get("session_refused"):
        resp.delete_cookie(session.SESSION_COOKIE, path="/")
    return resp


def signed_in(request: Request):
    """(token, principal) or None; the runtime must be there (set by broadcaster.asgi.create_app)."""
    return session.current(request)


def error_page(request: Request, who, exc: Exception) -> HTMLResponse:
    status = {NotFound: 404, Forbidden: 403, InvalidRequest: 400, LedgerUnavailable: 503}
    code = next((v for k, v in status.items() if isinstance(exc, k)), 400)
    return page(request, "error.html", status=code, message=str(exc), **_ctx(who))


def _ctx(who) -> dict[str, Any]:
    if not who:
        return {"principal": None, "csrf": ""}
    token, principal = who
    return {"principal": principal, "csrf": session.csrf_for(token)}


async def _read_form(request: Request) -> FormData:
    """The posted form, read on the event loop (already in memory: the intake guard buffered and
    bounded the body), so the handler itself can be a plain ``def`` that FastAPI runs in its
    thread pool — no ledger call, token check or rendering ever runs on the event loop."""
    return await request.form()


async def _read_body(request: Request) -> bytes:
    return await request.body()


#: the posted form / raw body, for plain-``def`` handlers
Form = Annotated[FormData, Depends(_read_form)]
Body = Annotated[bytes, Depends(_read_body)]


def refused(request: Request, who) -> HTMLResponse:
    return page(request, "error.html", status=403,
                message="This form has expired or did not come from this page. Reload and try again.", **_ctx(who))


def rate_limited(request: Request) -> int | None:
    """Seconds to wait when the intake guard let this form through over its token's (or, for
    sign-in, its address's) rate limit, else None. Such a form must act on nothing."""
    wait = (request.scope.get("state") or {}).get("rate_limited")
    return max(1, math.ceil(wait)) if isinstance(wait, (int, float)) and wait > 0 else None


def limited_message(seconds: int, kept: bool) -> str:
    return (f"Too many requests with this token just now, so nothing was done. Wait {seconds} s and "
            + ("submit again — what you entered is kept." if kept else "go back and submit again."))


def from_elsewhere(request: Request) -> bool:
    """A browser says this POST came from another site (``broadcaster.origins``): refused even
    with a valid CSRF token. ``Origin: null`` counts as elsewhere unless ``Sec-Fetch-Site``
    says same-origin — our pages make browsers send their real origin. No header at all (not a
    browser, or a very old one) is left to the CSRF token."""
    headers = request.headers
    verdict = origins.came_from(headers, (str(request.base_url), session.runtime_of(request).settings.public_url))
    return verdict is False or (verdict is None and (headers.get("origin") or "").strip().lower() == "null")


def form_refusal(request: Request, who, form: FormData,
                 again: Callable[[str, int], HTMLResponse] | None = None) -> Response | None:
    """Every state-changing form of a signed-in page goes through here first: a form without this
    session's CSRF token, or that a browser says comes from another site, is refused; one over
    the rate limit is answered 429 with a readable message — ``again(message, status)``
    re-renders the form itself, with what was entered — instead of acting. None: go on."""
    if not session.csrf_ok(who[0], form.get("csrf")) or from_elsewhere(request):
        return refused(request, who)
    seconds = rate_limited(request)
    if seconds is None:
        return None
    message = limited_message(seconds, kept=again is not None)
    resp = again(message, 429) if again else page(request, "error.html", status=429, message=message, **_ctx(who))
    resp.headers["Retry-After"] = str(seconds)
    return resp


# ---------------------------------------------------------------- static files


@router.get("/static/{name}")
def static(name: str) -> Response:
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


# ---------------------------------------------------------------- sign in / out


#: what the sign-in form can say. A link may pick one by its code (``/signin?error=expired``) but
#: never supply the words or the status: text from a URL on this page would let a crafted link
#: tell people to mail their token somewhere.
SIGNIN_MESSAGES = {
    "expired": "The sign-in form expired. Please try again.",
    "invalid": "That token is not valid (or was revoked).",
    "slow": "Too many sign-in attempts from this address just now. Wait a minute and try again.",
}


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request, error: str | None = None) -> HTMLResponse:
    """The form; ``error`` selects one of :data:`SIGNIN_MESSAGES` (anything else shows none)."""
    return signin_page(request, error if error in SIGNIN_MESSAGES else None)


def signin_page(request: Request, code: str | None, status: int = 200) -> HTMLResponse:
    pre = session.new_presign()
    resp = page(request, "signin.html", status=status, presign=pre, error=SIGNIN_MESSAGES.get(code or ""),
                principal=None, csrf="")
    resp.set_cookie(session.PRESIGN_COOKIE, pre, max_age=3600, **session.cookie_args(request))
    return resp


@router.post("/signin")
def signin(request: Request, form: Form) -> Response:
    """Exchange the token for a session: the browser keeps only the session's own secret."""
    if (seconds := rate_limited(request)) is not None:  # token guessing from this address, or a crowd
        slow = signin_page(request, "slow", 429)
        slow.headers["Retry-After"] = str(seconds)
        return slow
    if not session.presign_ok(request, form.get("csrf")) or from_elsewhere(request):
        return signin_page(request, "expired", 403)
    token = form.get("token")
    try:
        started = session.sessions_of(request).start(token.strip() if isinstance(token, str) else "")
    except LedgerUnavailable:
        return page(request, "error.html", status=503, message="The ledger is unavailable; try again shortly.",
                    principal=None, csrf="")
    if started is None:
        return signin_page(request, "invalid", 401)
    resp = redirect("/")
    resp.set_cookie(session.SESSION_COOKIE, started[0], max_age=int(session.sessions_of(request).lifetime),
                    **session.cookie_args(request))
    resp.delete_cookie(session.PRESIGN_COOKIE, path="/")
    return resp


@router.post("/signout")
def signout(request: Request, form: Form) -> Response:
    """Ends the session in the ledger (a copied cookie stops working too) and clears the cookie."""
    who = signed_in(request)
    if who and (refusal := form_refusal(request, who, form)) is not None:
        return refusal
    if who:
        session.sessions_of(request).end(who[0])
    resp = redirect("/signin")
    resp.delete_cookie(session.SESSION_COOKIE, path="/", **_cookie_flags(request))
    return resp


def _cookie_flags(request: Request) -> dict[str, Any]:
    args = session.cookie_args(request)
    return {"secure": args["secure"], "httponly": args["httponly"], "samesite": args["samesite"]}


# ---------------------------------------------------------------- list, compose


@router.get("/", response_class=HTMLResponse)
def home(request: Request, kind: str | None = None, done: str | None = None) -> Response:
    who = signed_in(request)
    if not who:
        return to_signin(request)
    rt = session.runtime_of(request)
    try:
        items = views.listing(rt, kind=kind if kind in KINDS else None)
    except BroadcasterError as exc:
        return error_page(request, who, exc)
    return page(request, "list.html", items=items, kind=kind, notice=DONE.get(done or ""), **_ctx(who))


@router.get("/compose", response_class=HTMLResponse)
def compose_form(request: Request, kind: str = "incident", template: str | None = None) -> Response:
    """The form, empty, or filled from a configured template (``?template=NAME``)."""
    who = signed_in(request)
    if not who:
        return to_signin(request)
    rt = session.runtime_of(request)
    values = from_template(rt, template, kind) if template else {"kind": kind}
    return page(request, "compose.html", **compose_ctx(rt, values), **_ctx(who))


@router.post("/compose")
def compose(request: Request, form: Form) -> Response:
    who = signed_in(request)
    if not who:
        return to_signin(request)
    rt = session.runtime_of(request)
    data = announcement_data(form)
    given = form.get("idempotency_key")
    key = given[:200] if isinstance(given, str) and given else None

    def again(message: str, status: int) -> HTMLResponse:
        return page(request, "compose.html", status=status, error=message,
                    **compose_ctx(rt, form_values(form, data, key)), **_ctx(who))

    if (refusal := form_refusal(request, who, form, again)) is not None:
        return refusal
    try:
        res = service.submit(rt, data, principal=who[1], idempotency_key=key and f"web:{key}")
    except BroadcasterError as exc:
        return again(str(exc), 403 if isinstance(exc, Forbidden) else 400)
    return redirect(f"/announcements/{quote(res.id)}?done=created")


# ---------------------------------------------------------------- one announcement


@router.get("/announcements/{ann_id}", response_class=HTMLResponse)
def announcement(request: Request, ann_id: str, done: str | None = None) -> Response:
    who = signed_in(request)
    if not who:
        return to_signin(request)
    try:
        data = views.detail(session.runtime_of(request), ann_id)
    except BroadcasterError as exc:
        return error_page(request, who, exc)
    rt = session.runtime_of(request)
    late = views.overdue(rt.ledger.get_announcement(ann_id), rt.clock())
    cfg = rt.settings.commitments
    holding = views.promise_value(cfg.holding_interval)
    return page(request, "announcement.html", a=data, groups=views.groups(data), notice=DONE.get(done or ""),
                statuses=views.UPDATE_STATUSES.get(data["kind"], ()), retryable=views.RETRYABLE,
                update_key=str(uuid.uuid4()), overdue=late, holding=cfg.holding_text if late else None,
                templates=sorted(templates.of_kind(rt.settings, data["kind"])),
                promises=views.promise_choices(holding if late else None), promise_default=holding if late else "",
                component_states=STATE_LABELS, **_ctx(who))


def _action(request: Request, form: FormData, ann_id: str, fn) -> Response:
    who = signed_in(request)
    if not who:
        return to_signin(request)
    if (refusal := form_refusal(request, who, form)) is not None:
        return refusal
    try:
        done = fn(session.runtime_of(request), form, who[1])
    except BroadcasterError as exc:
        return error_page(request, who, exc)
    return redirect(f"/announcements/{quote(ann_id)}?done={done}")


@router.post("/announcements/{ann_id}/updates")
def post_update(request: Request, ann_id: str, form: Form) -> Response:
    def act(rt, form, principal):
        data: dict[str, Any] = {"status": (form.get("status") or "").strip(" "), "body": form.get("body") or ""}
        for name in ("template", "next_update_at"):  # optional choices: empty means none
            value = form.get(name)
            if isinstance(value, str) and value.strip(" "):
                data[name] = value.strip(" ")
        if states := chosen_states(form):  # per-component selects; empty ones leave the state as it is
            data["component_states"] = states
        key = (form.get("idempotency_key") or "")[:200] or None
        service.add_update(rt, ann_id, data, principal=principal, idempotency_key=key and f"web:{key}")
        return "update"

    return _action(request, form, ann_id, act)


@router.post("/announcements/{ann_id}/retract")
def retract(request: Request, ann_id: str, form: Form) -> Response:
    def act(rt, form, principal):
        if form.get("confirm") != "yes":
            raise InvalidRequest("tick the box to confirm the retraction")
        service.retract(rt, ann_id, principal=principal, reason=(form.get("reason") or "")[:2000])
        return "retract"

    return _action(request, form, ann_id, act)


@router.post("/announcements/{ann_id}/cancel")
def cancel(request: Request, ann_id: str, form: Form) -> Response:
    def act(rt, form, principal):
        service.cancel_scheduled(rt, ann_id, principal=principal)
        return "cancel"

    return _action(request, form, ann_id, act)


@router.post("/deliveries/{delivery_id}/retry")
def retry(request: Request, delivery_id: str, form: Form) -> Response:
    rt = session.runtime_of(request)
    try:
        ann_id = rt.ledger.get_delivery(delivery_id).announcement_id
    except BroadcasterError as exc:
        return error_page(request, signed_in(request), exc)

    def act(rt, form, principal):
        service.retry_delivery(rt, delivery_id, principal=principal)
        return "retry"

    return _action(request, form, ann_id, act)


@router.post("/deliveries/{delivery_id}/confirm")
def confirm(request: Request, delivery_id: str, form: Form) -> Response:
    """An operator found an `unknown` post on the channel: settle it as delivered."""
    rt = session.runtime_of(request)
    try:
        ann_id = rt.ledger.get_delivery(delivery_id).announcement_id
    except BroadcasterError as exc:
        return error_page(request, signed_in(request), exc)

    def act(rt, form, principal):
        service.confirm_delivered(rt, delivery_id, principal=principal)
        return "confirm"

    return _action(request, form, ann_id, act)


# ---------------------------------------------------------------- channel health


@router.get("/channels", response_class=HTMLResponse)
def channels(request: Request) -> Response:
    who = signed_in(request)
    if not who:
        return to_signin(request)
    rt = session.runtime_of(request)
    from ..readiness import board as readiness_board, expiring_soon  # each channel's last readiness check

    ready = readiness_board(rt)
    soon = {name for name, r in ready.items() if expiring_soon(rt.settings, r)}
    return page(request, "channels.html", rows=views.board(rt), ready=ready, expiring=soon, **_ctx(who))


# ---------------------------------------------------------------- JSON for the page's scripts


def _json_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": {}}}, status_code=status,
                        headers={"Cache-Control": "no-store"})


@router.get("/ui/announcements/{ann_id}")
def ui_announcement(request: Request, ann_id: str) -> Response:
    who = signed_in(request)
    if not who:
        return _json_error(401, "unauthorized", "sign in again")
    try:
        data = views.detail(session.runtime_of(request), ann_id)
    except NotFound as exc:
        return _json_error(404, "not_found", str(exc))
    except LedgerUnavailable as exc:
        return _json_error(503, "unavailable", str(exc))
    data["groups"] = [{"id": g["id"], "label": g["label"], "deliveries": [d["id"] for d in g["deliveries"]]}
                      for g in views.groups(data)]
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


@router.post("/ui/preview")
async def ui_preview(request: Request, raw: Body) -> Response:
    """The live preview. The session was checked by the intake guard; parsing and rendering a
    large text for every channel is CPU work, done in a render slot off the event loop
    (``api/render_slots.py``) so ``/healthz`` and every other request keep being answered. The
    body is already bounded by ``api.max_body_bytes`` and the schema's limits."""
    who = signed_in(request)
    if not who:
        return _json_error(401, "unauthorized", "sign in again")
    if not session.csrf_ok(who[0], request.headers.get("x-csrf-token")):
        return _json_error(403, "csrf", "reload the page")
    try:
        return await render_slots.render(_preview, session.runtime_of(request), raw, who[1].name)
    except render_slots.Busy:
        return render_slots.busy()


def _preview(rt: Any, raw: bytes, author: str) -> JSONResponse:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        return _json_error(400, "bad_request", "the request body is not valid JSON")
    if not isinstance(body, dict):
        return _json_error(400, "bad_request", "send a JSON object")
    try:
        rows = views.preview(rt, body, author)
    except InvalidRequest as exc:
        return JSONResponse({"error": {"code": "invalid_request", "message": str(exc),
                                       "details": {"field": exc.field}}}, status_code=422)
    return JSONResponse({"channels": rows}, headers={"Cache-Control": "no-store"})

