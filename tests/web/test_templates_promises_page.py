"""Templates and "next update by" on the web page (issue 16 item 8), through the real app:
the compose form filled from a template, the promise chosen in the form, the overdue promise
shown in the list and on the announcement with the holding statement ready to post."""

from __future__ import annotations

import html
import re

import pytest

from broadcaster import commitments
from broadcaster.asgi import create_app
from tests.cli.live import make_settings
from tests.support.ledger import updates_of
from tests.support.runtime import Clock, memory_runtime
from tests.web.conftest import CHANNELS, Web

T0 = 1_795_996_800.0  # 30 Nov 2026, 00:00 UTC
TEMPLATES = {"db": {"title": "Database connectivity problems", "severity": "major", "components": ["Checkout"],
                    "next_update": "45m",
                    "phases": {"investigating": "Some requests fail; we are investigating.",
                               "identified": "We found the cause."}}}


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def web(tmp_path, clock):
    site = {"kind": "statuspage", "output_dir": str(tmp_path / "site"), "components": ["API", "Checkout"]}
    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", {**CHANNELS, "status-site": site},
                             routes={"incident": ["hook-a", "discord-ops"], "notice": ["hook-a"]},
                             templates=TEMPLATES, commitments={"remind": ["discord-ops"]})
    rt = memory_runtime(settings, clock=clock)
    yield Web(create_app(settings, rt), rt)
    rt.ledger.close()


def selected(page: str, name: str) -> str:
    select = re.search(rf'<select id="[^"]*" name="{name}">(.*?)</select>', page, re.S)
    assert select, name
    m = re.search(r'<option value="([^"]*)" selected>', select.group(1))
    return m.group(1) if m else ""


def test_compose_from_a_template_with_its_promise(web):
    c, csrf = web.signed_in()
    page = c.get("/compose").text
    assert '<option value="db">db: Database connectivity problems (incident)</option>' in page
    page = c.get("/compose?template=db").text
    assert 'value="Database connectivity problems"' in page
    assert "Some requests fail; we are investigating.</textarea>" in page
    assert '<option value="45m" selected>45 minutes</option>' in page
    assert selected(page, "severity") == "major" and selected(page, "next_update_at") == "45m"
    assert 'name="components" value="Checkout" checked' in page
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "Database connectivity problems",
                                 "body": "Some requests fail; we are investigating.", "severity": "major",
                                 "components": ["Checkout"], "next_update_at": "45m",
                                 "channels": ["hook-a"], "idempotency_key": "t-1"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    [ann] = web.runtime.ledger.list_announcements()
    assert ann.next_update_at == T0 + 2700
    assert ann.body.endswith("Next update by 30 Nov 2026, 00:45 UTC.")
    page = c.get(f"/announcements/{ann.id}").text
    assert "Next update promised by 2026-11-30 00:45:00Z" in page and "overdue" not in page


def test_an_overdue_promise_is_shown_with_the_holding_statement_ready(web, clock):
    c, csrf = web.signed_in()
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "API errors", "body": "Looking.",
                                 "next_update_at": "30m", "channels": ["hook-a"], "idempotency_key": "t-2"},
               follow_redirects=False)
    ann_id = r.headers["location"].split("/")[-1].split("?")[0]
    assert "update overdue" not in c.get("/").text
    clock.advance(1801)
    assert commitments.overdue_hook(web.runtime) == 1  # the on-call channel is told
    assert "update overdue" in c.get("/").text
    page = c.get(f"/announcements/{ann_id}").text
    assert "<strong>overdue</strong>" in page
    holding = "We are still working on this. Next update by {next_update}."
    assert f">{html.escape(holding)}</textarea>" in page
    assert selected(page, "next_update_at") == "30m" and selected(page, "status") == "investigating"
    # one click: the form as proposed
    r = c.post(f"/announcements/{ann_id}/updates", data={"csrf": csrf, "status": "investigating", "body": holding,
                                                          "next_update_at": "30m", "idempotency_key": "u-1"},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    (u,) = updates_of(web.runtime.ledger, ann_id)
    assert u.body == "We are still working on this. Next update by 30 Nov 2026, 01:00 UTC."
    assert "update overdue" not in c.get("/").text


def test_an_update_from_a_template_phase(web):
    c, csrf = web.signed_in()
    r = c.post("/compose", data={"csrf": csrf, "kind": "incident", "title": "API errors", "body": "Looking.",
                                 "channels": ["hook-a"], "idempotency_key": "t-3"}, follow_redirects=False)
    ann_id = r.headers["location"].split("/")[-1].split("?")[0]
    page = c.get(f"/announcements/{ann_id}").text
    assert '<select id="upd-template" name="template">' in page
    r = c.post(f"/announcements/{ann_id}/updates", data={"csrf": csrf, "status": "identified", "template": "db",
                                                          "body": "", "next_update_at": "", "idempotency_key": "u-2"},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    (u,) = updates_of(web.runtime.ledger, ann_id)
    assert u.body == "We found the cause.\n\nNext update by 30 Nov 2026, 00:45 UTC."  # the template's promise
    r = c.post(f"/announcements/{ann_id}/updates", data={"csrf": csrf, "status": "monitoring", "body": "",
                                                          "idempotency_key": "u-3"})
    assert r.status_code == 400 and "body: required" in r.text
