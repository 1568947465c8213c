"""Our own static status page: escaping everywhere, atomic writes, the Atom feed and summary JSON
shapes, idempotency by key, mirrors that fail independently, retraction."""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from broadcaster.channels import statuspage as sp
from broadcaster.channels.statuspage import Statuspage, StatuspageSettings
from broadcaster.errors import PermanentError, TransientError
from broadcaster.models import Announcement, Message, Update, Window

EVIL = "<script>alert(1)</script>"
ATOM = "{http://www.w3.org/2005/Atom}"


def make(tmp_path, clock=None, **kw):
    data = {"kind": "statuspage", "output_dir": str(tmp_path / "site"), "title": f"Status {EVIL}",
            "components": ["API", f"Web {EVIL}"], "site_url": "https://status.example.com"}
    data.update(kw)
    times = iter(range(1_700_000_000, 1_800_000_000, 60))
    return Statuspage("status", StatuspageSettings.model_validate(data), clock=clock or (lambda: float(next(times))))


def incident(**kw):
    fields = dict(id="a1", kind="incident", title=f"Login {EVIL} down", body=f"We look **into** it {EVIL}",
                  severity="major", components=(f"Web {EVIL}",), url="https://example.com/x")
    fields.update(kw)
    return Announcement(**fields)


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def post_incident(ch, key="k1"):
    a = incident()
    first = ch.send(ch.render(Message(announcement=a)), key=key)
    upd = Update(id="u1", announcement_id="a1", status="identified", body=f"Cause found {EVIL}", title=f"T {EVIL}")
    second = ch.send(ch.render(Message(announcement=a, update=upd, thread=(first,))), key=key + "-u1")
    return a, first, second


def test_every_text_field_is_escaped(tmp_path):
    ch = make(tmp_path)
    post_incident(ch)
    out = files(tmp_path / "site")
    assert {"index.html", "feed.atom", "api/v2/summary.json", "api/v2/status.json"} <= set(out)
    assert not [k for k in out if "state" in k or k.startswith(".")]  # nothing internal is published
    assert any(k.startswith("incidents/") for k in out)
    for name, text in out.items():
        assert "<script>" not in text, name
    index = out["index.html"]
    page = next(v for k, v in out.items() if k.startswith("incidents/"))
    for html_text in (index, page):
        assert "&lt;script&gt;" in html_text
    assert "Status &lt;script&gt;" in index and "Web &lt;script&gt;" in index  # page title, component
    assert "Cause found &lt;script&gt;" in page and "<strong>into</strong>" in page  # update body, markdown
    # JSON carries the text itself (escaped as \u003c), so readers get it back intact
    summary = json.loads(out["api/v2/summary.json"])
    assert summary["incidents"][0]["name"] == f"Login {EVIL} down"


def test_summary_json_shape(tmp_path):
    ch = make(tmp_path)
    _, first, _ = post_incident(ch)
    root = tmp_path / "site" / "api" / "v2"
    summary = json.loads((root / "summary.json").read_text())
    assert set(summary) == {"page", "status", "components", "incidents", "scheduled_maintenances"}
    assert set(summary["page"]) >= {"id", "name", "url", "time_zone", "updated_at"}
    assert summary["status"] == {"indicator": "major", "description": "Partial System Outage"}
    comps = {c["name"]: c for c in summary["components"]}
    assert comps["API"]["status"] == "operational" and comps[f"Web {EVIL}"]["status"] == "partial_outage"
    assert set(comps["API"]) >= {"id", "name", "status", "created_at", "updated_at", "position", "group_id", "page_id"}
    (inc,) = summary["incidents"]
    assert inc["id"] == first.remote_id and inc["status"] == "identified" and inc["impact"] == "major"
    assert [u["status"] for u in inc["incident_updates"]] == ["identified", "investigating"]  # newest first
    assert inc["shortlink"] == f"https://status.example.com/incidents/{inc['id']}.html" == first.url
    assert inc["created_at"].endswith("Z") and inc["resolved_at"] is None
    assert summary["scheduled_maintenances"] == []
    status = json.loads((root / "status.json").read_text())
    assert status == {"page": summary["page"], "status": summary["status"]}


def test_atom_feed_is_valid(tmp_path):
    ch = make(tmp_path)
    post_incident(ch)
    feed = ET.fromstring((tmp_path / "site" / "feed.atom").read_bytes())
    assert feed.tag == f"{ATOM}feed"
    for tag in ("id", "title", "updated", "author"):
        assert feed.find(f"{ATOM}{tag}") is not None, tag
    assert feed.find(f"{ATOM}title").text == f"Status {EVIL}"  # text node, escaped on the wire
    (entry,) = feed.findall(f"{ATOM}entry")
    assert entry.find(f"{ATOM}id").text.startswith("urn:uuid:")
    assert entry.find(f"{ATOM}title").text == f"[Identified] Login {EVIL} down"
    content = entry.find(f"{ATOM}content")
    assert content.get("type") == "html" and "&lt;script&gt;" in content.text and "<script>" not in content.text
    assert entry.find(f"{ATOM}link").get("href").startswith("https://status.example.com/incidents/")


def test_same_key_twice_changes_nothing(tmp_path):
    ch = make(tmp_path)
    a, first, second = post_incident(ch)
    state_before = json.loads((tmp_path / "site.state" / "state.json").read_text())
    again = ch.send(ch.render(Message(announcement=a)), key="k1")
    upd = Update(id="u1", announcement_id="a1", status="identified", body="Cause found")
    again_upd = ch.send(ch.render(Message(announcement=a, update=upd, thread=(first,))), key="k1-u1")
    assert again == first and again_upd == second and second.extra["is_update"]
    state_after = json.loads((tmp_path / "site.state" / "state.json").read_text())
    assert state_after == state_before
    (inc,) = state_after["incidents"].values()
    assert len(inc["updates"]) == 2
    assert ch.lookup(ch.render(Message(announcement=a)), key="k1") == first
    assert ch.lookup(None, key="k1-u1") == second
    assert ch.lookup(None, key="never-sent") is None


def test_writes_are_atomic(tmp_path, monkeypatch):
    ch = make(tmp_path)
    post_incident(ch)
    index = tmp_path / "site" / "index.html"
    before = index.read_bytes()
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((Path(src).parent, Path(dst)))
        if Path(dst).name == "index.html":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(sp.os, "replace", spy)
    a = incident(id="a2", title="Second")
    with pytest.raises(TransientError, match="cannot write"):
        ch.send(ch.render(Message(announcement=a)), key="k2")
    assert index.read_bytes() == before  # the old page is intact, not half-written
    assert all(src == dst.parent for src, dst in replaced)  # temp files live next to their target
    assert not [p for p in (tmp_path / "site").rglob(".*.tmp")]  # and are cleaned up
    monkeypatch.setattr(sp.os, "replace", real_replace)
    ch.send(ch.render(Message(announcement=a)), key="k2")  # the retry completes the page
    assert "Second" in index.read_text()
    assert oct(index.stat().st_mode & 0o777) == "0o644"


def test_failing_mirror_does_not_block_the_others(tmp_path):
    copy_dir = tmp_path / "mirror-copy"
    script = tmp_path / "sync.py"
    script.write_text("import shutil, sys\nshutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True)\n")
    mirrors = [
        {"command": f"{sys.executable} -c 'import sys; sys.exit(23)' {{dir}}"},
        {"path": str(copy_dir)},
        {"command": f"{sys.executable} {script} {{dir}} {tmp_path / 'synced'}"},
    ]
    ch = make(tmp_path, mirrors=mirrors)
    a = incident()
    with pytest.raises(TransientError) as err:
        ch.send(ch.render(Message(announcement=a)), key="k1")
    message = str(err.value)
    assert "mirror 1" in message and "exit status 23" in message
    assert "mirror 2" not in message and "mirror 3" not in message
    assert (copy_dir / "index.html").read_bytes() == (tmp_path / "site" / "index.html").read_bytes()
    assert (tmp_path / "synced" / "api" / "v2" / "summary.json").is_file()
    # re-publishing is idempotent: still one incident everywhere
    with pytest.raises(TransientError):
        ch.send(ch.render(Message(announcement=a)), key="k1")
    assert len(json.loads((copy_dir / "api/v2/summary.json").read_text())["incidents"]) == 1


def test_mirror_command_timeout_is_reported(tmp_path):
    ch = make(tmp_path, mirrors=[{"command": f"{sys.executable} -c 'import time; time.sleep(5)'", "timeout": 0.2}])
    with pytest.raises(TransientError, match="timed out"):
        ch.send(ch.render(Message(announcement=incident())), key="k1")
    assert (tmp_path / "site" / "index.html").is_file()


def test_resolve_maintenance_and_retract(tmp_path):
    ch = make(tmp_path)
    a, first, _ = post_incident(ch)
    done = Update(id="u2", announcement_id="a1", status="resolved", body="Fixed")
    ch.send(ch.render(Message(announcement=a, update=done, thread=(first,))), key="k1-u2")
    summary = json.loads((tmp_path / "site/api/v2/summary.json").read_text())
    assert summary["status"]["indicator"] == "none" and summary["incidents"] == []
    assert all(c["status"] == "operational" for c in summary["components"])
    assert "Fixed" in (tmp_path / "site/index.html").read_text()  # in the history

    m = Announcement(id="m1", kind="maintenance", title="DB upgrade", window=Window(1.8e9, 1.8e9 + 3600))
    mr = ch.send(ch.render(Message(announcement=m)), key="m1")
    summary = json.loads((tmp_path / "site/api/v2/summary.json").read_text())
    (sm,) = summary["scheduled_maintenances"]
    assert sm["status"] == "scheduled" and sm["scheduled_for"].startswith("2027-01-15")

    ch.retract(first)
    page = tmp_path / "site" / "incidents" / f"{first.remote_id}.html"
    assert not page.exists()
    assert "Login" not in (tmp_path / "site/index.html").read_text()
    assert (tmp_path / "site" / "incidents" / f"{mr.remote_id}.html").exists()


def test_settings_and_check(tmp_path):
    with pytest.raises(ValueError, match="either path or command"):
        StatuspageSettings.model_validate({"kind": "statuspage", "output_dir": "x", "mirrors": [{}]})
    ch = make(tmp_path, mirrors=[{"path": str(tmp_path / "m")}, {"command": "no-such-binary-xyz {dir}"}])
    with pytest.raises(PermanentError, match=r"mirror 2 .*command not found"):
        ch.check()
    assert "ready" in make(tmp_path, mirrors=[{"path": str(tmp_path / "m")}]).check()


def test_corrupt_state_is_refused_not_overwritten(tmp_path):
    ch = make(tmp_path)
    (tmp_path / "site.state").mkdir()
    (tmp_path / "site.state" / "state.json").write_text("{not json")
    with pytest.raises(PermanentError, match="unreadable"):
        ch.send(ch.render(Message(announcement=incident())), key="k1")
    assert (tmp_path / "site.state" / "state.json").read_text() == "{not json"


# ---------------------------------------------------------------- notices and components (issue 13, item 13)


@pytest.mark.parametrize("kind", ["notice", "promotion", "deploy"])
def test_notices_are_never_shown_as_resolved_incidents(tmp_path, kind):
    ch = make(tmp_path)
    post_incident(ch)
    note = Announcement(id="n1", kind=kind, title="New status page address", body="Bookmark it.")
    ch.send(ch.render(Message(announcement=note)), key="kn")
    out = files(tmp_path / "site")
    index = out["index.html"]
    history, _, notices = index.partition('<h2 id="h-notices">Notices</h2>')
    assert "New status page address" not in history  # not in Active or History
    if kind == "promotion":  # marketing is not listed on a status page at all
        assert "New status page address" not in notices
    else:
        assert "<strong>Notice</strong> — Bookmark it." in notices and "Resolved" not in notices
    page = next(v for k, v in out.items() if k.startswith("incidents/") and "New status page" in v)
    assert "Resolved" not in page and "<h3>Notice</h3>" in page and "Impact:" not in page
    listed = json.loads(out["api/v2/incidents.json"])["incidents"]
    assert [i["name"] for i in listed] == [f"Login {EVIL} down"]  # notices are no incidents
    feed = ET.fromstring(out["feed.atom"])
    titles = [e.find(f"{ATOM}title").text for e in feed.iter(f"{ATOM}entry")]
    assert ("[Notice] New status page address" in titles) == (kind != "promotion")
    assert not any(t.startswith("[Resolved] New") for t in titles)


def test_only_configured_components_ever_appear(tmp_path):
    ch = make(tmp_path, components=["API", "Website"])
    stray = incident(id="a2", components=("API", "api", "checkout"))
    ch.send(ch.render(Message(announcement=stray)), key="k2")
    out = files(tmp_path / "site")
    names = [c["name"] for c in json.loads(out["api/v2/components.json"])["components"]]
    assert names == ["API", "Website"]
    assert [c["status"] for c in json.loads(out["api/v2/components.json"])["components"]] == ["partial_outage",
                                                                                              "operational"]
    assert [c["name"] for c in json.loads(out["api/v2/summary.json"])["incidents"][0]["components"]] == ["API"]
    for name, text in out.items():
        assert "checkout" not in text and ">api<" not in text, name
    page = next(v for k, v in out.items() if k.startswith("incidents/"))
    assert "Affects: API</small>" in page
