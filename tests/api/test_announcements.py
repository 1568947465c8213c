"""Submit, list, show, updates, retract, cancel — and Idempotency-Key on every POST."""

from __future__ import annotations

import json
import re
import time

import pytest

from broadcaster.models import DeliveryState
from tests.support.ledger import audit_entries, claim, updates_of

from .conftest import assert_error, config

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
INCIDENT = {"kind": "incident", "title": "Database is down", "body": "We are investigating.", "severity": "major"}


# ---------------------------------------------------------------- submit


def test_submit_is_accepted_durable_and_wakes_the_workers(env):
    r = env.post("/announcements", INCIDENT)
    assert r.status_code == 202
    body = r.json()
    assert r.headers["location"] == f"/api/v1/announcements/{body['id']}"
    assert body["kind"] == "incident" and body["status"] == "investigating" and body["author"] == "admin"
    assert [d["channel"] for d in body["deliveries"]] == ["hook", "ops-chat"]
    assert {d["state"] for d in body["deliveries"]} == {"pending"}
    # durable: the ledger has it, and one wake-up per delivery went to the channel's queue
    assert {d.channel for d in env.ledger.deliveries_of(body["id"])} == {"hook", "ops-chat"}
    assert sorted((c, d) for d, c, _ in env.enqueued) == sorted((d["channel"], d["id"]) for d in body["deliveries"])


def with_components(make_env, tmp_path):
    """The API config plus a status channel that declares components (not routed)."""
    cfg = config()
    cfg["channels"] = {**cfg["channels"], "site": {"kind": "statuspage", "output_dir": str(tmp_path / "site"),
                                                   "components": ["API", "Database"]}}
    return make_env(cfg)


def test_the_202_body_is_what_a_get_shows(make_env, tmp_path):
    env = with_components(make_env, tmp_path)
    r = env.post("/announcements", {**INCIDENT, "components": ["api"], "tags": ["db"]})
    assert r.status_code == 202
    assert env.get(f"/announcements/{r.json()['id']}").json() == r.json()


def test_component_names_map_to_their_configured_spelling(make_env, tmp_path):
    env = with_components(make_env, tmp_path)
    r = env.post("/announcements", {**INCIDENT, "components": [" api ", "DATABASE", "API"]})
    assert r.status_code == 202, r.text
    assert r.json()["components"] == ["API", "Database"]  # one spelling, no duplicates


def test_unknown_components_are_refused_at_submit_with_the_known_ones(make_env, tmp_path):
    env = with_components(make_env, tmp_path)
    before = len(env.ledger.list_announcements())
    err = assert_error(env.post("/announcements", {**INCIDENT, "components": ["API", "checkout"]}), 422,
                       "invalid_request")
    assert err["details"]["field"] == "components" and err["details"]["known"] == ["API", "Database"]
    assert "'checkout'" in err["message"] and "API, Database" in err["message"]
    assert len(env.ledger.list_announcements()) == before  # nothing written
    ann = env.post("/announcements", {**INCIDENT, "components": ["API"]}).json()
    err = assert_error(env.post(f"/announcements/{ann['id']}/updates",
                                {"status": "identified", "body": "b", "components": ["Checkout"]}), 422,
                       "invalid_request")
    assert err["details"]["field"] == "components"


def test_without_configured_components_any_component_is_refused(env):
    err = assert_error(env.post("/announcements", {**INCIDENT, "components": ["api"]}), 422, "invalid_request")
    assert err["details"] == {"field": "components", "known": []} and "no components are configured" in err["message"]


def test_delivery_fields_and_iso_times(env):
    d = env.submit()["deliveries"][0]
    assert set(d) >= {"id", "channel", "state", "attempts", "due_at", "deadline_at", "remote_id", "remote_url",
                      "last_error", "fallback_of", "created_at", "updated_at", "settled_at", "events"}
    for key in ("due_at", "deadline_at", "created_at", "updated_at"):
        assert ISO.match(d[key]), (key, d[key])
    assert d["events"] == [{"at": d["events"][0]["at"], "from": None, "to": "pending", "attempt": 0,
                            "reason": "accepted", "response": None}]


def test_same_idempotency_key_and_body_returns_the_same_announcement(env):
    key = {"Idempotency-Key": "deploy-pipeline-4711"}
    first = env.post("/announcements", INCIDENT, headers=key)
    again = env.post("/announcements", INCIDENT, headers=key)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(env.ledger.list_announcements()) == 1
    assert len(env.enqueued) == 2  # the replay woke nobody


def test_same_idempotency_key_with_a_different_body_is_422(env):
    key = {"Idempotency-Key": "k-1"}
    assert env.post("/announcements", INCIDENT, headers=key).status_code == 202
    r = env.post("/announcements", {**INCIDENT, "title": "Something else"}, headers=key)
    assert_error(r, 422, "idempotency_conflict")
    assert len(env.ledger.list_announcements()) == 1


def test_idempotency_keys_are_per_token(env):
    key = {"Idempotency-Key": "shared"}
    a = env.post("/announcements", INCIDENT, headers=key).json()["id"]
    other = env.token("other", kinds=["incident"])
    r = env.client.post("/api/v1/announcements", json=INCIDENT, headers={**other, **key})
    assert r.status_code == 202 and r.json()["id"] != a


def test_an_overlong_idempotency_key_is_refused(env):
    r = env.post("/announcements", INCIDENT, headers={"Idempotency-Key": "x" * 300})
    assert assert_error(r, 422, "invalid_request")["details"]["field"] == "Idempotency-Key"


@pytest.mark.parametrize("body, field", [
    ({"kind": "incident", "body": "no title"}, "title"),
    ({"kind": "incident", "title": ""}, "title"),
    ({"kind": "outage", "title": "x"}, "kind"),
    ({"kind": "incident", "title": "x", "severity": "apocalyptic"}, "severity"),
    ({"kind": "incident", "title": "x", "url": "javascript:alert(1)"}, "url"),
    ({"kind": "incident", "title": "x", "colour": "red"}, "colour"),
    ({"kind": "incident", "title": "x", "publish_at": "next tuesday"}, "publish_at"),
    ({"kind": "incident", "title": "x", "channels": ["nowhere"]}, "channels"),
    ({"kind": "incident", "title": "x", "channels": ["hook"], "variants": {"ops-chat": {"title": "y"}}}, "variants"),
])
def test_validation_errors_name_the_field(env, body, field):
    err = assert_error(env.post("/announcements", body), 422, "invalid_request")
    assert err["details"]["field"] == field
    if field not in ("channels", "variants"):  # those come from the service with their own wording
        assert err["message"].startswith(f"{field}: ")


def test_invalid_json_is_400(env):
    r = env.client.post("/api/v1/announcements", content=b'{"kind": "incident", "title": ',
                        headers={**env.admin, "Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")


def test_missing_body_is_422(env):
    assert_error(env.post("/announcements"), 422, "invalid_request")


def test_explicit_channels_and_variants(env):
    a = env.submit(channels=["discord"], variants={"discord": {"title": "Short"}}, kind="promotion",
                   title="Sale", body="20% off")
    assert a["channels"] == ["discord"] and a["variants"] == {"discord": {"title": "Short"}}


# ---------------------------------------------------------------- token scope matrix

MATRIX = [
    # (token scope, announcement, expected status)
    ({"kinds": ["deploy"]}, {"kind": "deploy", "title": "v1.2 deployed"}, 202),
    ({"kinds": ["deploy"]}, {"kind": "incident", "title": "not allowed"}, 403),
    ({"kinds": ["deploy"]}, {"kind": "promotion", "title": "not allowed"}, 403),
    ({"kinds": ["deploy"], "channels": ["ops-chat"]}, {"kind": "deploy", "title": "ok", "channels": ["ops-chat"]}, 202),
    ({"kinds": ["deploy"], "channels": ["ops-chat"]}, {"kind": "deploy", "title": "x", "channels": ["hook"]}, 403),
    ({"channels": ["hook"]}, {"kind": "incident", "title": "route includes ops-chat"}, 403),
    ({"channels": ["hook"]}, {"kind": "incident", "title": "ok", "channels": ["hook"]}, 202),
    ({}, {"kind": "promotion", "title": "any kind, any channel"}, 202),
    ({"kinds": ["deploy"], "admin": True}, {"kind": "incident", "title": "admin overrides"}, 202),
]


@pytest.mark.parametrize("scope, body, status", MATRIX)
def test_token_scope_matrix(env, scope, body, status):
    headers = env.token("scoped", **scope)
    r = env.client.post("/api/v1/announcements", json=body, headers=headers)
    if status == 403:
        err = assert_error(r, 403, "forbidden")
        assert "scoped" in err["message"]
        assert env.ledger.list_announcements() == []
    else:
        assert r.status_code == status, r.text


def test_deploy_token_cannot_post_an_incident_with_a_clear_message(env):
    ci = env.token("ci-deploy", kinds=["deploy"], channels=["ops-chat"])
    r = env.client.post("/api/v1/announcements", json=INCIDENT, headers=ci)
    err = assert_error(r, 403, "forbidden")
    assert "'ci-deploy' may not post 'incident'" in err["message"]


def test_static_token_from_the_config_is_scoped_too(env):
    from .conftest import STATIC_TOKEN

    h = {"Authorization": f"Bearer {STATIC_TOKEN}"}
    assert env.client.post("/api/v1/announcements", json=INCIDENT, headers=h).status_code == 202
    r = env.client.post("/api/v1/announcements", json={"kind": "deploy", "title": "x"}, headers=h)
    assert_error(r, 403, "forbidden")


def test_actions_are_audited_with_the_token_name(env):
    ops = env.token("ops-alice", kinds=["incident"])
    a = env.client.post("/api/v1/announcements", json=INCIDENT, headers=ops).json()
    env.client.post(f"/api/v1/announcements/{a['id']}/updates", json={"status": "identified", "body": "found it"},
                    headers=ops)
    env.client.post(f"/api/v1/announcements/{a['id']}/retract", json={"reason": "wrong"}, headers=ops)
    mine = [(e["actor"], e["action"]) for e in audit_entries(env.ledger) if e["target"] == a["id"]]
    assert ("ops-alice", "announcement.create") in mine
    assert ("ops-alice", "announcement.update") in mine
    assert ("ops-alice", "announcement.retract") in mine


# ---------------------------------------------------------------- list and show


def test_list_filters_and_pages(env):
    ids = [env.submit(title=f"incident {i}")["id"] for i in range(5)]
    deploy = env.submit(kind="deploy", title="v2", severity=None)["id"]
    page = env.get("/announcements", params={"limit": 2}).json()
    assert [a["id"] for a in page["items"]] == [deploy, ids[4]]
    assert page["next"] == ids[4]
    seen = [a["id"] for a in page["items"]]
    while page["next"]:
        page = env.get("/announcements", params={"limit": 2, "before": page["next"]}).json()
        seen += [a["id"] for a in page["items"]]
    assert seen == [deploy, *ids[::-1]]
    assert [a["id"] for a in env.get("/announcements", params={"kind": "deploy"}).json()["items"]] == [deploy]
    item = env.get("/announcements", params={"kind": "deploy"}).json()["items"][0]
    assert item["overall"] == "in_progress" and item["counts"] == {"pending": 1}
    assert "deliveries" not in item


def test_list_by_state_status_open_and_time(env):
    a = env.submit()
    b = env.submit(title="second")
    env.ledger.force(a["deliveries"][0]["id"], DeliveryState.FAILED, "test", actor="t", from_states=[DeliveryState.PENDING])
    got = env.get("/announcements", params={"state": "failed"}).json()["items"]
    assert [x["id"] for x in got] == [a["id"]]
    env.post(f"/announcements/{b['id']}/updates", {"status": "resolved", "body": "fixed"})
    assert [x["id"] for x in env.get("/announcements", params={"open": "true"}).json()["items"]] == [a["id"]]
    assert [x["id"] for x in env.get("/announcements", params={"status": "resolved"}).json()["items"]] == [b["id"]]
    future = time.time() + 3600
    assert env.get("/announcements", params={"since": future}).json()["items"] == []
    assert len(env.get("/announcements", params={"until": "2999-01-01T00:00:00Z"}).json()["items"]) == 2
    assert env.get("/announcements", params={"until": "2001-01-01T00:00:00+02:00"}).json()["items"] == []


@pytest.mark.parametrize("params, field", [({"kind": "outage"}, "kind"), ({"state": "lost"}, "state"),
                                            ({"since": "yesterday"}, "since"), ({"limit": 0}, "limit"),
                                            ({"limit": 1000}, "limit"), ({"open": "maybe"}, "open")])
def test_list_rejects_bad_filters(env, params, field):
    err = assert_error(env.get("/announcements", params=params), 422, "invalid_request")
    assert err["details"]["field"] == field


def test_show_has_every_delivery_with_events_and_updates(env):
    a = env.submit()
    did = a["deliveries"][0]["id"]
    d = env.ledger.get_delivery(did)
    claimed = claim(env.ledger, did, "w1", 30)
    from broadcaster.models import Receipt

    env.ledger.transition(claimed, DeliveryState.DELIVERED, "sent", owner="w1", attempted=True,
                          receipt=Receipt("r-1", "https://chat.example.test/r-1"), response="HTTP 200")
    env.post(f"/announcements/{a['id']}/updates", {"status": "identified", "body": "A disk filled up."})
    got = env.get(f"/announcements/{a['id']}").json()
    hook = next(x for x in got["deliveries"] if x["id"] == d.id)
    assert hook["state"] == "delivered" and hook["attempts"] == 1
    assert hook["remote_id"] == "r-1" and hook["remote_url"] == "https://chat.example.test/r-1"
    assert ISO.match(hook["settled_at"])
    assert [(e["from"], e["to"]) for e in hook["events"]] == [(None, "pending"), ("pending", "sending"),
                                                              ("sending", "delivered")]
    assert hook["events"][-1]["response"] == "HTTP 200"
    assert [u["status"] for u in got["updates"]] == ["identified"]
    assert len(got["deliveries"]) == 4 and sum(1 for x in got["deliveries"] if x["update_id"]) == 2
    assert got["status"] == "identified"


def test_show_unknown_is_404_json(env):
    err = assert_error(env.get("/announcements/ann_nope"), 404, "not_found")
    assert "ann_nope" in err["message"]


# ---------------------------------------------------------------- updates


def test_update_goes_to_every_channel_and_replays(env):
    a = env.submit()
    key = {"Idempotency-Key": "upd-1"}
    body = {"status": "identified", "body": "Found the cause."}
    r = env.post(f"/announcements/{a['id']}/updates", body, headers=key)
    assert r.status_code == 202 and r.headers["location"] == f"/api/v1/announcements/{a['id']}"
    out = r.json()
    assert out["announcement_id"] == a["id"] and out["status"] == "identified"
    assert sorted(d["channel"] for d in out["deliveries"]) == ["hook", "ops-chat"]
    assert all(d["update_id"] == out["id"] for d in out["deliveries"])
    again = env.post(f"/announcements/{a['id']}/updates", body, headers=key)
    assert again.status_code == 200 and again.json()["id"] == out["id"]
    assert_error(env.post(f"/announcements/{a['id']}/updates", {**body, "body": "other"}, headers=key),
                 422, "idempotency_conflict")
    assert len(updates_of(env.ledger, a["id"])) == 1


def test_update_errors(env):
    a = env.submit()
    assert_error(env.post("/announcements/ann_nope/updates", {"status": "identified", "body": "x"}), 404, "not_found")
    err = assert_error(env.post(f"/announcements/{a['id']}/updates", {"status": "completed", "body": "x"}),
                       422, "invalid_request")
    assert err["details"]["field"] == "status"
    err = assert_error(env.post(f"/announcements/{a['id']}/updates", {"status": "identified"}), 422, "invalid_request")
    assert err["details"]["field"] == "body"
    ci = env.token("ci", kinds=["deploy"])
    r = env.client.post(f"/api/v1/announcements/{a['id']}/updates", json={"status": "identified", "body": "x"},
                        headers=ci)
    assert_error(r, 403, "forbidden")


# ---------------------------------------------------------------- retract and cancel


def test_retract_stops_pending_and_retracts_delivered(env):
    a = env.submit()
    hook = a["deliveries"][0]["id"]
    claimed = claim(env.ledger, hook, "w1", 30)
    env.ledger.transition(claimed, DeliveryState.DELIVERED, "sent", owner="w1", attempted=True)
    r = env.post(f"/announcements/{a['id']}/retract", {"reason": "posted by mistake"})
    assert r.status_code == 202
    assert r.json() == {"id": a["id"], "cancelled": 1, "retracting": 1, "already": 0}
    assert env.retracts == [(hook, "hook")]
    got = env.get(f"/announcements/{a['id']}").json()
    assert ISO.match(got["retracted_at"])
    assert {d["channel"]: d["state"] for d in got["deliveries"]}["ops-chat"] == "cancelled"


def test_retract_without_a_body_and_replay_with_a_key(env):
    a = env.submit()
    key = {"Idempotency-Key": "retract-1"}
    first = env.client.post(f"/api/v1/announcements/{a['id']}/retract", headers={**env.admin, **key})
    assert first.status_code == 202 and first.json()["cancelled"] == 2
    again = env.client.post(f"/api/v1/announcements/{a['id']}/retract", headers={**env.admin, **key})
    assert again.status_code == 200 and again.json() == first.json()  # the stored answer, not "0 cancelled"
    assert again.headers["idempotent-replayed"] == "true"
    r = env.post(f"/announcements/{a['id']}/retract", {"reason": "different"}, headers=key)
    assert_error(r, 422, "idempotency_conflict")
    # without a key a second retract is harmless and says so
    assert env.post(f"/announcements/{a['id']}/retract").json()["already"] == 2


def test_retract_errors(env):
    assert_error(env.post("/announcements/ann_nope/retract"), 404, "not_found")
    a = env.submit()
    ci = env.token("ci", kinds=["deploy"])
    assert_error(env.client.post(f"/api/v1/announcements/{a['id']}/retract", headers=ci), 403, "forbidden")
    assert_error(env.post(f"/announcements/{a['id']}/retract", {"reasons": "typo"}), 422, "invalid_request")
    assert env.ledger.get_announcement(a["id"]).retracted_at is None


def test_cancel_a_scheduled_announcement(env):
    a = env.submit(kind="maintenance", title="DB upgrade", severity=None,
                   publish_at=time.time() + 3600)
    assert {d["state"] for d in a["deliveries"]} == {"scheduled"}
    assert env.enqueued == []
    key = {"Idempotency-Key": "cancel-1"}
    r = env.post(f"/announcements/{a['id']}/cancel", headers=key)
    assert r.status_code == 200 and r.json() == {"id": a["id"], "cancelled": 1}
    assert env.post(f"/announcements/{a['id']}/cancel", headers=key).json() == {"id": a["id"], "cancelled": 1}
    assert env.post(f"/announcements/{a['id']}/cancel").json()["cancelled"] == 0
    assert {d["state"] for d in env.get(f"/announcements/{a['id']}").json()["deliveries"]} == {"cancelled"}
    assert_error(env.post("/announcements/ann_nope/cancel"), 404, "not_found")


def test_component_states_are_chosen_per_component_and_checked(make_env, tmp_path):
    env = with_components(make_env, tmp_path)
    r = env.post("/announcements", {**INCIDENT, "components": ["API", "Database"],
                                    "component_states": {"database": "major_outage"}})
    assert r.status_code == 202, r.text
    assert r.json()["component_states"] == {"Database": "major_outage"}  # the configured spelling
    assert env.ledger.get_announcement(r.json()["id"]).component_states == {"Database": "major_outage"}
    before = len(env.ledger.list_announcements())
    for states, field, words in [
        ({"API": "on_fire"}, "component_states", "'on_fire' is not a component state"),
        ({"Checkout": "major_outage"}, "component_states", "unknown component(s) 'Checkout'"),
        ({"Database": "major_outage"}, "component_states", "'Database' not among"),  # not in components
    ]:
        body = {**INCIDENT, "components": ["API"], "component_states": states}
        err = assert_error(env.post("/announcements", body), 422, "invalid_request")
        assert err["details"]["field"].startswith(field) and words in err["message"], err
    err = assert_error(env.post("/announcements", {"kind": "promotion", "title": "Sale",
                                                   "component_states": {"API": "operational"}}), 422, "invalid_request")
    assert "only incidents and maintenance" in err["message"]
    assert len(env.ledger.list_announcements()) == before  # nothing written


def test_an_update_sets_component_states_and_the_status_site_shows_the_latest(make_env, tmp_path):
    """Issue 16 item 1: an update may change a component's state ("identified: API now degraded
    instead of major outage"); the site shows the latest given per component, operational once
    resolved."""
    from broadcaster.drain import drain

    env = with_components(make_env, tmp_path)
    site = tmp_path / "site"

    def shown() -> dict[str, str]:
        drain(env.runtime, "site", owner="t")
        summary = json.loads((site / "api/v2/summary.json").read_text())
        return {c["name"]: c["status"] for c in summary["components"]}

    a = env.submit(**INCIDENT, channels=["site"], components=["API", "Database"],
                   component_states={"API": "major_outage"})
    assert shown() == {"API": "major_outage", "Database": "partial_outage"}
    before = updates_of(env.ledger, a["id"])
    for states, words in [({"API": "on_fire"}, "'on_fire' is not a component state"),
                          ({"Checkout": "major_outage"}, "unknown component(s) 'Checkout'")]:
        err = assert_error(env.post(f"/announcements/{a['id']}/updates",
                                    {"status": "identified", "body": "x", "component_states": states}),
                           422, "invalid_request")
        assert err["details"]["field"].startswith("component_states") and words in err["message"], err
    err = assert_error(env.post(f"/announcements/{a['id']}/updates",
                                {"status": "identified", "body": "x", "components": ["API"],
                                 "component_states": {"Database": "major_outage"}}), 422, "invalid_request")
    assert "'Database' not among" in err["message"]
    assert updates_of(env.ledger, a["id"]) == before  # nothing written

    r = env.post(f"/announcements/{a['id']}/updates", {"status": "identified", "body": "Found it.",
                                                       "component_states": {"api": "degraded_performance"}})
    assert r.status_code == 202, r.text
    (u,) = updates_of(env.ledger, a["id"])
    assert u.component_states == {"API": "degraded_performance"}  # stored with the update, configured spelling
    status = env.get(f"/announcements/{a['id']}").json()
    assert status["updates"][0]["component_states"] == {"API": "degraded_performance"}
    assert status["component_states"] == {"API": "degraded_performance"}
    assert shown() == {"API": "degraded_performance", "Database": "partial_outage"}
    index = (site / "index.html").read_text()
    assert "Degraded performance" in index

    r = env.post(f"/announcements/{a['id']}/updates", {"status": "monitoring", "body": "Better.",
                                                       "component_states": {"Database": "degraded_performance"}})
    assert r.status_code == 202, r.text
    assert shown() == {"API": "degraded_performance", "Database": "degraded_performance"}  # each its latest
    r = env.post(f"/announcements/{a['id']}/updates", {"status": "resolved", "body": "Fixed."})
    assert r.status_code == 202, r.text
    assert shown() == {"API": "operational", "Database": "operational"}


def test_only_incidents_and_maintenance_updates_set_component_states(make_env, tmp_path):
    env = with_components(make_env, tmp_path)
    a = env.submit(kind="notice", title="New office", components=["API"])
    err = assert_error(env.post(f"/announcements/{a['id']}/updates",
                                {"status": "update", "body": "x", "component_states": {"API": "operational"}}),
                       422, "invalid_request")
    assert "only incidents and maintenance" in err["message"]
