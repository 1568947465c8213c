"""Status-page vocabulary shared by the status channels, and the pure build of our own static
status site from its state (no file I/O here: ``statuspage.py`` writes and publishes).

Why a static site: it can be copied to hosts that do not share our fate (another provider, a
bucket), so the page that reports an outage does not go down with it. The JSON mirrors the
widely used status-page summary shape so existing widgets and monitors can read it.
"""

from __future__ import annotations

import hashlib
import html
import json
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from jinja2 import DictLoader, Environment
from markupsafe import Markup

from .. import render
from ..models import Message, Post

# ---------------------------------------------------------------- vocabulary (all status channels)

FINAL_STATUSES = frozenset({"resolved", "completed", "cancelled"})
IMPACT_RANK = {"none": 0, "maintenance": 1, "minor": 2, "major": 3, "critical": 4}
#: active incident impact → component status (Statuspage's component vocabulary)
COMPONENT_STATUS = {"minor": "degraded_performance", "major": "partial_outage", "critical": "major_outage"}
INDICATOR_TEXT = {
    "none": "All Systems Operational",
    "maintenance": "Service Under Maintenance",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
}
COMPONENT_LABELS = {
    "operational": "Operational",
    "degraded_performance": "Degraded performance",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
    "under_maintenance": "Under maintenance",
}


def default_status(kind: str) -> str:
    return {"incident": "investigating", "maintenance": "scheduled"}.get(kind, "resolved")


def status_of(post: Post) -> str:
    """The status a post announces (a Post rendered elsewhere may not carry one)."""
    return post.meta.get("status") or default_status(post.kind)


def impact_of(kind: str, severity: str | None) -> str:
    if kind == "maintenance":
        return "maintenance"
    if kind == "incident":
        return severity if severity in COMPONENT_STATUS else "minor"
    return "none"


def component_status(kind: str, status: str, severity: str | None) -> str:
    """What an announcement in ``status`` means for the components it names."""
    if status in FINAL_STATUSES:
        return "operational"
    if kind == "maintenance":
        return "under_maintenance" if status == "in_progress" else "operational"
    if kind == "incident":
        return COMPONENT_STATUS[impact_of(kind, severity)]
    return "operational"


def status_post(channel: str, message: Message) -> Post:
    """The Post every status channel sends: the announcement's facts travel in ``meta``."""
    a = message.announcement
    title, body = render.title_and_body(message, channel)
    when = render.window_line(message)
    if when:  # the first post of a maintenance states its window on every status channel too
        label, _, value = when.partition(": ")
        body = f"**{label}:** {value}" + (f"\n\n{body}" if body.strip() else "")
    status = message.status or default_status(a.kind)
    window = {"starts_at": a.window.starts_at, "ends_at": a.window.ends_at} if a.window else None
    return Post(
        channel=channel,
        kind=a.kind,
        title=title,
        text=render.markdown_to_text(body),
        html=render.markdown_to_html(body),
        url=a.url,
        reply_to=message.thread[-1] if message.thread else None,
        meta={
            "status": status,
            "update": message.is_update,
            "severity": a.severity,
            "components": list(a.components),
            "window": window,
            # providers that render the author's Markdown (Cachet) must show every link's real target
            "body": render.honest_links(body),
            "announcement_id": a.id,
            "update_id": message.update.id if message.update else None,
        },
    )


def short_id(key: str) -> str:
    """A stable 12-character id for a delivery key: re-sending the key hits the same record."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- state → views


def active(incident: dict) -> bool:
    return not incident.get("retracted_at") and incident["status"] not in FINAL_STATUSES


#: kinds that are incidents on a status page (with a status and an impact); every other kind
#: (notice, promotion, deploy) is shown as a notice: never as a resolved incident
INCIDENT_KINDS = frozenset({"incident", "maintenance"})
NOTICE_LABEL = "Notice"


def is_notice(record: dict) -> bool:
    return record.get("kind") not in INCIDENT_KINDS


def visible(state: dict) -> list[dict]:
    """Records (incidents and notices) that are shown, newest first."""
    shown = [i for i in state.get("incidents", {}).values() if not i.get("retracted_at")]
    return sorted(shown, key=lambda i: (i["created_at"], i["id"]), reverse=True)


def visible_incidents(state: dict) -> list[dict]:
    """Incidents and maintenance that are shown, newest first (no notices)."""
    return [i for i in visible(state) if not is_notice(i)]


def label_of(record: dict, status: str) -> str:
    """What a status is called on the page: a notice is a notice, whatever its stored status."""
    return NOTICE_LABEL if is_notice(record) else render.STATUS_LABELS.get(status, status)


def component_states(state: dict, names: tuple[str, ...]) -> dict[str, str]:
    """The configured components, each at its worst active status. A name an incident carries
    that is not configured is never shown (submit refuses such names; old state may hold some)."""
    order = ["operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage"]
    out = {n: "operational" for n in names}
    for inc in visible_incidents(state):
        for name in inc.get("components", []):
            if name not in out:
                continue
            if active(inc):
                st = component_status(inc["kind"], inc["status"], inc.get("severity"))
                if order.index(st) > order.index(out[name]):
                    out[name] = st
    return out


def indicator(state: dict) -> str:
    worst = "none"
    for inc in visible_incidents(state):
        if not active(inc) or (inc["kind"] == "maintenance" and inc["status"] != "in_progress"):
            continue
        if IMPACT_RANK[inc["impact"]] > IMPACT_RANK[worst]:
            worst = inc["impact"]
    return worst


# ---------------------------------------------------------------- JSON (status-page summary shape)


def _component_json(name: str, status: str, page: dict, position: int, now: str) -> dict[str, Any]:
    return {
        "id": short_id(f"component:{name}"), "name": name, "status": status, "created_at": now,
        "updated_at": now, "position": position, "description": None, "showcase": True,
        "start_date": None, "group_id": None, "page_id": page["id"], "group": False,
        "only_show_if_degraded": False,
    }


def _incident_json(inc: dict, page: dict, site_url: str | None, components: tuple[str, ...]) -> dict[str, Any]:
    final = inc["status"] in FINAL_STATUSES
    updates = [
        {
            "id": u["id"], "status": u["status"], "body": u["body"], "incident_id": inc["id"],
            "created_at": iso(u["created_at"]), "updated_at": iso(u["created_at"]),
            "display_at": iso(u["created_at"]), "affected_components": None,
        }
        for u in reversed(inc["updates"])
    ]
    out = {
        "id": inc["id"], "name": inc["name"], "status": inc["status"], "impact": inc["impact"],
        "created_at": iso(inc["created_at"]), "updated_at": iso(inc["updated_at"]),
        "started_at": iso(inc["created_at"]),
        "monitoring_at": iso(next((u["created_at"] for u in inc["updates"] if u["status"] == "monitoring"), None)),
        "resolved_at": iso(inc["updated_at"]) if final else None,
        "shortlink": page_link(site_url, f"incidents/{inc['id']}.html"), "page_id": page["id"],
        "incident_updates": updates,
        "components": [{"id": short_id(f"component:{c}"), "name": c} for c in inc.get("components", [])
                       if c in components],
    }
    if inc["kind"] == "maintenance":
        window = inc.get("window") or {}
        out["scheduled_for"] = iso(window.get("starts_at"))
        out["scheduled_until"] = iso(window.get("ends_at"))
    return out


def page_link(site_url: str | None, path: str) -> str:
    return f"{site_url.rstrip('/')}/{path}" if site_url else path


def summary(state: dict, *, title: str, components: tuple[str, ...], site_url: str | None, now: float) -> dict:
    stamp = iso(state.get("updated_at") or now) or ""  # never empty: ``now`` is a time
    page = {"id": short_id(f"page:{title}"), "name": title, "url": site_url or "", "time_zone": "Etc/UTC",
            "updated_at": stamp}
    ind = indicator(state)
    comps = component_states(state, components)
    incidents = [_incident_json(i, page, site_url, components) for i in visible_incidents(state)]
    return {
        "page": page,
        "status": {"indicator": ind, "description": INDICATOR_TEXT[ind]},
        "components": [_component_json(n, s, page, p, stamp) for p, (n, s) in enumerate(comps.items(), 1)],
        "incidents": [i for i in incidents if i["impact"] != "maintenance" and i["status"] not in FINAL_STATUSES],
        "scheduled_maintenances": [
            i for i in incidents if i["impact"] == "maintenance" and i["status"] not in FINAL_STATUSES
        ],
    }


def dump_json(data: Any) -> bytes:
    """JSON with ``<``, ``>`` and ``&`` escaped, so no text can be mistaken for markup."""
    text = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n").encode()


# ---------------------------------------------------------------- HTML


_TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{{ title }}{% endblock %}</title>
<link rel="alternate" type="application/atom+xml" title="{{ title }}" href="{{ root }}feed.atom">
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
.banner{padding:1rem;border-radius:.4rem;color:#fff;background:#2e7d32}
.banner.minor{background:#f9a825}.banner.major{background:#ef6c00}.banner.critical{background:#c62828}
.banner.maintenance{background:#1565c0}
ul.components{list-style:none;padding:0}ul.components li{display:flex;justify-content:space-between;
border-bottom:1px solid #eee;padding:.4rem 0}
.update{border-left:3px solid #ccc;padding-left:.8rem;margin:1rem 0}small{color:#666}
</style></head><body>
<header><h1><a href="{{ root }}index.html">{{ title }}</a></h1></header>
{% block content %}{% endblock %}
<footer><small>Updated {{ updated }} · <a href="{{ root }}feed.atom">Atom feed</a> ·
<a href="{{ root }}api/v2/summary.json">JSON</a></small></footer>
</body></html>
""",
    "index.html": """{% extends "base.html" %}{% block content %}
<p class="banner {{ indicator }}">{{ description }}</p>
{% if components %}<h2>Components</h2><ul class="components">
{% for name, status in components.items() %}<li><span>{{ name }}</span><span>{{ labels[status] }}</span></li>
{% endfor %}</ul>{% endif %}
{% if active %}<h2>Active</h2>{% for inc in active %}{% include "card.html" %}{% endfor %}{% endif %}
<h2>History</h2>{% for inc in history %}{% include "card.html" %}{% else %}<p>No incidents reported.</p>{% endfor %}
{% if notices %}<h2>Notices</h2>{% for inc in notices %}{% include "card.html" %}{% endfor %}{% endif %}
{% endblock %}""",
    "card.html": """<article><h3><a href="incidents/{{ inc.id }}.html">{{ inc.name }}</a></h3>
<p><strong>{{ inc.label }}</strong> — {{ inc.updates[-1].text }}</p>
<small>{{ inc.updated }}</small></article>
""",
    "incident.html": """{% extends "base.html" %}{% block title %}{{ inc.name }} · {{ title }}{% endblock %}
{% block content %}<h2>{{ inc.name }}</h2>
<p><small>{% if inc.notice %}Notice{% else %}Impact: {{ inc.impact }}{% endif %}
{%- if inc.components %} · Affects: {{ inc.components | join(", ") }}{% endif %}</small></p>
{% if inc.url %}<p><a href="{{ inc.url }}">{{ inc.url }}</a></p>{% endif %}
{% for u in inc.updates | reverse %}<section class="update"><h3>{{ u.label }}</h3>
{{ u.html }}<small>{{ u.at }}</small></section>{% endfor %}
{% endblock %}""",
}

_env = Environment(loader=DictLoader(_TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _safe_url(url: str | None) -> str | None:
    return url if url and url.startswith(("https://", "http://")) else None


def _view(inc: dict, components: tuple[str, ...]) -> dict:
    """Template view of an incident or notice: bodies become HTML that ``markdown_to_html``
    escaped; only configured components are named."""
    return {
        **inc,
        "notice": is_notice(inc),
        "label": label_of(inc, inc["status"]),
        "components": [c for c in inc.get("components", []) if c in components],
        "url": _safe_url(inc.get("url")),
        "updated": iso(inc["updated_at"]),
        "updates": [
            {**u, "html": Markup(render.markdown_to_html(u["body"])), "text": render.markdown_to_text(u["body"])[:280],
             "at": iso(u["created_at"]), "label": label_of(inc, u["status"])}
            for u in inc["updates"]
        ],
    }


def build_site(state: dict, *, title: str, components: tuple[str, ...], site_url: str | None,
               history: int, now: float) -> dict[str, bytes]:
    """Every file of the site, by relative path. Pure: the same state gives the same bytes."""
    data = summary(state, title=title, components=components, site_url=site_url, now=now)
    shown = [_view(i, components) for i in visible(state)]
    incidents = [i for i in shown if not i["notice"]]
    common = {"title": title, "updated": data["page"]["updated_at"], "labels": COMPONENT_LABELS,
              "statuses": render.STATUS_LABELS}
    files = {
        "index.html": _env.get_template("index.html").render(
            **common, root="", indicator=data["status"]["indicator"], description=data["status"]["description"],
            components=component_states(state, components),
            active=[i for i in incidents if i["status"] not in FINAL_STATUSES],
            history=[i for i in incidents if i["status"] in FINAL_STATUSES][:history],
            notices=[i for i in shown if i["notice"]][:history],
        ).encode(),
        "feed.atom": atom(state, title=title, site_url=site_url, now=now),
        "api/v2/summary.json": dump_json(data),
        "api/v2/status.json": dump_json({"page": data["page"], "status": data["status"]}),
        "api/v2/components.json": dump_json({"page": data["page"], "components": data["components"]}),
        "api/v2/incidents/unresolved.json": dump_json({"page": data["page"], "incidents": data["incidents"]}),
    }
    page = data["page"]
    files["api/v2/incidents.json"] = dump_json(
        {"page": page, "incidents": [_incident_json(i, page, site_url, components)
                                      for i in visible_incidents(state)][:history]})
    for inc in shown:
        files[f"incidents/{inc['id']}.html"] = _env.get_template("incident.html").render(
            **common, root="../", inc=inc).encode()
    return files


# ---------------------------------------------------------------- Atom


def atom(state: dict, *, title: str, site_url: str | None, now: float) -> bytes:
    """An Atom 1.0 feed, one entry per incident; built with ElementTree so it is always well-formed."""
    ns = "http://www.w3.org/2005/Atom"
    ET.register_namespace("", ns)
    base = site_url or "urn:broadcaster:status"

    def el(parent, tag, text=None, **attrs):
        node = ET.SubElement(parent, f"{{{ns}}}{tag}", attrs)
        if text is not None:
            node.text = text
        return node

    feed = ET.Element(f"{{{ns}}}feed")
    el(feed, "id", f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, base + '#feed:' + title)}")
    el(feed, "title", title)
    el(feed, "updated", iso(state.get("updated_at") or now))
    author = el(feed, "author")
    el(author, "name", title)
    if site_url:
        el(feed, "link", rel="alternate", href=page_link(site_url, "index.html"))
        el(feed, "link", rel="self", href=page_link(site_url, "feed.atom"))
    for inc in visible(state)[:50]:
        entry = el(feed, "entry")
        el(entry, "id", f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, base + '#incident:' + inc['id'])}")
        el(entry, "title", f"[{label_of(inc, inc['status'])}] {inc['name']}")
        el(entry, "updated", iso(inc["updated_at"]))
        el(entry, "published", iso(inc["created_at"]))
        el(entry, "link", rel="alternate", href=page_link(site_url, f"incidents/{inc['id']}.html"))
        body = "".join(
            f"<p><strong>{html.escape(label_of(inc, u['status']))}</strong>"
            f" ({iso(u['created_at'])})</p>"
            + render.markdown_to_html(u["body"])
            for u in reversed(inc["updates"])
        )
        el(entry, "content", body, type="html")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"
