"""The static status site as a reader and a Statuspage client see it (issue 16): component
states and the banner, maintenance by its window, the api/v2 shapes, 90-day bars and uptime,
readable times, timelines, history by month, badges and the widget."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from broadcaster.channels import _statussite as site, _statustime as when
from broadcaster.channels.statuspage import Statuspage, StatuspageSettings, apply
from broadcaster.models import Announcement, Message, Update, Window
from tests.support.runtime import Clock

T0 = 1_796_000_000.0  # 30 Nov 2026, 00:53 UTC


def channel(tmp_path: Path, clock: Clock, **kw) -> Statuspage:
    data = {"kind": "statuspage", "output_dir": str(tmp_path / "site"), "title": "Example status",
            "components": ["API", "Website", "Mail"], "site_url": "https://status.example.net"}
    data.update(kw)
    return Statuspage("status", StatuspageSettings.model_validate(data), clock=clock)


def read(tmp_path: Path, rel: str) -> str:
    return (tmp_path / "site" / rel).read_text()


def api(tmp_path: Path, rel: str) -> dict:
    return json.loads(read(tmp_path, f"api/v2/{rel}"))


def two_component_incident(ch: Statuspage, clock: Clock, *, resolve: bool = True):
    """An incident on API and Website (minor), two updates, then a resolve an hour later."""
    a = Announcement(id="a1", kind="incident", title="Slow logins", body="Looking into it",
                     severity="minor", components=("API", "Website"))
    first = ch.send(ch.render(Message(announcement=a)), key="k1")
    receipts = [first]
    for i, status in enumerate(["identified", "monitoring"] + (["resolved"] if resolve else []), 1):
        clock.t += 20 * 60
        u = Update(id=f"u{i}", announcement_id="a1", status=status, body=f"Update {i}")
        receipts.append(ch.send(ch.render(Message(announcement=a, update=u, thread=(first,))), key=f"k1-u{i}"))
    return receipts


def states(tmp_path: Path) -> dict[str, str]:
    return {c["name"]: c["status"] for c in api(tmp_path, "components.json")["components"]}


def test_components_degraded_during_and_operational_after(tmp_path):
    clock = Clock(T0)
    ch = channel(tmp_path, clock)
    two_component_incident(ch, clock, resolve=False)
    assert states(tmp_path) == {"API": "degraded_performance", "Website": "degraded_performance",
                                "Mail": "operational"}
    assert api(tmp_path, "status.json")["status"] == {"indicator": "minor", "description": "Minor Service Outage"}
    index = read(tmp_path, "index.html")
    assert index.count('class="st-degraded_performance">Degraded performance<') == 2
    a = Announcement(id="a1", kind="incident", title="Slow logins", severity="minor", components=("API", "Website"))
    first = ch.lookup(ch.render(Message(announcement=a)), key="k1")
    clock.t += 600
    done = Update(id="u9", announcement_id="a1", status="resolved", body="Fixed")
    ch.send(ch.render(Message(announcement=a, update=done, thread=(first,))), key="k1-u9")
    assert set(states(tmp_path).values()) == {"operational"}
    assert api(tmp_path, "status.json")["status"]["indicator"] == "none"
    assert "Degraded performance</span>" not in read(tmp_path, "index.html").split("Past incidents")[0]


def test_banner_never_claims_an_outage_while_every_component_is_operational(tmp_path):
    clock = Clock(T0)
    ch = channel(tmp_path, clock)
    a = Announcement(id="a2", kind="incident", title="Something odd", severity="minor")  # names no component
    ch.send(ch.render(Message(announcement=a)), key="k2")
    index = read(tmp_path, "index.html")
    assert set(states(tmp_path).values()) == {"operational"}
    assert "Minor Service Outage" not in index and "An incident is being handled" in index
    assert api(tmp_path, "status.json")["status"]["indicator"] == "minor"  # clients still learn of it


@pytest.mark.parametrize(("severity", "expected"), [("minor", "degraded_performance"), ("major", "partial_outage"),
                                                    ("critical", "major_outage")])
def test_state_follows_severity_unless_given(severity, expected):
    post = site.status_post("s", Message(Announcement(id="x", kind="incident", title="t", severity=severity,
                                                       components=("API", "Mail"))))
    state, _, _ = apply({}, post, "k", T0)
    s = site.Site(title="t", components=("API", "Mail"), site_url=None, now=T0 + 60)
    assert site.component_states(state, s) == {"API": expected, "Mail": expected}
    state["incidents"][next(iter(state["incidents"]))]["component_states"] = {"Mail": "major_outage"}
    assert site.component_states(state, s) == {"API": expected, "Mail": "major_outage"}
    assert site.indicator(state, s) == ("critical", "Major Service Outage")


def test_maintenance_moves_by_its_window(tmp_path):
    clock = Clock(T0)
    ch = channel(tmp_path, clock)
    m = Announcement(id="m1", kind="maintenance", title="DB upgrade", components=("Mail",),
                     window=Window(T0 + 3600, T0 + 7200))
    ch.send(ch.render(Message(announcement=m)), key="m1")
    (up,) = api(tmp_path, "scheduled-maintenances/upcoming.json")["scheduled_maintenances"]
    assert up["status"] == "scheduled" and api(tmp_path, "scheduled-maintenances/active.json")[
        "scheduled_maintenances"] == []
    index = read(tmp_path, "index.html")
    upcoming = index.split('id="h-upcoming"')[1].split("</section>")[0]
    assert "DB upgrade" in upcoming and "30 Nov 2026, 01:53 UTC" in upcoming and "(in 1 hour)" in upcoming
    assert 'data-zone="1"' in upcoming  # the script adds the reader's zone
    assert states(tmp_path)["Mail"] == "operational"

    s = site.Site(title="t", components=("API", "Website", "Mail"), site_url=None, now=T0 + 4000)
    state = ch.load()
    assert site.component_states(state, s)["Mail"] == "under_maintenance"
    assert site.indicator(state, s) == ("maintenance", "Service Under Maintenance")
    docs = site.api_v2(state, s)
    (act,) = docs["scheduled-maintenances/active.json"]["scheduled_maintenances"]
    assert act["status"] == "in_progress"
    later = site.Site(title="t", components=("API", "Website", "Mail"), site_url=None, now=T0 + 8000)
    (done,) = site.api_v2(state, later)["scheduled-maintenances.json"]["scheduled_maintenances"]
    assert done["status"] == "completed" and done["resolved_at"] == site.iso(T0 + 7200)
    assert site.component_states(state, later)["Mail"] == "operational"


# ---------------------------------------------------------------- Statuspage's documented shapes

STR, OPT = (str,), (str, type(None))
PAGE = {"id": STR, "name": STR, "url": STR, "time_zone": STR, "updated_at": STR}
COMPONENT = {"id": STR, "name": STR, "status": STR, "created_at": STR, "updated_at": STR, "position": (int,),
             "description": OPT, "showcase": (bool,), "group_id": OPT, "page_id": STR, "group": (bool,),
             "only_show_if_degraded": (bool,), "start_date": OPT}
UPDATE = {"id": STR, "status": STR, "body": STR, "incident_id": STR, "created_at": STR, "updated_at": STR,
          "display_at": STR, "affected_components": (list, type(None))}
INCIDENT = {"id": STR, "name": STR, "status": STR, "impact": STR, "created_at": STR, "updated_at": STR,
            "monitoring_at": OPT, "resolved_at": OPT, "shortlink": STR, "page_id": STR, "started_at": STR,
            "incident_updates": (list,), "components": (list,)}
MAINTENANCE = {**INCIDENT, "scheduled_for": STR, "scheduled_until": STR}
COMPONENT_STATUSES = {"operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def shaped(obj: dict, shape: dict, where: str) -> None:
    for key, types in shape.items():
        assert key in obj, f"{where}: missing {key}"
        assert isinstance(obj[key], types), f"{where}.{key}: {type(obj[key]).__name__}"
        if key.endswith(("_at", "_for", "_until")) and obj[key] is not None:
            assert ISO.match(obj[key]), f"{where}.{key}: {obj[key]}"


def incident_shaped(inc: dict, shape: dict, where: str) -> None:
    shaped(inc, shape, where)
    assert inc["impact"] in {"none", "minor", "major", "critical", "maintenance"}
    for u in inc["incident_updates"]:
        shaped(u, UPDATE, where + ".incident_updates")
        for ac in u["affected_components"] or []:
            assert ac["new_status"] in COMPONENT_STATUSES and set(ac) >= {"code", "name", "old_status"}
    for c in inc["components"]:
        assert set(c) >= {"id", "name"}


def test_every_api_v2_document_has_statuspages_shape(tmp_path):
    clock = Clock(T0)
    ch = channel(tmp_path, clock, groups={"Core": ["API", "Website"]})
    two_component_incident(ch, clock, resolve=True)
    two_component_incident_open = Announcement(id="a3", kind="incident", title="Mail slow", severity="major",
                                               components=("Mail",))
    ch.send(ch.render(Message(announcement=two_component_incident_open)), key="k3")
    ch.send(ch.render(Message(announcement=Announcement(
        id="m1", kind="maintenance", title="DB", window=Window(T0 + 9e4, T0 + 9.5e4)))), key="m1")
    expected = {
        "summary.json": {"page", "status", "components", "incidents", "scheduled_maintenances"},
        "status.json": {"page", "status"}, "components.json": {"page", "components"},
        "incidents.json": {"page", "incidents"}, "incidents/unresolved.json": {"page", "incidents"},
        "scheduled-maintenances.json": {"page", "scheduled_maintenances"},
        "scheduled-maintenances/upcoming.json": {"page", "scheduled_maintenances"},
        "scheduled-maintenances/active.json": {"page", "scheduled_maintenances"},
    }
    for rel, keys in expected.items():
        doc = api(tmp_path, rel)
        assert set(doc) == keys, rel
        shaped(doc["page"], PAGE, rel + ".page")
        if "status" in doc:
            assert doc["status"]["indicator"] in {"none", "minor", "major", "critical", "maintenance"}
            assert isinstance(doc["status"]["description"], str)
        for c in doc.get("components", []):
            shaped(c, COMPONENT, rel + ".components")
            assert c["status"] in COMPONENT_STATUSES
        for inc in doc.get("incidents", []):
            incident_shaped(inc, INCIDENT, rel)
        for m in doc.get("scheduled_maintenances", []):
            incident_shaped(m, MAINTENANCE, rel)
            assert m["status"] in {"scheduled", "in_progress", "verifying", "completed"}
    assert [i["name"] for i in api(tmp_path, "incidents.json")["incidents"]] == ["Mail slow", "Slow logins"]
    assert [i["name"] for i in api(tmp_path, "incidents/unresolved.json")["incidents"]] == ["Mail slow"]
    assert [m["name"] for m in api(tmp_path, "scheduled-maintenances/upcoming.json")["scheduled_maintenances"]] == [
        "DB"]
    comps = {c["name"]: c for c in api(tmp_path, "components.json")["components"]}
    assert comps["Core"]["group"] is True and comps["API"]["group_id"] == comps["Core"]["id"]
    assert comps["Core"]["components"] == [comps["API"]["id"], comps["Website"]["id"]]
    assert comps["Mail"]["status"] == "partial_outage" and comps["Mail"]["group_id"] is None


def test_groups_name_only_declared_components():
    base = {"kind": "statuspage", "output_dir": "x", "components": ["API"]}
    with pytest.raises(ValueError, match=r"groups.Core: 'Web' is not one of components"):
        StatuspageSettings.model_validate({**base, "groups": {"Core": ["Web"]}})
    with pytest.raises(ValueError, match="already in group"):
        StatuspageSettings.model_validate({**base, "groups": {"A": ["API"], "B": ["API"]}})


# ---------------------------------------------------------------- history, times, badges


def test_bars_uptime_timeline_and_history(tmp_path):
    clock = Clock(T0)
    ch = channel(tmp_path, clock)
    a = Announcement(id="a1", kind="incident", title="API down", severity="major", components=("API",))
    first = ch.send(ch.render(Message(announcement=a)), key="k1")
    clock.t += 3600
    ch.send(ch.render(Message(announcement=a, update=Update(id="u1", announcement_id="a1", status="resolved",
                                                            body="Back"), thread=(first,))), key="k1-u1")
    clock.t += 12 * 60
    ch.send(ch.render(Message(announcement=Announcement(id="p", kind="promotion", title="20% off annual plans"))),
            key="p")
    index = read(tmp_path, "index.html")
    assert "20% off" not in index and "20% off" not in read(tmp_path, "feed.atom")
    assert "20% off" not in read(tmp_path, "history.html")
    # one hour of partial outage in 90 days: 1 - 1/2160
    assert "99.95% uptime" in index and index.count("100.00% uptime") == 4  # label and text
    api_bar = index.split("<span>API</span>")[1].split("</li>")[0]
    days = re.findall(r'<span class="d-([a-z_]+)" title="([^"]+)"', api_bar)
    assert len(days) == 90 and days[-1] == ("partial_outage", "30 Nov 2026: Partial outage 1 h")
    assert {d for d, _ in days[:-1]} == {"operational"} and days[0][1] == "2 Sep 2026: No incidents"
    # the bar is dated (a page not rebuilt for days must not call its last day "today"), and the
    # days' details are also a list that opens by keyboard or tap, not only a hover
    assert "<small>2 Sep 2026</small>" in api_bar and "<small>30 Nov 2026</small>" in api_bar
    assert "<summary>Days with incidents (1)</summary>" in api_bar
    assert "<li>30 Nov 2026: Partial outage 1 h</li>" in index
    # readable times: absolute with the zone and relative, no raw ISO in the text
    assert "30 Nov 2026, 01:53 UTC" in index and "(12 minutes ago)" in index
    assert not re.search(r">[^<]*\d{4}-\d\d-\d\dT", index)
    page = read(tmp_path, f"incidents/{first.remote_id}.html")
    assert "Lasted\n 1 h" in page or "Lasted 1 h" in page.replace("\n", " ")
    assert "API: Partial outage" in page and "API: Operational" in page  # the state at each update
    assert page.index("Back") < page.index("Investigating")  # newest first, every update
    history = read(tmp_path, "history.html")
    assert "<h3>November 2026</h3>" in history and "API down" in history and "lasted 1 h" in history


def test_readable_times():
    assert when.absolute(T0) == "30 Nov 2026, 00:53 UTC"
    assert when.relative(T0 - 12 * 60, T0) == "12 minutes ago" and when.relative(T0 + 7200, T0) == "in 2 hours"
    assert when.relative(T0 - 30, T0) == "just now" and when.relative(T0 - 86400, T0) == "1 day ago"
    assert when.duration(3 * 3600 + 5 * 60) == "3 h 5 min" and when.duration(30) == "under a minute"


SVG = "{http://www.w3.org/2000/svg}"


def test_badges_are_valid_svg_and_the_widget_has_no_script(tmp_path):
    clock = Clock(T0)
    ch = channel(tmp_path, clock, components=["API", 'Web <"&>'])
    ch.send(ch.render(Message(announcement=Announcement(id="a", kind="incident", title="x", severity="critical",
                                                        components=('Web <"&>',)))), key="k")
    overall = ET.fromstring((tmp_path / "site/badge.svg").read_bytes())
    assert overall.tag == f"{SVG}svg" and overall.find(f"{SVG}title").text == "status: Major Service Outage"
    comps = {c["name"]: c["id"] for c in api(tmp_path, "components.json")["components"]}
    web_id = comps['Web <"&>']
    web = ET.fromstring((tmp_path / f"site/badges/{web_id}.svg").read_bytes())
    assert [t.text for t in web.iter(f"{SVG}text")] == ['Web <"&>', "major outage"]
    api_badge = ET.fromstring((tmp_path / f"site/badges/{comps['API']}.svg").read_bytes())
    assert [t.text for t in api_badge.iter(f"{SVG}text")] == ["API", "operational"]
    widget = read(tmp_path, "widget.html")
    assert "<script" not in widget and "Major outage" in widget and "Web &lt;&#34;&amp;&gt;" in widget


def test_an_authors_component_state_reaches_the_page(tmp_path):
    clock = Clock(T0)
    ch = channel(tmp_path, clock)
    a = Announcement(id="a1", kind="incident", title="Mail down", severity="minor", components=("API", "Mail"),
                     component_states={"Mail": "major_outage"})
    ch.send(ch.render(Message(announcement=a)), key="k1")
    assert states(tmp_path) == {"API": "degraded_performance", "Website": "operational", "Mail": "major_outage"}
    assert api(tmp_path, "status.json")["status"] == {"indicator": "critical", "description": "Major Service Outage"}


def test_subscribe_links_and_a_feed_per_component(tmp_path):
    clock = Clock(T0)
    ch = channel(tmp_path, clock, subscribe_url="https://api.example.com/api/v1/subscribe/form?list=customers",
                 subscribe_webhook_url="https://api.example.com/api/v1/subscribe/endpoint/form?list=customers")
    two_component_incident(ch, clock, resolve=False)
    ch.send(ch.render(Message(announcement=Announcement(id="n", kind="notice", title="New address"))), key="n")
    index = read(tmp_path, "index.html")
    get = index.split('id="h-subscribe"')[1].split("</section>")[0]
    assert 'href="https://api.example.com/api/v1/subscribe/form?list=customers">By e-mail' in get
    assert 'href="https://api.example.com/api/v1/subscribe/endpoint/form?list=customers">By webhook' in get
    comps = {c["name"]: c["id"] for c in api(tmp_path, "components.json")["components"]}
    atom_ns = "{http://www.w3.org/2005/Atom}"
    for name, expected in [("API", ["Slow logins"]), ("Mail", [])]:
        assert f'href="feeds/{comps[name]}.atom">{name}</a>' in get
        feed = ET.fromstring((tmp_path / f"site/feeds/{comps[name]}.atom").read_bytes())
        assert feed.find(f"{atom_ns}title").text == f"Example status · {name}"
        titles = [e.find(f"{atom_ns}title").text.split("] ", 1)[1] for e in feed.iter(f"{atom_ns}entry")]
        assert titles == expected  # only its incidents (no notices, no other component's)
    plain = read_plain(tmp_path)
    assert "By e-mail" not in plain and "By webhook" not in plain


def read_plain(tmp_path: Path) -> str:
    """The index of a site without ``subscribe_url``: no e-mail link to nowhere."""
    clock = Clock(T0)
    other = tmp_path / "plain"
    ch = channel(other, clock)
    two_component_incident(ch, clock)
    return read(other, "index.html")


def test_check_warns_when_the_status_site_shares_the_apis_host(tmp_path):
    from click.testing import CliRunner

    from broadcaster.cli import main

    cfg = tmp_path / "b.yaml"
    for site_url, warned in [("https://example.com/status", True), ("https://status.example.net", False)]:
        cfg.write_text("public_url: https://example.com\nchannels:\n"
                       f"  site: {{kind: statuspage, output_dir: {tmp_path / 'out'}, site_url: '{site_url}'}}\n")
        result = CliRunner().invoke(main, ["--config", str(cfg), "check", "--offline"],
                                    env={"BROADCASTER_CONFIG": None})
        assert result.exit_code == 0, result.output
        assert ("warning: channels.site.site_url: the status site shares its host (example.com)" in result.stderr
                ) is warned, result.stderr


def test_an_update_that_changes_the_components_reaches_the_page(tmp_path):
    clock = Clock(T0)
    ch = channel(tmp_path, clock)
    a = Announcement(id="a1", kind="incident", title="Slow", severity="major", components=("API",))
    first = ch.send(ch.render(Message(announcement=a)), key="k1")
    assert states(tmp_path)["Mail"] == "operational"
    wider = Announcement(id="a1", kind="incident", title="Slow", severity="major", components=("API", "Mail"))
    u = Update(id="u1", announcement_id="a1", status="identified", body="Mail too")
    ch.send(ch.render(Message(announcement=wider, update=u, thread=(first,))), key="k1-u1")
    assert states(tmp_path) == {"API": "partial_outage", "Website": "operational", "Mail": "partial_outage"}


def test_the_promised_next_update_is_shown_while_the_incident_is_open(tmp_path):
    """Issue 16 item 8: the page shows "Next update by …" (absolute and relative) on the active
    incident and its page; an update that makes no promise, or the resolve, takes it away."""
    clock = Clock(T0)
    ch = channel(tmp_path, clock)
    a = Announcement(id="a1", kind="incident", title="Slow logins", body="Looking.", severity="minor",
                     components=("API",), next_update_at=T0 + 1800)
    first = ch.send(ch.render(Message(announcement=a)), key="k1")
    index, page = read(tmp_path, "index.html"), read(tmp_path, f"incidents/{first.remote_id}.html")
    expected = 'Next update by <time datetime="2026-11-30T01:23:20Z">30 Nov 2026, 01:23 UTC</time>'
    active = index.split('id="h-active"')[1].split("</section>")[0]
    assert expected in active and "(in 30 minutes)" in active
    assert expected in page
    clock.t += 600
    later = Announcement(**{**a.__dict__, "next_update_at": T0 + 3600})
    u = Update(id="u1", announcement_id="a1", status="identified", body="Found it.")
    ch.send(ch.render(Message(announcement=later, update=u, thread=(first,))), key="k1-u1")
    assert "2026-11-30T01:53:20Z" in read(tmp_path, "index.html")  # the new promise replaces the old
    done = Announcement(**{**a.__dict__, "next_update_at": None})
    u2 = Update(id="u2", announcement_id="a1", status="resolved", body="Fixed.")
    ch.send(ch.render(Message(announcement=done, update=u2, thread=(first,))), key="k1-u2")
    assert "Next update by" not in read(tmp_path, "index.html")
    assert "Next update by" not in read(tmp_path, f"incidents/{first.remote_id}.html")
