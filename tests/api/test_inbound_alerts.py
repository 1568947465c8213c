"""Inbound alerts through the real app: each tool's documented payload, its sender proof, and
one draft per alert group (a flap updates it; a resolve proposes or posts the resolve once)."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest

from broadcaster.ledger import Ledger
from broadcaster.ledger.drafts import DraftStore
from tests.api.conftest import Env, config
from tests.support.alert_payloads import (
    AM_TOKEN,
    GF_SECRET,
    PD_SECRET,
    am_payload,
    bearer,
    gf_headers,
    grafana_payload,
    pd_headers,
    pd_payload,
    raw,
)

OG_TOKEN = "opsgenie-shared-4411"
KUMA_TOKEN = "kuma-token-77aa"

INBOUND = {
    "receivers": {
        "prom": {"source": "alertmanager", "token": AM_TOKEN},
        "prom-basic": {"source": "alertmanager", "username": "am", "password": AM_TOKEN},
        "prom-auto": {"source": "alertmanager", "token": AM_TOKEN},
        "graf": {"source": "grafana", "hmac_secret": GF_SECRET, "timestamp_header": "X-Grafana-Alerting-Timestamp"},
        "pd": {"source": "pagerduty", "hmac_secret": PD_SECRET},
        "og": {"source": "opsgenie", "token": OG_TOKEN, "header": "X-Broadcaster-Secret"},
        "kuma": {"source": "uptime-kuma", "token": KUMA_TOKEN},
    },
    "rules": [
        {"match": {"receiver": "prom-auto"}, "mode": "publish", "severity": "major",
         "title": "{labels.alertname} on {labels.instance}", "body": "{annotations.summary}"},
        {"match": {"labels": {"severity": "critical"}}, "severity": "critical",
         "title": "{labels.alertname}: {annotations.summary}", "body": "{annotations.description} ({count} alerts)"},
        {"match": {"source": "pagerduty"}, "title": "{title}", "body": "We are looking into it."},
        {"match": {"source": "opsgenie"}, "title": "{title}", "body": "{summary}"},
        {"match": {"source": "uptime-kuma"}, "title": "{title}", "body": "{summary}"},
    ],
}


@pytest.fixture
def alerts_env(tmp_path, ledger_url):
    env = Env(tmp_path, config(inbound=INBOUND), Ledger.open(ledger_url))
    yield env
    env.client.close()
    env.ledger.close()


def send(env: Env, path: str, body: bytes, headers: dict[str, str]):
    return env.client.post(f"/api/v1/inbound/{path}", content=body, headers=headers)


def drafts(env: Env):
    return DraftStore(env.ledger).page()


def announcements(env: Env) -> list:
    return env.ledger.list_announcements(limit=50)


def test_alertmanager_flap_makes_one_draft_then_one_resolve(alerts_env):
    env = alerts_env
    firing, resolved = raw(am_payload("firing")), raw(am_payload("resolved"))
    r = send(env, "alertmanager/prom", firing, bearer(AM_TOKEN))
    assert r.status_code == 202 and r.json()["result"] == "created", r.text
    draft_id = r.json()["draft"]
    assert send(env, "alertmanager/prom", firing, bearer(AM_TOKEN)).json()["result"] == "updated"
    assert [d.id for d in drafts(env)] == [draft_id] and not announcements(env)
    d = DraftStore(env.ledger).get(draft_id)
    assert d.fields["title"] == "DiskFull: Disk almost full" and d.fields["body"] == "Less than 5% left (2 alerts)"
    assert d.alert["labels"]["alertname"] == "DiskFull"

    # a person publishes it (one action); a second click changes nothing
    out = env.post(f"/drafts/{draft_id}/publish", {})
    assert out.status_code == 202, out.text
    ann_id = out.json()["announcement"]
    assert env.post(f"/drafts/{draft_id}/publish", {}).status_code == 409
    assert len(env.ledger.deliveries_of(ann_id)) == 2  # the incident route: hook + ops-chat

    # flap: resolved, firing again, resolved — still one draft, one announcement
    assert send(env, "alertmanager/prom", resolved, bearer(AM_TOKEN)).json()["result"] == "resolve_proposed"
    assert send(env, "alertmanager/prom", firing, bearer(AM_TOKEN)).json()["result"] == "refired"
    assert send(env, "alertmanager/prom", resolved, bearer(AM_TOKEN)).json()["result"] == "resolve_proposed"
    assert [d.id for d in drafts(env)] == [draft_id] and len(announcements(env)) == 1
    out = env.post(f"/drafts/{draft_id}/publish", {})
    assert out.status_code == 202, out.text
    assert env.post(f"/drafts/{draft_id}/publish", {}).status_code == 409
    updates = [d for d in env.ledger.deliveries_of(ann_id) if d.update_id]
    assert len(updates) == 2 and {d.update_id for d in updates} == {out.json()["update"]}
    assert env.ledger.get_announcement(ann_id).status == "resolved"


def test_unpublished_draft_expires_when_the_alert_resolves_and_a_flap_reopens_it(alerts_env):
    env = alerts_env
    draft_id = send(env, "alertmanager/prom", raw(am_payload("firing")), bearer(AM_TOKEN)).json()["draft"]
    assert send(env, "alertmanager/prom", raw(am_payload("resolved")), bearer(AM_TOKEN)).json()["result"] == "expired"
    assert DraftStore(env.ledger).get(draft_id).state == "expired"
    assert env.post(f"/drafts/{draft_id}/publish", {}).status_code == 409
    r = send(env, "alertmanager/prom", raw(am_payload("firing")), bearer(AM_TOKEN))
    assert r.json() == {"result": "reopened", "draft": draft_id}
    assert len(drafts(env)) == 1 and not announcements(env)


def test_publish_rule_posts_once_per_channel_and_resolves_on_the_same_announcement(alerts_env):
    env = alerts_env
    firing = raw(am_payload("firing"))
    first = send(env, "alertmanager/prom-auto", firing, bearer(AM_TOKEN)).json()
    assert first["result"] == "created" and first["announcement"], first
    send(env, "alertmanager/prom-auto", firing, bearer(AM_TOKEN))
    [ann] = announcements(env)
    assert ann.title == "DiskFull on db-0" and ann.severity == "major"
    originals = [d for d in env.ledger.deliveries_of(ann.id) if not d.update_id]
    assert sorted(d.channel for d in originals) == ["hook", "ops-chat"]
    res = send(env, "alertmanager/prom-auto", raw(am_payload("resolved")), bearer(AM_TOKEN)).json()
    assert res["update"]
    send(env, "alertmanager/prom-auto", raw(am_payload("resolved")), bearer(AM_TOKEN))
    assert len([d for d in env.ledger.deliveries_of(ann.id) if d.update_id]) == 2
    assert env.ledger.get_announcement(ann.id).status == "resolved" and len(announcements(env)) == 1


@pytest.mark.parametrize("headers", [
    {}, bearer("wrong-token"), {"Authorization": f"Basic {base64.b64encode(f'am:{AM_TOKEN}x'.encode()).decode()}"},
    {"Authorization": AM_TOKEN}, bearer(AM_TOKEN[:-1]),
])
def test_alertmanager_without_its_credential_gets_401_and_nothing(alerts_env, headers):
    env = alerts_env
    for path in ("alertmanager/prom", "alertmanager/prom-basic", "alertmanager/nobody", "grafana/prom"):
        r = send(env, path, raw(am_payload("firing")), {"Content-Type": "application/json", **headers})
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"]["code"] == "unauthorized" and AM_TOKEN not in r.text
    assert not drafts(env) and not announcements(env)


def test_alertmanager_basic_auth_as_http_config_sends_it(alerts_env):
    auth = base64.b64encode(f"am:{AM_TOKEN}".encode()).decode()
    r = send(alerts_env, "alertmanager/prom-basic", raw(am_payload("firing")),
             {"Authorization": f"Basic {auth}", "Content-Type": "application/json"})
    assert r.status_code == 202 and r.json()["result"] == "created"


def test_grafana_signed_payload_and_refusals(alerts_env):
    env = alerts_env
    body = raw(grafana_payload("firing"))
    assert send(env, "grafana/graf", body, {"Content-Type": "application/json"}).status_code == 401
    assert send(env, "grafana/graf", body, gf_headers(body, secret="wrong")).status_code == 401
    old = str(int(time.time()) - 3600)  # a captured request replayed an hour later
    assert send(env, "grafana/graf", body, gf_headers(body, stamp=old)).status_code == 401
    tampered = body.replace(b"HighLatency", b"LowLatency")
    assert send(env, "grafana/graf", tampered, {**gf_headers(body)}).status_code == 401
    assert not drafts(env)
    r = send(env, "grafana/graf", body, gf_headers(body))
    assert r.status_code == 202 and r.json()["result"] == "created", r.text
    assert DraftStore(env.ledger).get(r.json()["draft"]).fields["title"] == "HighLatency: Disk almost full"
    again = send(env, "grafana/graf", body, gf_headers(body)).json()
    assert again["result"] == "updated" and again["draft"] == r.json()["draft"]
    done = raw(grafana_payload("resolved"))
    assert send(env, "grafana/graf", done, gf_headers(done)).json()["result"] == "expired"


def test_pagerduty_v3_groups_by_incident_and_refuses_bad_signatures(alerts_env):
    env = alerts_env
    body = raw(pd_payload("incident.triggered", "01EVT1"))
    assert send(env, "pagerduty/pd", body, {"Content-Type": "application/json"}).status_code == 401
    assert send(env, "pagerduty/pd", body, pd_headers(body, "wrong")).status_code == 401
    assert send(env, "pagerduty/pd", body, {"X-PagerDuty-Signature": "v0=" + hashlib.sha256(body).hexdigest(),
                                            "Content-Type": "application/json"}).status_code == 401
    assert not drafts(env)
    first = send(env, "pagerduty/pd", body, pd_headers(body)).json()
    assert first["result"] == "created"
    # the same signed event delivered again (a retry or a replay) does nothing
    assert send(env, "pagerduty/pd", body, pd_headers(body)).json()["result"] == "ignored"
    ack = raw(pd_payload("incident.acknowledged", "01EVT2"))
    assert send(env, "pagerduty/pd", ack, pd_headers(ack)).json()["result"] == "ignored"
    again = raw(pd_payload("incident.triggered", "01EVT3"))
    assert send(env, "pagerduty/pd", again, pd_headers(again)).json()["draft"] == first["draft"]
    d = DraftStore(env.ledger).get(first["draft"])
    assert d.fields["title"] == "Checkout errors" and d.fields["url"].startswith("https://acme.pagerduty.com/")
    assert env.post(f"/drafts/{d.id}/publish", {}).status_code == 202
    done = raw(pd_payload("incident.resolved", "01EVT4"))
    assert send(env, "pagerduty/pd", done, pd_headers(done)).json()["result"] == "resolve_proposed"
    assert len(drafts(env)) == 1


def test_opsgenie_and_uptime_kuma(alerts_env):
    env = alerts_env
    og = raw({"action": "Create", "alert": {"alertId": "og-1", "message": "API 5xx", "description": "Errors up",
                                            "priority": "P1", "tags": ["api"]},
              "source": {"name": "", "type": "web"}, "integrationName": "broadcaster", "integrationType": "Webhook"})
    assert send(env, "opsgenie/og", og, bearer(OG_TOKEN)).status_code == 401  # wrong header
    r = send(env, "opsgenie/og", og, {"X-Broadcaster-Secret": OG_TOKEN, "Content-Type": "application/json"})
    assert r.json()["result"] == "created"
    kuma = raw({"heartbeat": {"monitorID": 7, "status": 0, "msg": "timeout", "time": "2026-11-30 05:00:00"},
                "monitor": {"id": 7, "name": "Shop", "url": "https://shop.example.test", "type": "http"},
                "msg": "[Shop] [Down] timeout"})
    assert send(env, "uptime-kuma/kuma", kuma, {"Content-Type": "application/json"}).status_code == 401
    r = send(env, "uptime-kuma/kuma", kuma, bearer(KUMA_TOKEN))
    assert r.json()["result"] == "created"
    assert DraftStore(env.ledger).get(r.json()["draft"]).fields["title"] == "Shop is down"
    test_ping = raw({"heartbeat": None, "monitor": None, "msg": "Uptime Kuma test"})
    assert send(env, "uptime-kuma/kuma", test_ping, bearer(KUMA_TOKEN)).json()["result"] == "ignored"


def test_alert_text_cannot_reach_into_templates_or_break_the_page(alerts_env):
    env = alerts_env
    body = raw(am_payload("firing", summary="{labels.__class__} {0.__init__} <script>x</script>"))
    r = send(env, "alertmanager/prom", body, bearer(AM_TOKEN))
    d = DraftStore(env.ledger).get(r.json()["draft"])
    assert d.fields["title"] == "DiskFull: {labels.__class__} {0.__init__} <script>x</script>"


def test_malformed_payload_is_a_clear_error_and_drafts_api_edits(alerts_env):
    env = alerts_env
    r = send(env, "alertmanager/prom", b'{"status": "firing", "alerts": "nope"}', bearer(AM_TOKEN))
    assert r.status_code == 422 and r.json()["error"]["details"].get("field") == "alerts", r.text
    draft_id = send(env, "alertmanager/prom", raw(am_payload("firing")), bearer(AM_TOKEN)).json()["draft"]
    bad = env.client.patch(f"/api/v1/drafts/{draft_id}", json={"severity": "apocalyptic"}, headers=env.admin)
    assert bad.status_code == 422, bad.text
    ok = env.client.patch(f"/api/v1/drafts/{draft_id}", json={"title": "Database disk full"}, headers=env.admin)
    assert ok.status_code == 200 and ok.json()["fields"]["title"] == "Database disk full"
    listed = env.get("/drafts?state=draft").json()["items"]
    assert [d["id"] for d in listed] == [draft_id]
    # a token that may not post incidents can neither publish nor discard it
    deploy = env.token("deployer", kinds=["deploy"])
    assert env.client.post(f"/api/v1/drafts/{draft_id}/publish", headers=deploy).status_code == 403
    assert env.post(f"/drafts/{draft_id}/discard", {}).json()["state"] == "discarded"
    assert not announcements(env)


def test_inbound_config_errors_name_the_key_and_hide_secrets():
    from broadcaster.config import load_settings
    from broadcaster.errors import ConfigError

    bad = {"receivers": {"pd": {"source": "pagerduty", "token": "tok-SECRET-1"},
                         "am": {"source": "alertmanager"},
                         "kuma": {"source": "uptime-kuma", "token": "x", "hmac_secret": "hm-SECRET-2"}},
           "rules": [{"match": {"receiver": "nope"}, "channels": ["missing"]}]}
    with pytest.raises(ConfigError) as err:
        load_settings(config(inbound=bad), env={})
    text = "\n".join(err.value.lines())
    for path in ("inbound.receivers.pd.hmac_secret", "inbound.receivers.am:", "inbound.receivers.kuma.hmac_secret",
                 "inbound.rules[0].match.receiver", "inbound.rules[0].channels[0]"):
        assert path in text, text
    assert "SECRET" not in text
    assert "SECRET" not in repr(load_settings(config(inbound=INBOUND), env={}).inbound)


def test_publish_rule_flap_after_resolve_reopens_the_same_incident(alerts_env):
    env = alerts_env
    send(env, "alertmanager/prom-auto", raw(am_payload("firing")), bearer(AM_TOKEN))
    send(env, "alertmanager/prom-auto", raw(am_payload("resolved")), bearer(AM_TOKEN))
    again = send(env, "alertmanager/prom-auto", raw(am_payload("firing")), bearer(AM_TOKEN)).json()
    assert again["result"] == "reopened" and again["update"], again
    [ann] = announcements(env)
    assert env.ledger.get_announcement(ann.id).status == "investigating"
    send(env, "alertmanager/prom-auto", raw(am_payload("resolved")), bearer(AM_TOKEN))
    assert env.ledger.get_announcement(ann.id).status == "resolved"
    assert len(announcements(env)) == 1 and len(drafts(env)) == 1


def test_a_group_that_fires_after_the_flap_window_is_a_new_draft(tmp_path):
    env = Env(tmp_path, config(inbound={**INBOUND, "flap_window": "0s"}))
    try:
        first = send(env, "alertmanager/prom", raw(am_payload("firing")), bearer(AM_TOKEN)).json()["draft"]
        send(env, "alertmanager/prom", raw(am_payload("resolved")), bearer(AM_TOKEN))
        time.sleep(0.01)  # past a zero-length window (ordering, not timing: any later moment will do)
        second = send(env, "alertmanager/prom", raw(am_payload("firing")), bearer(AM_TOKEN)).json()
        assert second["result"] == "created" and second["draft"] != first
        assert {d.state for d in drafts(env)} == {"expired", "draft"}
    finally:
        env.client.close()
        env.ledger.close()
