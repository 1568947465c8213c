"""Incident templates (``templates:`` in the configuration): prepared wordings an author picks
instead of writing under pressure — a title, severity, components, a "next update" promise and
a body per lifecycle phase (status).

Pure functions over validated requests: the service, the preview and break-glass call them, so a
template means the same wherever it is chosen. What the request gives always wins; a template
only fills what is left out.
"""

from __future__ import annotations

from typing import TypeVar

from . import wording
from .config import Settings, TemplateSettings
from .errors import InvalidRequest
from .models import Announcement
from .requests import AnnouncementIn, UpdateIn

DEFAULT_STATUS = {"incident": "investigating", "maintenance": "scheduled"}
Req = TypeVar("Req", bound=AnnouncementIn)


def get(settings: Settings, name: str, kind: str) -> TemplateSettings:
    """The template ``name`` for an announcement of ``kind``; InvalidRequest naming ``template``."""
    tpl = settings.templates.get(name)
    if tpl is None:
        known = sorted(n for n, t in settings.templates.items() if t.kind == kind)
        choice = f"known {kind} templates: {', '.join(known)}" if known else f"no {kind} templates are configured"
        raise InvalidRequest(f"template: unknown template {name!r}; {choice}", field="template",
                             details={"known": known})
    if tpl.kind != kind:
        raise InvalidRequest(f"template: {name!r} is {wording.a(tpl.kind)} template, not for {wording.a(kind)}", field="template")
    return tpl


def of_kind(settings: Settings, kind: str) -> dict[str, TemplateSettings]:
    return {n: t for n, t in settings.templates.items() if t.kind == kind}


def _promise(tpl: TemplateSettings) -> str | None:
    return f"{tpl.next_update:g}s" if tpl.next_update is not None else None


def expand(settings: Settings, req: Req, *, need_title: bool = True) -> Req:
    """``req`` with its template's title, body (the phase of its status), severity, components
    and promise where ``req`` has none. A title is required after that (``need_title``)."""
    if req.template:
        tpl = get(settings, req.template, req.kind)
        status = req.status or DEFAULT_STATUS.get(req.kind)
        fill: dict = {}
        if not req.title:
            fill["title"] = tpl.title
        if not req.body and status in tpl.phases:
            fill["body"] = tpl.phases[status]
        if req.severity is None and tpl.severity and req.kind == "incident":
            fill["severity"] = tpl.severity
        if not req.components and tpl.components:
            fill["components"] = list(tpl.components)
        if req.next_update_at is None and (promise := _promise(tpl)) is not None:
            fill["next_update_at"] = promise
        req = req.model_copy(update=fill)
    if need_title and not req.title:
        raise InvalidRequest("title: required (or a template that gives one)", field="title")
    return req


def for_update(settings: Settings, ann: Announcement, req: UpdateIn) -> UpdateIn:
    """``req`` with its template's wording of ``req.status`` (and promise) where ``req`` has none.
    A body is required after that."""
    if req.template:
        tpl = get(settings, req.template, ann.kind)
        fill: dict = {}
        if not req.body:
            if req.status not in tpl.phases:
                raise InvalidRequest(f"template: {req.template!r} has no text for {req.status!r} (it words "
                                     f"{', '.join(tpl.phases)}); write the body", field="template")
            fill["body"] = tpl.phases[req.status]
        if req.next_update_at is None and req.status != "resolved" and (promise := _promise(tpl)) is not None:
            fill["next_update_at"] = promise
        req = req.model_copy(update=fill)
    if not req.body:
        raise InvalidRequest("body: required (or a template that words this status)", field="body")
    return req
