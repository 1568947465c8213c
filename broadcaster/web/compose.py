"""The compose form: what the page offers (channels, configured components, a maintenance
window) and how a posted form becomes the service's ``AnnouncementIn`` fields.

Why a module of its own: the form is the one place where browser field shapes (ticked boxes,
``datetime-local`` values without a zone) are translated; everything after that goes through the
same request validation as the API, so the page can never accept what the API refuses.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.datastructures import FormData

from .. import components as component_names, templates
from ..models import COMPONENT_STATES, KINDS
from ..runtime import Runtime
from . import views

#: form fields re-shown after a refused submit
TEXT_FIELDS = ("kind", "title", "body", "url", "severity", "publish_at", "starts_at", "ends_at", "next_update_at",
               "template")
#: a component's explicit state is the select ``state__<component name>`` (empty: from severity)
STATE_PREFIX = "state__"
#: the states the form offers, worded as the status page words them ("Partial outage")
STATE_LABELS = {s: s.replace("_", " ").capitalize() for s in COMPONENT_STATES}


def utc_time(value: str) -> str:
    """A ``datetime-local`` value (no zone; the form says UTC) as ISO 8601 in UTC; a value that
    already names its zone is kept. Validation happens in the request model, which names the field."""
    if not value:
        return value
    has_zone = value.endswith(("Z", "z")) or "+" in value[10:] or "-" in value[10:]
    return value if has_zone else value + "Z"


def from_template(rt: Runtime, name: str, kind: str) -> dict[str, Any]:
    """The form's values from a configured template (``/compose?template=NAME``): its title, the
    text of its first phase, severity, components and promise — for the author to read and edit.
    An unknown name fills nothing (the select shows the known ones)."""
    tpl = rt.settings.templates.get(name)
    if tpl is None:
        return {"kind": kind}
    first = templates.DEFAULT_STATUS.get(tpl.kind, "")
    return {"kind": tpl.kind, "template": name, "title": tpl.title, "severity": tpl.severity or "",
            "body": tpl.phases.get(first) or next(iter(tpl.phases.values())), "components": list(tpl.components),
            "next_update_at": views.promise_value(tpl.next_update) if tpl.next_update is not None else ""}


def compose_ctx(rt: Runtime, values: dict[str, Any]) -> dict[str, Any]:
    settings = rt.settings
    kind = str(values["kind"]) if values.get("kind") in KINDS else "incident"
    chosen = values.get("channels")
    routes = {k: list(settings.route(k)) for k in KINDS}
    ticked = {str(n).casefold() for n in values.get("components") or ()}
    states = {str(k).casefold(): v for k, v in (values.get("component_states") or {}).items()}
    return {
        "values": {**values, "kind": kind},
        "channels": [{"name": n, "kind": c.kind, "description": c.description,
                      "checked": n in (chosen if chosen is not None else routes[kind])}
                     for n, c in settings.channels.items() if c.enabled],
        "components": [{"name": n, "checked": n.casefold() in ticked, "state": states.get(n.casefold(), "")}
                       for n in component_names.known(settings)],
        "component_states": STATE_LABELS,
        "templates": [{"name": n, "kind": t.kind, "title": t.title} for n, t in settings.templates.items()],
        "promises": views.promise_choices(str(values.get("next_update_at") or "") or None),
        "routes": routes,
        "idempotency_key": values.get("idempotency_key") or str(uuid.uuid4()),
    }


def ticked_components(form: FormData) -> list[str]:
    """Ticked component boxes; a comma-separated text value (older clients, scripts) is split."""
    return [name.strip(" ") for value in form.getlist("components") if isinstance(value, str)
            for name in value.split(",") if name.strip()]


def chosen_states(form: FormData) -> dict[str, str]:
    """The states picked in the per-component selects (an empty choice: the severity decides).
    A state for a component that is not ticked is passed on and refused by the service, which
    names ``component_states`` — the form never drops what the author chose."""
    return {key[len(STATE_PREFIX):]: value for key, value in form.multi_items()
            if key.startswith(STATE_PREFIX) and isinstance(value, str) and value}


def announcement_data(form: FormData) -> dict[str, Any]:
    """The compose form → the service's AnnouncementIn fields. Only plain spaces are trimmed: a
    line break or control character reaches the checks and is refused, never cleaned away."""
    def get(k: str) -> str:
        v = form.get(k)
        return v.strip(" ") if isinstance(v, str) else ""

    channels = [c for c in form.getlist("channels") if isinstance(c, str) and c]
    body = form.get("body")
    data: dict[str, Any] = {"kind": get("kind"), "title": get("title"), "body": body if isinstance(body, str) else "",
                            "channels": channels}
    if get("url"):
        data["url"] = get("url")
    if get("status"):  # a status the author chose is checked, never replaced by the default
        data["status"] = get("status")
    if get("severity") and data["kind"] == "incident":
        data["severity"] = get("severity")
    comps = ticked_components(form)
    if comps:
        data["components"] = comps
    states = chosen_states(form)
    if states:
        data["component_states"] = states
    if get("publish_at"):
        data["publish_at"] = utc_time(get("publish_at"))  # datetime-local is shown as UTC
    if get("next_update_at") and data["kind"] == "incident":
        data["next_update_at"] = get("next_update_at")  # a duration from now, as the select offers
    if data["kind"] == "maintenance" and (get("starts_at") or get("ends_at")):
        # both or neither: a half-filled window is refused by the request model, naming the field
        data["window"] = {k: utc_time(get(k)) for k in ("starts_at", "ends_at") if get(k)}
    variants = {}
    for ch in channels:
        title, vbody = get(f"variant_title__{ch}"), get(f"variant_body__{ch}")
        if title or vbody:
            variants[ch] = {k: v for k, v in (("title", title), ("body", vbody)) if v}
    if variants:
        data["variants"] = variants
    return data


def form_values(form: FormData, data: dict[str, Any], key: str | None) -> dict[str, Any]:
    """What the form showed, to show it again with the error."""
    values: dict[str, Any] = {k: form.get(k) for k in TEXT_FIELDS}
    return {**values, "components": ticked_components(form), "component_states": chosen_states(form),
            "channels": data["channels"],
            "idempotency_key": key, "variants": data.get("variants", {})}
