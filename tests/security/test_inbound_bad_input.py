"""A verified sender's odd bodies: each a clear 4xx or an ignored/created answer, never a 500.

The receiver's secret is known here (the sender proved itself), so what is exercised is the
parsing and storing of what a monitoring tool sends, on SQLite and on PostgreSQL (which refuses
NUL bytes that SQLite stores)."""

from __future__ import annotations

import json

import pytest

from broadcaster.ledger import Ledger
from tests.support.alert_payloads import pd_headers, pd_payload

from .conftest import Env, config

TOKEN = "inbound-probe-token-9a7c"
RECEIVERS = {"am": {"source": "alertmanager", "token": TOKEN}, "og": {"source": "opsgenie", "token": TOKEN},
             "kuma": {"source": "uptime-kuma", "token": TOKEN}, "pd": {"source": "pagerduty", "hmac_secret": TOKEN}}


@pytest.fixture
def inbound_env(tmp_path, ledger_url):
    cfg = config(inbound={"receivers": RECEIVERS, "rules": [{"title": "{title}", "body": "{summary}"}]})
    e = Env(tmp_path, cfg, Ledger.open(ledger_url))
    yield e
    e.client.close()
    e.ledger.close()


def send(env: Env, path: str, body: bytes):
    return env.client.post(f"/api/v1/inbound/{path}", content=body,
                           headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})


def am(**over) -> dict:
    alert = {"status": "firing", "labels": {"alertname": "Disk"}, "annotations": {"summary": "full"}}
    return {"version": "4", "groupKey": "g", "status": "firing", "alerts": [alert], **over}


CASES = {
    "deep nesting": ("alertmanager/am", b"[" * 100_000 + b"]" * 100_000),
    "NUL in the title": ("alertmanager/am", json.dumps(am(title="Disk\x00full", groupKey="nul")).encode()),
    "NUL in labels": ("alertmanager/am", json.dumps(am(groupKey="nul2", commonLabels={"a\x00": "b\x00"})).encode()),
    "control characters": ("alertmanager/am", json.dumps(am(groupKey="esc", title="\x1b[31mred\u2028x")).encode()),
    "NUL in the group key": ("alertmanager/am", json.dumps(am(groupKey="g\x00")).encode()),
    "opsgenie tags not a list": ("opsgenie/og", json.dumps({"action": "Create", "alert": {
        "alertId": "a1", "message": "m", "tags": 5}}).encode()),
    "opsgenie details not text": ("opsgenie/og", json.dumps({"action": "Create", "alert": {
        "alertId": "a2", "message": "m", "details": {"x": [1, {"y": None}]}}}).encode()),
    "kuma odd monitor id": ("uptime-kuma/kuma", json.dumps({"heartbeat": {"status": 0}, "monitor": {
        "id": {"nested": [1]}, "name": 7}}).encode()),
    "kuma true as status": ("uptime-kuma/kuma", json.dumps({"heartbeat": {"status": True, "monitorID": 3}}).encode()),
    "not utf-8": ("alertmanager/am", b"\xff\xfe{}"),
    "huge number": ("alertmanager/am", b'{"alerts": [{"status": 1e999}], "status": "firing", "groupKey": "n"}'),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_verified_senders_odd_body_is_never_a_server_error(inbound_env, name):
    path, body = CASES[name]
    r = send(inbound_env, path, body)
    assert r.status_code in (200, 202, 400, 413, 422), (name, r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"code", "message", "details"}
    else:  # whatever was stored can be listed and shown back
        listed = inbound_env.get("/drafts")
        assert listed.status_code == 200, listed.text[:300]
        for d in listed.json()["items"]:
            assert inbound_env.get(f"/drafts/{d['id']}").status_code == 200


HIDING = "\u202e\u2066\u200b\ufeff\x1b"


def test_alert_text_is_cleaned_on_arrival_so_the_draft_shows_what_it_says_and_publishes(tmp_path, ledger_url):
    """The outside trial: ``summary: "line1\\nBcc: x \\u202egnp.exe"`` made a draft title with a raw
    U+202E (shown reversed on the Drafts page) whose publishing then failed 422."""
    cfg = config(inbound={"receivers": RECEIVERS, "rules": [
        {"title": "{annotations.summary}", "body": "{summary}\n{labels.team}", "resolved_body": "Over: {summary}"}]})
    env = Env(tmp_path, cfg, Ledger.open(ledger_url))
    try:
        payload = am(groupKey="bidi", alerts=[{"status": "firing", "labels": {"alertname": "Disk", "team": "ops\u202e"},
                                               "annotations": {"summary": "line1\nBcc: x \u202egnp.exe"},
                                               "generatorURL": "https://grafana.example.test/\u200bx"}],
                     title=None)
        r = send(env, "alertmanager/am", json.dumps(payload).encode())
        assert r.status_code == 202, r.text
        draft = env.get(f"/drafts/{r.json()['draft']}").json()
        fields = draft["fields"]
        assert fields["title"] == "line1 Bcc: x gnp.exe"
        assert fields["body"] == "line1\nBcc: x gnp.exe\nops"
        assert fields["url"] == "https://grafana.example.test/x"
        shown = json.dumps(draft, ensure_ascii=False)
        assert not any(c in shown for c in HIDING), "nothing hidden reaches the reviewer"
        published = env.post(f"/drafts/{draft['id']}/publish")
        assert published.status_code == 202, published.text
        assert env.ledger.get_announcement(published.json()["announcement"]).title == "line1 Bcc: x gnp.exe"
    finally:
        env.client.close()
        env.ledger.close()


def pagerduty_bidi() -> dict:
    body = pd_payload("incident.triggered", "evt-bidi")
    body["event"]["data"]["title"] = "Checkout\u202e\nerrors\u200b"
    return body


@pytest.mark.parametrize("source,payload", [
    ("opsgenie/og", {"action": "Create", "alert": {"alertId": "og-bidi", "message": "Disk\u202e\nfull\u2066",
                                                     "description": "a\u202eb"}}),
    ("uptime-kuma/kuma", {"heartbeat": {"status": 0, "msg": "down\u202e"}, "monitor": {"id": 9, "name": "web\n\u202eapi"}}),
    ("pagerduty/pd", pagerduty_bidi()),
])
def test_every_receivers_text_is_cleaned_the_same_way(inbound_env, source, payload):
    body = json.dumps(payload).encode()
    headers = pd_headers(body, TOKEN) if source.startswith("pagerduty") else {
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    r = inbound_env.client.post(f"/api/v1/inbound/{source}", content=body, headers=headers)
    assert r.status_code == 202, r.text
    draft = inbound_env.get(f"/drafts/{r.json()['draft']}").json()
    title = draft["fields"]["title"]
    assert "\n" not in title and not any(c in json.dumps(draft, ensure_ascii=False) for c in HIDING), draft
    assert inbound_env.post(f"/drafts/{draft['id']}/publish").status_code == 202
