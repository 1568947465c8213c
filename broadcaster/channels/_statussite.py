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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from .. import render
from ..models import Message, Post
from . import _statusbadge as badge, _statushistory as history, _statustime as when
from ._statusi18n import ENGLISH, Catalogue, catalogue
from ._statuspages import env as _env

# ---------------------------------------------------------------- vocabulary (all status channels)

FINAL_STATUSES = frozenset({"resolved", "completed", "cancelled"})
IMPACT_RANK = {"none": 0, "maintenance": 1, "minor": 2, "major": 3, "critical": 4}
#: active incident impact → component status (Statuspage's component vocabulary)
COMPONENT_STATUS = {"minor": "degraded_performance", "major": "partial_outage", "critical": "major_outage"}
#: the banner's words in the JSON (``status.description``), which stays English for clients; the
#: page shows the same from its catalogue (``indicator.<key>``) in its own language
INDICATOR_TEXT = {key: ENGLISH.text(f"indicator.{key}") for key in (
    "none", "maintenance", "minor", "major", "critical", "loose_maintenance", "loose_incident")}
#: component states in English (messages of other channels); the page takes ``state.<state>``
COMPONENT_LABELS = {st: ENGLISH.text(f"state.{st}") for st in (
    "operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance")}


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
            "component_states": dict(a.component_states),
            "window": window,
            # providers that render the author's Markdown (Cachet) must show every link's real target
            "body": render.honest_links(body),
            "announcement_id": a.id,
            "update_id": message.update.id if message.update else None,
            "next_update_at": a.next_update_at,  # the promise standing when this post is made
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


@dataclass(frozen=True)
class Site:
    """What a build needs besides the state: the page's configuration and the build time."""

    title: str
    components: tuple[str, ...]
    site_url: str | None
    now: float
    history: int = 50
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: the API's public subscribe form (a link only: the page never calls the API)
    subscribe_url: str | None = None
    #: the API's public webhook (endpoint) form, likewise a link only
    subscribe_webhook_url: str | None = None
    #: the page's language: its catalogue (``status_locales/<language>.json``)
    language: str = "en"


def effective_status(inc: dict, now: float) -> str:
    """The status a record has at ``now``: a maintenance still marked ``scheduled`` is in
    progress once its window opens and completed once it closes (nobody needs to post that);
    one the author moved on (``in_progress``, ``completed``…) keeps the author's word."""
    status = str(inc["status"])
    window = inc.get("window") or None
    if inc.get("kind") == "maintenance" and status == "scheduled" and window:
        if now >= window["ends_at"]:
            return "completed"
        if now >= window["starts_at"]:
            return "in_progress"
    return status


def active(incident: dict, now: float) -> bool:
    return not incident.get("retracted_at") and effective_status(incident, now) not in FINAL_STATUSES


#: kinds that are incidents on a status page (with a status and an impact); every other kind
#: (notice, promotion, deploy) is shown as a notice: never as a resolved incident
INCIDENT_KINDS = frozenset({"incident", "maintenance"})
NOTICE_LABEL = ENGLISH.text("status.notice")
#: component state → the page indicator it stands for (Statuspage's vocabulary)
STATE_INDICATOR = {"operational": "none", "under_maintenance": "maintenance", "degraded_performance": "minor",
                   "partial_outage": "major", "major_outage": "critical"}


#: kinds never listed on the status site (its index, history, feed and JSON): a status page
#: is no place for marketing. The record keeps its own page, so a receipt's link still works.
UNLISTED_KINDS = frozenset({"promotion"})


def is_notice(record: dict) -> bool:
    return record.get("kind") not in INCIDENT_KINDS


def listed(record: dict) -> bool:
    return record.get("kind") not in UNLISTED_KINDS


def visible(state: dict) -> list[dict]:
    """Records (incidents and notices) that are shown, newest first."""
    shown = [i for i in state.get("incidents", {}).values() if not i.get("retracted_at")]
    return sorted(shown, key=lambda i: (i["created_at"], i["id"]), reverse=True)


def visible_incidents(state: dict) -> list[dict]:
    """Incidents and maintenance that are shown, newest first (no notices)."""
    return [i for i in visible(state) if not is_notice(i)]


def label_of(record: dict, status: str, t: Catalogue = ENGLISH) -> str:
    """What a status is called on the page: a notice is a notice, whatever its stored status; a
    free label (an update of a deploy: ``rolled back``) is shown as written."""
    if is_notice(record):
        return t.text("status.notice")
    return t.text(f"status.{status}") if t.has(f"status.{status}") else status


def state_for(inc: dict, status: str, name: str) -> str:
    """The state ``inc`` in ``status`` gives component ``name``: the author's explicit choice
    (``component_states``) while the record is open, else the rule of its severity."""
    default = component_status(inc["kind"], status, inc.get("severity"))
    explicit = (inc.get("component_states") or {}).get(name)
    if explicit in COMPONENT_LABELS and status not in FINAL_STATUSES and default != "operational":
        return str(explicit)
    return default


def component_states(state: dict, site: Site) -> dict[str, str]:
    """The configured components, each at its worst current state. A name an incident carries
    that is not configured is never shown (submit refuses such names; old state may hold some)."""
    out = {n: "operational" for n in site.components}
    for inc in visible_incidents(state):
        if not active(inc, site.now):
            continue
        status = effective_status(inc, site.now)
        for name in inc.get("components", []):
            if name in out:
                out[name] = history.worse(out[name], state_for(inc, status, name))
    return out


def indicator(state: dict, site: Site) -> tuple[str, str]:
    """(indicator, banner text in English — the JSON's ``status.description``): see :func:`banner`."""
    ind, key = banner(state, site)
    return ind, INDICATOR_TEXT[key]


def banner(state: dict, site: Site) -> tuple[str, str]:
    """(indicator, banner key), derived from the worst component state — so the banner never
    reads "outage" while every component reads Operational. An open record that names no
    configured component still raises the indicator (clients must learn of it), but the banner
    says what is known: an incident or maintenance is under way. The banner's words are
    ``INDICATOR_TEXT[key]`` (JSON) or the catalogue's ``indicator.<key>`` (the page)."""
    worst = "operational"
    for st in component_states(state, site).values():
        worst = history.worse(worst, st)
    ind = STATE_INDICATOR[worst]
    if ind != "none":
        return ind, ind
    loose = "none"
    for inc in visible_incidents(state):
        named = [c for c in inc.get("components", []) if c in site.components]
        status = effective_status(inc, site.now)
        if named or not active(inc, site.now) or (inc["kind"] == "maintenance" and status != "in_progress"):
            continue
        if IMPACT_RANK[inc["impact"]] > IMPACT_RANK[loose]:
            loose = inc["impact"]
    if loose == "none":
        return "none", "none"
    return loose, ("loose_maintenance" if loose == "maintenance" else "loose_incident")


# ---------------------------------------------------------------- JSON (Statuspage's public v2 shapes)


def _component_json(name: str, status: str, page: dict, position: int, now: str,
                    group_id: str | None) -> dict[str, Any]:
    return {
        "id": short_id(f"component:{name}"), "name": name, "status": status, "created_at": now,
        "updated_at": now, "position": position, "description": None, "showcase": True,
        "start_date": None, "group_id": group_id, "page_id": page["id"], "group": False,
        "only_show_if_degraded": False,
    }


def components_json(state: dict, site: Site, page: dict, stamp: str) -> list[dict[str, Any]]:
    """Components, then each group as a component with ``group: true`` and its members' ids."""
    comps = component_states(state, site)
    member_of = {m: g for g, members in site.groups.items() for m in members}
    out = [_component_json(n, s, page, p, stamp, short_id(f"group:{member_of[n]}") if n in member_of else None)
           for p, (n, s) in enumerate(comps.items(), 1)]
    for p, (group, members) in enumerate(site.groups.items(), len(out) + 1):
        worst = "operational"
        for m in members:
            worst = history.worse(worst, comps.get(m, "operational"))
        g = _component_json(group, worst, page, p, stamp, None)
        g.update(id=short_id(f"group:{group}"), group=True, components=[short_id(f"component:{m}") for m in members])
        out.append(g)
    return out


def _incident_json(inc: dict, page: dict, site: Site) -> dict[str, Any]:
    status = effective_status(inc, site.now)
    final = status in FINAL_STATUSES
    named = [c for c in inc.get("components", []) if c in site.components]
    updates = [
        {
            "id": u["id"], "status": u["status"], "body": u["body"], "incident_id": inc["id"],
            "created_at": iso(u["created_at"]), "updated_at": iso(u["created_at"]),
            "display_at": iso(u["created_at"]),
            "affected_components": [
                {"code": short_id(f"component:{c}"), "name": c, "old_status": "operational",
                 "new_status": state_for(inc, u["status"], c)} for c in named] or None,
        }
        for u in reversed(inc["updates"])
    ]
    ended = inc["updated_at"]
    if final and status != inc["status"]:  # completed by its window, not by a post
        ended = (inc.get("window") or {}).get("ends_at", ended)
    out = {
        "id": inc["id"], "name": inc["name"], "status": status, "impact": inc["impact"],
        "created_at": iso(inc["created_at"]), "updated_at": iso(inc["updated_at"]),
        "started_at": iso(inc["created_at"]),
        "monitoring_at": iso(next((u["created_at"] for u in inc["updates"] if u["status"] == "monitoring"), None)),
        "resolved_at": iso(ended) if final else None,
        "shortlink": page_link(site.site_url, f"incidents/{inc['id']}.html"), "page_id": page["id"],
        "incident_updates": updates,
        "components": [{"id": short_id(f"component:{c}"), "name": c, "status": state_for(inc, status, c)}
                       for c in named],
    }
    if inc["kind"] == "maintenance":
        window = inc.get("window") or {}
        out["scheduled_for"] = iso(window.get("starts_at"))
        out["scheduled_until"] = iso(window.get("ends_at"))
    return out


def page_link(site_url: str | None, path: str) -> str:
    return f"{site_url.rstrip('/')}/{path}" if site_url else path


def api_v2(state: dict, site: Site) -> dict[str, dict]:
    """Every ``api/v2/*.json`` document, by path, in the shapes Statuspage documents for its
    public page API (so its clients and widgets read our static site unchanged)."""
    stamp = iso(state.get("updated_at") or site.now) or ""  # never empty: ``now`` is a time
    page = {"id": short_id(f"page:{site.title}"), "name": site.title, "url": site.site_url or "",
            "time_zone": "Etc/UTC", "updated_at": stamp}
    ind, text = indicator(state, site)
    status = {"indicator": ind, "description": text}
    comps = components_json(state, site, page, stamp)
    records = [_incident_json(i, page, site) for i in visible_incidents(state)]
    incidents = [i for i in records if i["impact"] != "maintenance"]
    maint = [i for i in records if i["impact"] == "maintenance"]
    unresolved = [i for i in incidents if i["status"] not in FINAL_STATUSES]
    upcoming = [i for i in maint if i["status"] == "scheduled"]
    in_progress = [i for i in maint if i["status"] in ("in_progress", "verifying")]
    return {
        "summary.json": {"page": page, "status": status, "components": comps, "incidents": unresolved,
                         "scheduled_maintenances": upcoming + in_progress},
        "status.json": {"page": page, "status": status},
        "components.json": {"page": page, "components": comps},
        "incidents.json": {"page": page, "incidents": incidents[:site.history]},
        "incidents/unresolved.json": {"page": page, "incidents": unresolved},
        "scheduled-maintenances.json": {"page": page, "scheduled_maintenances": maint[:site.history]},
        "scheduled-maintenances/upcoming.json": {"page": page, "scheduled_maintenances": upcoming},
        "scheduled-maintenances/active.json": {"page": page, "scheduled_maintenances": in_progress},
    }


def dump_json(data: Any) -> bytes:
    """JSON with ``<``, ``>`` and ``&`` escaped, so no text can be mistaken for markup."""
    text = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n").encode()


# ---------------------------------------------------------------- HTML


def _safe_url(url: str | None) -> str | None:
    return url if url and url.startswith(("https://", "http://")) else None


def _view(inc: dict, site: Site, t: Catalogue = ENGLISH) -> dict:
    """Template view of an incident or notice: bodies become HTML that ``markdown_to_html``
    escaped; only configured components are named; times read as people read them, in the
    page's language."""
    now = site.now
    status = effective_status(inc, now)
    named = [c for c in inc.get("components", []) if c in site.components]
    final = status in FINAL_STATUSES
    ended = inc["updated_at"] if final else now
    if final and status != inc["status"]:
        ended = (inc.get("window") or {}).get("ends_at", ended)
    window = inc.get("window") or None
    return {
        **inc,
        "status": status,
        "notice": is_notice(inc),
        "label": label_of(inc, status, t),
        "impact_label": _impact(inc.get("impact") or "none", t),
        "components": named,
        "states": {c: t.text(f"state.{state_for(inc, status, c)}") for c in named},
        "affects": ", ".join(f"{c} ({t.text(f'state.{state_for(inc, status, c)}')})" for c in named),
        "url": _safe_url(inc.get("url")),
        "updated": when.time_html(inc["updated_at"], now, t=t),
        "started": when.time_html(inc["created_at"], now, t=t),
        "duration": t.duration(max(0.0, ended - inc["created_at"])),
        "final": final,
        "month": t.month(inc["created_at"]),
        "window": {"starts": when.time_html(window["starts_at"], now, zone=True, t=t),
                   "ends": when.time_html(window["ends_at"], now, zone=True, t=t)} if window else None,
        "next_update": when.time_html(inc["next_update_at"], now, t=t)
        if inc.get("next_update_at") and not final and not is_notice(inc) else None,
        "updates": [
            {**u, "html": Markup(render.markdown_to_html(u["body"])), "text": render.markdown_to_text(u["body"])[:280],
             "at": when.time_html(u["created_at"], now, t=t), "label": label_of(inc, u["status"], t),
             "states": {c: t.text(f"state.{state_for(inc, u['status'], c)}") for c in named}}
            for u in inc["updates"]
        ],
    }


def _impact(impact: str, t: Catalogue) -> str:
    return t.text(f"impact.{impact}") if t.has(f"impact.{impact}") else impact


def _bars(state: dict, site: Site, t: Catalogue = ENGLISH) -> list[dict]:
    """Per component: the 90-day bar and the uptime over those days."""
    records = visible_incidents(state)
    out = []
    for name in site.components:
        spans = [s for inc in records if name in inc.get("components", [])
                 for s in history.segments(inc, name, site.now, state_for)]
        days = []
        for d in history.bar(spans, site.now):
            detail = "; ".join(f"{t.text(f'state.{st}')} {t.duration(spent)}" for st, spent in sorted(
                d["spent"].items(), key=lambda kv: history.ORDER.index(kv[0]), reverse=True))
            days.append({"state": d["state"], "title": t.text("bar.day", day=t.day(d["start"]),
                                                             detail=detail or t.text("bar.no_incidents"))})
        bar = history.bar(spans, site.now)
        uptime = f"{history.uptime(spans, site.now):.2f}".replace(".", t.text("number.decimal"))
        out.append({"name": name, "uptime": uptime, "days": days,
                    "first": t.day(bar[0]["start"]), "last": t.day(bar[-1]["start"]),
                    "bad": [d["title"] for d in days if d["state"] != "operational"]})
    return out


def build_site(state: dict, site: Site) -> dict[str, bytes]:
    """Every file of the site, by relative path. Pure: the same state and time give the same bytes."""
    docs = api_v2(state, site)
    t = catalogue(site.language)
    ind, key = banner(state, site)
    text = t.text(f"indicator.{key}")
    shown = [_view(i, site, t) for i in visible(state)]
    incidents = [i for i in shown if not i["notice"]]
    comps = component_states(state, site)
    grouped = {m for members in site.groups.values() for m in members}
    common = {"title": site.title, "updated": when.time_html(state.get("updated_at") or site.now, site.now, t=t),
              "labels": {st: t.text(f"state.{st}") for st in COMPONENT_LABELS}, "indicator": ind,
              "description": text, "_": t, "lang": t.language}
    months: dict[str, list[dict]] = {}
    for inc in incidents:
        if inc["final"]:
            months.setdefault(inc["month"], []).append(inc)
    files = {
        "index.html": _env.get_template("index.html").render(
            **common, root="",
            components=comps, bars={b["name"]: b for b in _bars(state, site, t)},
            groups=[(g, [m for m in members if m in comps]) for g, members in site.groups.items()],
            loose=[c for c in comps if c not in grouped], subscribe_url=site.subscribe_url,
            subscribe_webhook_url=site.subscribe_webhook_url,
            feeds={c: f"feeds/{short_id(f'component:{c}')}.atom" for c in comps},
            upcoming=[i for i in incidents if i["kind"] == "maintenance" and i["status"] == "scheduled"],
            active=[i for i in incidents if not i["final"] and i["status"] != "scheduled"],
            history=[i for i in incidents if i["final"]][:site.history],
            notices=[i for i in shown if i["notice"] and listed(i)][:site.history],
        ).encode(),
        "history.html": _env.get_template("history.html").render(**common, root="", months=months).encode(),
        "widget.html": _env.get_template("widget.html").render(**common, root="", components=comps).encode(),
        "status.js": when.script(t).encode(),
        "feed.atom": atom(state, title=site.title, site_url=site.site_url, now=site.now, t=t),
        "badge.svg": badge.svg(t.text("badge.label"), text if ind != "none" else t.text("badge.operational"),
                               badge.COLOURS[ind]),
    }
    for name in comps:
        files[f"feeds/{short_id(f'component:{name}')}.atom"] = atom(
            state, title=site.title, site_url=site.site_url, now=site.now, component=name, t=t)
    for name, st in comps.items():
        files[f"badges/{short_id(f'component:{name}')}.svg"] = badge.svg(
            name, t.text(f"badge.{st}"), badge.COLOURS[STATE_INDICATOR[st]])
    for path, doc in docs.items():
        files[f"api/v2/{path}"] = dump_json(doc)
    for inc in shown:
        files[f"incidents/{inc['id']}.html"] = _env.get_template("incident.html").render(
            **common, root="../", inc=inc).encode()
    return files


# ---------------------------------------------------------------- Atom


def atom(state: dict, *, title: str, site_url: str | None, now: float, component: str | None = None,
         t: Catalogue = ENGLISH) -> bytes:
    """An Atom 1.0 feed, one entry per incident (only those naming ``component`` when given:
    a reader can follow just the part they use); built with ElementTree so it is always
    well-formed."""
    path = f"feeds/{short_id(f'component:{component}')}.atom" if component else "feed.atom"
    if component:
        title = f"{title} · {component}"
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
        el(feed, "link", rel="self", href=page_link(site_url, path))
    records = [i for i in visible(state) if listed(i)]
    if component:
        records = [i for i in records if not is_notice(i) and component in i.get("components", [])]
    for inc in records[:50]:
        entry = el(feed, "entry")
        el(entry, "id", f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, base + '#incident:' + inc['id'])}")
        el(entry, "title", f"[{label_of(inc, inc['status'], t)}] {inc['name']}")
        el(entry, "updated", iso(inc["updated_at"]))
        el(entry, "published", iso(inc["created_at"]))
        el(entry, "link", rel="alternate", href=page_link(site_url, f"incidents/{inc['id']}.html"))
        body = "".join(
            f"<p><strong>{html.escape(label_of(inc, u['status'], t))}</strong>"
            f" ({iso(u['created_at'])})</p>"
            + render.markdown_to_html(u["body"])
            for u in reversed(inc["updates"])
        )
        el(entry, "content", body, type="html")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"
