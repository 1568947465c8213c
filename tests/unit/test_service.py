"""Use cases shared by API, CLI and web page: submit, add_update, retract, retry_delivery,
cancel_scheduled — on a real SQLite ledger with a fake clock and a recording enqueuer."""

from __future__ import annotations

import pytest

from broadcaster import scheduler, service
from broadcaster.config import load_settings
from broadcaster.errors import Forbidden, IdempotencyConflict, InvalidRequest, NotFound
from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S, Receipt
from broadcaster.service import SYSTEM, Principal
from tests.support.ledger import audit_entries, claim, updates_of
from tests.support.runtime import NOW, Clock, memory_runtime, wakeups


def hook(name: str) -> dict:
    return {"kind": "webhook", "url": f"https://hooks.example/{name}"}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def rt(tmp_path, clock):
    settings = load_settings({
        "channels": {"a": hook("a"), "b": hook("b"), "c": hook("c"), "promo": hook("promo"),
                     "off": {**hook("off"), "enabled": False}},
        "routes": {"incident": ["a", "b"], "promotion": ["promo"]},
        "policy": {"channels": {"a": {"fallback": ["c"]}}, "deadlines": {"incident": "1h"}},
        "quiet_during_incidents": ["promotion"],
    }, env={})
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db", clock=clock)
    runtime = memory_runtime(settings, ledger=ledger, clock=clock)
    yield runtime
    ledger.close()


def enqueued(rt) -> list[tuple[str, str]]:
    """(delivery id, channel) of every wake-up so far."""
    return [(did, ch) for did, ch, _ in wakeups(rt).deliveries]


INCIDENT = {"kind": "incident", "title": "API errors", "body": "We are investigating.", "severity": "major"}


def by_channel(rt, ann_id, update_id=None):
    return {d.channel: d for d in rt.ledger.deliveries_of(ann_id) if d.update_id == update_id}


def settle(rt, delivery, to, **kw):
    """Play a worker: claim the row and record an outcome."""
    claimed = claim(rt.ledger, delivery.id, "w", 30)
    assert claimed is not None
    fallbacks = kw.pop("fallbacks", None)
    assert rt.ledger.transition(claimed, to, "test", owner="w", attempted=True, fallbacks=fallbacks, **kw)
    return rt.ledger.get_delivery(delivery.id)


# ---------------------------------------------------------------- submit: validation names the field


@pytest.mark.parametrize("data, field", [
    ({"kind": "incident"}, "title"),
    ({"kind": "incident", "title": ""}, "title"),
    ({"kind": "incident", "title": "   "}, "title"),
    ({"kind": "party", "title": "x"}, "kind"),
    ({"kind": "incident", "title": "x", "severity": "apocalyptic"}, "severity"),
    ({"kind": "incident", "title": "x", "url": "ftp://example.com"}, "url"),
    ({"kind": "incident", "title": "x", "colour": "red"}, "colour"),
    ({"kind": "incident", "title": "x", "publish_at": "next tuesday"}, "publish_at"),
    ({"kind": "incident", "title": "x" * 301}, "title"),
    ({"kind": "incident", "title": "x", "tags": "not-a-list"}, "tags"),
    ({"kind": "maintenance", "title": "x", "window": {"starts_at": NOW + 10, "ends_at": NOW}}, "window"),
    ({"kind": "maintenance", "title": "x", "window": {"starts_at": NOW}}, "window.ends_at"),
    ({"kind": "incident", "title": "x", "variants": {"a": {"colour": "red"}}}, "variants.a.colour"),
    ({"kind": "incident", "title": "x", "channels": ["ghost"]}, "channels"),
    ({"kind": "incident", "title": "x", "channels": ["off"]}, "channels"),
    ({"kind": "incident", "title": "x", "channels": ["a"], "variants": {"b": {"title": "y"}}}, "variants"),
    ({"kind": "deploy", "title": "x"}, "channels"),  # no route for deploys
])
def test_submit_validation_errors_name_the_field(rt, data, field):
    with pytest.raises(InvalidRequest) as info:
        service.submit(rt, data, principal=SYSTEM)
    assert info.value.field == field, str(info.value)
    assert rt.ledger.list_announcements() == [], "nothing is written for a refused request"
    assert enqueued(rt) == []


def test_status_not_valid_for_the_kind_is_refused(rt):
    with pytest.raises(InvalidRequest, match="status 'resolved' is not valid for a promotion"):
        service.submit(rt, {"kind": "promotion", "title": "Sale", "status": "resolved"}, principal=SYSTEM)


def test_an_update_status_not_valid_for_an_incident_says_an_incident(rt):
    """The outside trial: the message read "not valid for a incident"."""
    ann = service.submit(rt, INCIDENT, principal=SYSTEM)
    with pytest.raises(InvalidRequest) as info:
        service.add_update(rt, ann.id, {"status": "completed", "body": "x"}, principal=SYSTEM)
    assert "is not valid for an incident" in str(info.value), str(info.value)


def test_every_built_message_takes_the_right_article():
    from broadcaster.wording import a

    assert [a(w) for w in ("incident", "maintenance", "update", "identified", "investigating", "resolved",
                           "unknown", "user", "URL", "hour", "deploy", "announcement", "Incident")] == [
        "an incident", "a maintenance", "an update", "an identified", "an investigating", "a resolved",
        "an unknown", "a user", "a URL", "an hour", "a deploy", "an announcement", "an Incident"]


def test_submit_uses_the_route_when_no_channels_are_given(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    assert sub.created
    ds = rt.ledger.deliveries_of(sub.id)
    assert sorted(d.channel for d in ds) == ["a", "b"]
    assert all(d.state == S.PENDING and d.due_at == NOW for d in ds)
    assert all(d.deadline_at == NOW + 3600 for d in ds), "per-kind deadline from policy.deadlines"
    assert sorted(enqueued(rt)) == sorted((d.id, d.channel) for d in ds)
    ann = rt.ledger.get_announcement(sub.id)
    assert ann.status == "investigating" and ann.channels == ("a", "b") and ann.author == "system"


def test_explicit_channels_are_deduplicated_and_win_over_the_route(rt):
    sub = service.submit(rt, {**INCIDENT, "channels": ["c", "c", "b"]}, principal=SYSTEM)
    assert [d.channel for d in rt.ledger.deliveries_of(sub.id)] == ["c", "b"]


# ---------------------------------------------------------------- who may post


def test_principal_limited_to_kinds(rt):
    ci = Principal("ci", kinds=("deploy", "maintenance"))
    with pytest.raises(Forbidden, match="may not post 'incident'"):
        service.submit(rt, INCIDENT, principal=ci)
    assert rt.ledger.list_announcements() == []


def test_principal_limited_to_channels(rt):
    p = Principal("ops", channels=("a", "c"))
    with pytest.raises(Forbidden, match="b"):
        service.submit(rt, INCIDENT, principal=p)  # the route includes b
    sub = service.submit(rt, {**INCIDENT, "channels": ["a"]}, principal=p)
    assert sub.created
    # a falls back to c: a token for a alone could reach c that way, so it is refused
    with pytest.raises(Forbidden, match="may not post to c, where a falls back"):
        service.submit(rt, {**INCIDENT, "channels": ["a"]}, principal=Principal("ops-a", channels=("a",)))


def test_admin_may_post_anything(rt):
    boss = Principal("boss", kinds=("deploy",), channels=("c",), admin=True)
    assert service.submit(rt, INCIDENT, principal=boss).created


def test_restricted_principal_cannot_update_or_retract_other_channels(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    p = Principal("ops", channels=("a",))
    with pytest.raises(Forbidden):
        service.add_update(rt, sub.id, {"status": "identified", "body": "Found it"}, principal=p)
    with pytest.raises(Forbidden):
        service.retract(rt, sub.id, principal=p)
    assert updates_of(rt.ledger, sub.id) == []
    assert rt.ledger.get_announcement(sub.id).retracted_at is None


# ---------------------------------------------------------------- scheduling and quiet periods


def test_publish_at_in_the_future_is_scheduled_and_released_by_the_sweep(rt, clock):
    sub = service.submit(rt, {**INCIDENT, "publish_at": NOW + 600}, principal=SYSTEM)
    ds = rt.ledger.deliveries_of(sub.id)
    assert all(d.state == S.SCHEDULED and d.due_at == NOW + 600 for d in ds)
    assert all(d.deadline_at == NOW + 600 + 3600 for d in ds), "the deadline counts from the publish time"
    assert enqueued(rt) == []
    assert scheduler.tick(rt).promoted == 0
    clock.advance(600)
    report = scheduler.tick(rt)
    assert report.promoted == 2 and report.enqueued == 2
    assert all(d.state == S.PENDING for d in rt.ledger.deliveries_of(sub.id))
    assert wakeups(rt).forced == [True, True], "the sweep publishes past a pending drain's mark"


def test_a_submit_wakes_its_channels_coalescible(rt):
    service.submit(rt, INCIDENT, principal=SYSTEM)
    assert [ch for _, ch in enqueued(rt)] == ["a", "b"] and wakeups(rt).forced == [False, False]


def test_publish_at_as_iso_text_and_in_the_past(rt):
    sub = service.submit(rt, {**INCIDENT, "publish_at": "2023-11-14T22:13:20Z"}, principal=SYSTEM)
    assert all(d.state == S.PENDING for d in rt.ledger.deliveries_of(sub.id)), "a past publish_at means now"


def test_promotions_are_held_while_an_incident_is_open(rt, clock):
    incident = service.submit(rt, INCIDENT, principal=SYSTEM)
    promo = service.submit(rt, {"kind": "promotion", "title": "Sale", "body": "50% off"}, principal=SYSTEM)
    [d] = rt.ledger.deliveries_of(promo.id)
    assert d.state == S.SCHEDULED, "held: an incident is open"
    assert (d.id, "promo") not in enqueued(rt)
    clock.advance(60)
    scheduler.tick(rt)
    assert rt.ledger.get_delivery(d.id).state == S.SCHEDULED, "still held by the sweep"
    service.add_update(rt, incident.id, {"status": "resolved", "body": "Fixed."}, principal=SYSTEM)
    scheduler.tick(rt)
    assert rt.ledger.get_delivery(d.id).state == S.PENDING, "released once the incident is resolved"


def test_promotions_flow_when_no_incident_is_open(rt):
    promo = service.submit(rt, {"kind": "promotion", "title": "Sale"}, principal=SYSTEM)
    assert [d.state for d in rt.ledger.deliveries_of(promo.id)] == [S.PENDING]


def test_cancel_scheduled(rt):
    sub = service.submit(rt, {**INCIDENT, "publish_at": NOW + 600}, principal=SYSTEM)
    assert service.cancel_scheduled(rt, sub.id, principal=SYSTEM) == 2
    assert {d.state for d in rt.ledger.deliveries_of(sub.id)} == {S.CANCELLED}
    assert service.cancel_scheduled(rt, sub.id, principal=SYSTEM) == 0


# ---------------------------------------------------------------- client idempotency (guarantee 3)


def test_idempotent_replay_returns_the_same_announcement(rt):
    first = service.submit(rt, INCIDENT, principal=SYSTEM, idempotency_key="k-1")
    woken = list(enqueued(rt))
    again = service.submit(rt, dict(INCIDENT), principal=SYSTEM, idempotency_key="k-1")
    assert again.id == first.id and again.created is False
    assert sorted(again.deliveries) == sorted(first.deliveries)
    assert len(rt.ledger.list_announcements()) == 1
    assert enqueued(rt) == woken, "a replay wakes nobody"


def test_same_key_with_a_different_body_is_a_conflict(rt):
    service.submit(rt, INCIDENT, principal=SYSTEM, idempotency_key="k-1")
    with pytest.raises(IdempotencyConflict):
        service.submit(rt, {**INCIDENT, "title": "Other"}, principal=SYSTEM, idempotency_key="k-1")
    assert len(rt.ledger.list_announcements()) == 1


def test_idempotency_keys_are_scoped_per_principal(rt):
    a = service.submit(rt, INCIDENT, principal=Principal("one"), idempotency_key="k")
    b = service.submit(rt, INCIDENT, principal=Principal("two"), idempotency_key="k")
    assert a.id != b.id and b.created


def test_update_idempotency(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    body = {"status": "identified", "body": "Found it"}
    u1 = service.add_update(rt, sub.id, body, principal=SYSTEM, idempotency_key="u")
    u2 = service.add_update(rt, sub.id, dict(body), principal=SYSTEM, idempotency_key="u")
    assert u1.id == u2.id and u2.created is False
    assert len(updates_of(rt.ledger, sub.id)) == 1
    with pytest.raises(IdempotencyConflict):
        service.add_update(rt, sub.id, {**body, "body": "Different"}, principal=SYSTEM, idempotency_key="u")


# ---------------------------------------------------------------- updates


def test_update_goes_to_the_original_channels_and_sets_the_status(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    wakeups(rt).deliveries.clear()
    upd = service.add_update(rt, sub.id, {"status": "identified", "body": "Found it"}, principal=SYSTEM)
    fresh = by_channel(rt, sub.id, upd.id)
    assert sorted(fresh) == ["a", "b"]
    assert all(d.state == S.PENDING for d in fresh.values())
    assert sorted(enqueued(rt)) == sorted((d.id, d.channel) for d in fresh.values())
    assert rt.ledger.get_announcement(sub.id).status == "identified"
    [u] = updates_of(rt.ledger, sub.id)
    assert (u.status, u.body, u.author) == ("identified", "Found it", "system")


def test_update_skips_fallen_back_channels_and_follows_the_fallback(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    originals = by_channel(rt, sub.id)
    settle(rt, originals["a"], S.FALLEN_BACK,
           fallbacks=[{"channel": "c", "fallback_of": originals["a"].id, "reason": "fallback"}])
    settle(rt, originals["b"], S.DELIVERED, receipt=Receipt(remote_id="b-1"))
    upd = service.add_update(rt, sub.id, {"status": "monitoring", "body": "Better"}, principal=SYSTEM)
    assert sorted(by_channel(rt, sub.id, upd.id)) == ["b", "c"]


def test_update_status_must_fit_the_kind(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    with pytest.raises(InvalidRequest) as info:
        service.add_update(rt, sub.id, {"status": "completed", "body": "x"}, principal=SYSTEM)
    assert info.value.field == "status"


@pytest.mark.parametrize("data, field", [({"status": "identified"}, "body"),
                                         ({"status": "identified", "body": "x", "extra": 1}, "extra")])
def test_update_validation_names_the_field(rt, data, field):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    with pytest.raises(InvalidRequest) as info:
        service.add_update(rt, sub.id, data, principal=SYSTEM)
    assert info.value.field == field


def test_update_of_an_unknown_announcement(rt):
    with pytest.raises(NotFound):
        service.add_update(rt, "ann_nope", {"status": "identified", "body": "x"}, principal=SYSTEM)


def test_resolving_sets_resolved_at_and_closes_the_incident(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    assert rt.ledger.open_incidents() == 1
    assert [a.id for a in rt.ledger.list_announcements(open_only=True)] == [sub.id]
    service.add_update(rt, sub.id, {"status": "resolved", "body": "Fixed"}, principal=SYSTEM)
    assert rt.ledger.open_incidents() == 0
    assert rt.ledger.list_announcements(open_only=True) == [], "resolved_at is set"
    assert rt.ledger.get_announcement(sub.id).status == "resolved"


def test_update_of_a_scheduled_announcement_waits_for_it(rt):
    sub = service.submit(rt, {**INCIDENT, "publish_at": NOW + 600}, principal=SYSTEM)
    upd = service.add_update(rt, sub.id, {"status": "identified", "body": "x"}, principal=SYSTEM)
    assert {(d.state, d.due_at) for d in by_channel(rt, sub.id, upd.id).values()} == {(S.SCHEDULED, NOW + 600)}


def test_update_of_a_retracted_announcement_is_refused(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    service.retract(rt, sub.id, principal=SYSTEM)
    with pytest.raises(InvalidRequest, match="retracted"):
        service.add_update(rt, sub.id, {"status": "identified", "body": "x"}, principal=SYSTEM)


# ---------------------------------------------------------------- retract


def test_retract_cancels_pending_and_enqueues_deletion_of_delivered(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    ds = by_channel(rt, sub.id)
    delivered = settle(rt, ds["b"], S.DELIVERED, receipt=Receipt(remote_id="b-1"))
    counts = service.retract(rt, sub.id, principal=Principal("ops"), reason="wrong incident")
    assert counts == {"cancelled": 1, "retracting": 1, "already": 0}
    assert rt.ledger.get_delivery(ds["a"].id).state == S.CANCELLED
    assert rt.ledger.get_delivery(delivered.id).state == S.DELIVERED, "the worker marks it retracted"
    assert wakeups(rt).retractions == [(delivered.id, "b")]
    assert rt.ledger.get_announcement(sub.id).retracted_at == NOW
    assert any(e["action"] == "announcement.retract" and e["actor"] == "ops" for e in audit_entries(rt.ledger))


def test_retract_twice_keeps_the_first_time(rt, clock):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    service.retract(rt, sub.id, principal=SYSTEM)
    clock.advance(100)
    counts = service.retract(rt, sub.id, principal=SYSTEM)
    assert counts == {"cancelled": 0, "retracting": 0, "already": 2}
    assert rt.ledger.get_announcement(sub.id).retracted_at == NOW


# ---------------------------------------------------------------- operator retry


@pytest.mark.parametrize("state", [S.FAILED, S.UNKNOWN])
def test_retry_delivery_from_failed_or_unknown(rt, clock, state):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    d = by_channel(rt, sub.id)["b"]
    settle(rt, d, state, maybe_sent=state == S.UNKNOWN, error="boom")
    clock.advance(7200)  # past the original deadline
    wakeups(rt).deliveries.clear()
    service.retry_delivery(rt, d.id, principal=SYSTEM)
    fresh = rt.ledger.get_delivery(d.id)
    assert fresh.state == S.PENDING and fresh.maybe_sent is False
    assert fresh.due_at == clock() and fresh.deadline_at == clock() + 3600, "a fresh deadline"
    assert fresh.settled_at is None
    assert enqueued(rt) == [(d.id, "b")]
    assert rt.ledger.events_of(d.id)[-1].reason.startswith(f"operator retry from {state}")


@pytest.mark.parametrize("state", [S.DELIVERED, S.CANCELLED, S.PENDING, S.SENDING])
def test_retry_delivery_refuses_other_states(rt, state):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    d = by_channel(rt, sub.id)["b"]
    if state == S.SENDING:
        claim(rt.ledger, d.id, "w", 30)
    elif state == S.CANCELLED:
        rt.ledger.force(d.id, S.CANCELLED, "test", actor="t", from_states=[S.PENDING])
    elif state != S.PENDING:
        settle(rt, d, state)
    wakeups(rt).deliveries.clear()
    with pytest.raises(InvalidRequest):
        service.retry_delivery(rt, d.id, principal=SYSTEM)
    assert rt.ledger.get_delivery(d.id).state == state
    assert enqueued(rt) == []


def test_retry_delivery_of_a_retracted_announcement_is_refused(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    d = by_channel(rt, sub.id)["b"]
    settle(rt, d, S.FAILED)
    service.retract(rt, sub.id, principal=SYSTEM)
    with pytest.raises(InvalidRequest, match="retracted"):
        service.retry_delivery(rt, d.id, principal=SYSTEM)


def test_retry_delivery_checks_the_principal(rt):
    sub = service.submit(rt, INCIDENT, principal=SYSTEM)
    d = by_channel(rt, sub.id)["b"]
    settle(rt, d, S.FAILED)
    with pytest.raises(Forbidden):
        service.retry_delivery(rt, d.id, principal=Principal("ops", channels=("a",)))
    assert rt.ledger.get_delivery(d.id).state == S.FAILED


def test_retry_of_an_unknown_delivery(rt):
    with pytest.raises(NotFound):
        service.retry_delivery(rt, "dlv_nope", principal=SYSTEM)


# one definition for the API, the page and the CLI: (states, retracted) → word
OVERALL_TABLE = [
    ([], False, "empty"),
    (["delivered", "sending"], False, "in_progress"),
    (["pending"], True, "in_progress"),
    (["scheduled", "scheduled"], False, "scheduled"),
    (["scheduled", "delivered"], False, "scheduled"),
    (["scheduled", "failed"], False, "attention"),
    (["delivered", "unknown"], False, "attention"),
    (["failed", "cancelled"], False, "attention"),
    (["delivered", "fallen_back", "cancelled"], False, "delivered"),
    (["fallen_back", "delivered"], False, "delivered"),
    (["delivered", "retracted"], False, "delivered"),
    (["cancelled"], False, "cancelled"),
    (["cancelled", "cancelled"], False, "cancelled"),
    (["retracted", "retracted"], False, "retracted"),
    (["retracted", "cancelled"], False, "retracted"),
    (["cancelled"], True, "retracted"),
    (["retracted", "cancelled"], True, "retracted"),
    (["retracted", "failed"], True, "retracted"),
    (["delivered", "retracted"], True, "retracting"),
    (["unknown", "retracted"], True, "retracting"),
]


@pytest.mark.parametrize("states, retracted, word", OVERALL_TABLE)
def test_overall_summary_words(states, retracted, word):
    assert service.overall(states, retracted=retracted) == word
    assert service.overall([S(s) for s in states], retracted=retracted) == word, "enum members read alike"


def test_the_cli_and_the_api_share_one_overall():
    from broadcaster import models, schemas
    from broadcaster.cli import client, output

    assert service.overall is models.overall and schemas.overall is models.overall
    assert output.overall is models.overall
    assert not hasattr(client, "verdict_code") and not hasattr(output, "verdict_code")


def test_a_held_promotion_names_the_incident_holding_it(rt, clock):
    incident = service.submit(rt, INCIDENT, principal=SYSTEM)
    promo = service.submit(rt, {"kind": "promotion", "title": "Sale", "body": "50% off"}, principal=SYSTEM)
    status = service.status_of(rt, promo.id)
    assert [a.id for a in status["held_by"]] == [incident.id]
    assert service.status_of(rt, incident.id)["held_by"] == [], "only quiet kinds are held"
    service.add_update(rt, incident.id, {"status": "resolved", "body": "Fixed."}, principal=SYSTEM)
    assert service.status_of(rt, promo.id)["held_by"] == []


def test_a_promotion_waiting_for_its_publish_time_is_not_called_held(rt, clock):
    service.submit(rt, INCIDENT, principal=SYSTEM)
    promo = service.submit(rt, {"kind": "promotion", "title": "Sale", "publish_at": NOW + 600}, principal=SYSTEM)
    assert service.status_of(rt, promo.id)["held_by"] == []
    clock.advance(601)
    assert len(service.status_of(rt, promo.id)["held_by"]) == 1
