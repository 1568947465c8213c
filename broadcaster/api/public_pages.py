"""The small public pages of subscribing (the forms, confirmation and unsubscribe pages) and
the helpers their routes share: reading a posted form or JSON object, refusing a browser's
cross-site POST, and the configured components as tick boxes.

Why plain HTML strings: these pages are served by the API to anyone, must work without
JavaScript and carry nothing but escaped values; every value goes through ``html.escape``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse

from .. import components as component_names
from ..config import Settings
from ..errors import Forbidden, InvalidRequest
from ..origins import came_from
from ..runtime import Runtime


def wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


@dataclass(frozen=True)
class Form:
    """A form on a public page: POSTed to ``action`` with hidden ``fields``."""

    action: str
    fields: dict[str, str]
    button: str
    checkbox: tuple[str, str, bool] | None = None  # (name, label, checked)
    note: str = ""


def page(title: str, paragraphs: list[str], forms: tuple[Form, ...] = (), status: int = 200,
          markup: str = "") -> HTMLResponse:
    """A small public page; ``markup`` is trusted HTML built by the caller (escaped values only)."""
    e = html.escape
    parts = [f"<p>{e(p)}</p>" for p in paragraphs]
    for f in forms:
        inputs = "".join(f'<input type="hidden" name="{e(k, quote=True)}" value="{e(v, quote=True)}">'
                         for k, v in f.fields.items())
        if f.checkbox:
            name, label, checked = f.checkbox
            inputs += (f'<p><label><input type="checkbox" name="{e(name, quote=True)}" value="yes"'
                       f'{" checked" if checked else ""}> {e(label)}</label></p>')
        note = f"<p><small>{e(f.note)}</small></p>" if f.note else ""
        parts.append(f'<form method="post" action="{e(f.action, quote=True)}">{inputs}'
                     f'<button type="submit">{e(f.button)}</button></form>{note}')
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{e(title)}</title></head>'
            f'<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">'
            f'<h1>{e(title)}</h1>{"".join(parts)}{markup}</body></html>')
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store",
                                                            "Referrer-Policy": "no-referrer"})


def html_error(request: Request, exc: Exception) -> HTMLResponse:
    if isinstance(exc, InvalidRequest) and wants_html(request):
        return page("This link does not work", [str(exc)], status=422)
    raise exc


async def fields_of(request: Request, joined: tuple[str, ...] = ()) -> dict[str, str]:
    """The POSTed fields, from a form or a JSON object (values as text; booleans as yes/no).
    A form field repeated (ticked boxes) keeps its last value, or all of them joined by commas
    when it is named in ``joined``."""
    raw = await request.body()
    if not raw:
        return {}
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            raise InvalidRequest("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        return {str(k): ("yes" if v is True else "no" if v is False else str(v)) for k, v in data.items()
                if v is not None}
    return {k: ",".join(v) if k in joined else v[-1]
            for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}


def component_boxes(settings: Settings, legend: str = "Only about these components (none ticked: all of them)") -> str:
    """The configured components as tick boxes named ``components`` (nothing when none are
    configured): a subscriber picks from the names posts use, instead of guessing spellings."""
    e = html.escape
    names = component_names.known(settings)
    if not names:
        return ""
    boxes = "".join(f'<label style="display:block"><input type="checkbox" name="components" '
                    f'value="{e(n, quote=True)}"> {e(n)}</label>' for n in names)
    return f"<fieldset><legend>{e(legend)}</legend>{boxes}</fieldset>"


def token_of(query: str | None, fields: dict[str, str]) -> str:
    token = fields.get("token") or query
    if not token:
        raise InvalidRequest("token: the link's token is missing", field="token")
    if len(token) > 1000:
        raise InvalidRequest("token: too long", field="token")
    return token


def refuse_cross_site(request: Request, rt: Runtime) -> None:
    """A browser tells where a POST comes from: consent is given only from our own page. (The
    signed token is what authorises it; this stops a page elsewhere from posting a token it
    somehow got.) Clients that send neither header — mail clients, curl — are not browsers.

    ``Origin: null`` is what a browser sends for a form on our own page too: these pages carry
    ``Referrer-Policy: no-referrer`` (their URL holds a token), and Chromium then hides the
    origin. ``Sec-Fetch-Site`` still tells: ``same-origin`` passes, ``cross-site`` (a page
    elsewhere, a sandboxed frame) does not."""
    if came_from(request.headers, (rt.settings.public_url, str(request.base_url))) is False:
        raise Forbidden("confirm on the page the link opens")
