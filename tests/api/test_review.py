"""Two-person review through the real app: a promotion under review does not leave until a
second token approves it; its author cannot approve it; break-glass and admins during an
incident are not blocked; a scheduled post approved early keeps its time."""

from __future__ import annotations

import time

import pytest

from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S
from broadcaster.scheduler import tick
from tests.api.conftest import Env, config


@pytest.fixture
def review_env(tmp_path, ledger_url):
    env = Env(tmp_path, config(review={"kinds": ["promotion"], "channels": ["hook"]}), Ledger.open(ledger_url))
    yield env
    env.client.close()
    env.ledger.close()


def promo(env: Env, token: dict[str, str], **extra) -> str:
    r = env.client.post("/api/v1/announcements", json={"kind": "promotion", "title": "50% off", "body": "Today.",
                                                       **extra}, headers=token)
    assert r.status_code == 202, r.text
    return r.json()["announcement"]["id"] if "announcement" in r.json() else r.json()["id"]


def test_promotion_waits_for_a_second_person(review_env):
    env = review_env
    marketing = env.token("marketing", kinds=["promotion"])
    ann_id = promo(env, marketing)
    [d] = env.ledger.deliveries_of(ann_id)
    assert (d.state, d.due_at) == (S.SCHEDULED, None) and not env.enqueued
    tick(env.runtime)  # the sweep does not release it, however long it waits
    assert env.ledger.get_delivery(d.id).state == S.SCHEDULED and not env.enqueued

    items = env.get("/approvals").json()["items"]
    assert [i["id"] for i in items] == [ann_id]
    [p] = items[0]["preview"]
    assert p["channel"] == "discord" and "50% off" in p["text"]

    # the author cannot approve their own post; a token that may not post promotions cannot either
    r = env.client.post(f"/api/v1/announcements/{ann_id}/approve", headers=marketing)
    assert r.status_code == 403 and "second person" in r.json()["error"]["message"]
    deployer = env.token("deployer", kinds=["deploy"])
    assert env.client.post(f"/api/v1/announcements/{ann_id}/approve", headers=deployer).status_code == 403
    assert env.ledger.get_delivery(d.id).state == S.SCHEDULED and not env.enqueued

    reviewer = env.token("reviewer", kinds=["promotion"])
    r = env.client.post(f"/api/v1/announcements/{ann_id}/approve", headers=reviewer)
    assert r.status_code == 200 and r.json()["approved_by"] == "reviewer", r.text
    assert env.ledger.get_delivery(d.id).state == S.PENDING and [e[0] for e in env.enqueued] == [d.id]
    assert env.client.post(f"/api/v1/announcements/{ann_id}/approve", headers=reviewer).status_code == 409
    assert env.get("/approvals").json()["items"] == []


def test_reject_cancels_and_channel_review_holds_other_kinds(review_env):
    env = review_env
    ops = env.token("ops", kinds=["notice"])
    r = env.client.post("/api/v1/announcements", json={"kind": "notice", "title": "New docs"}, headers=ops)
    ann_id = r.json()["id"]
    assert [d.state for d in env.ledger.deliveries_of(ann_id)] == [S.SCHEDULED]  # routed to "hook", under review
    r = env.post(f"/announcements/{ann_id}/reject", {"reason": "typo"})
    assert r.status_code == 200 and r.json()["cancelled"] == 1
    assert [d.state for d in env.ledger.deliveries_of(ann_id)] == [S.CANCELLED] and not env.enqueued


def test_scheduled_post_approved_early_keeps_its_time(review_env):
    env = review_env
    at = time.time() + 3600
    ann_id = promo(env, env.token("marketing", kinds=["promotion"]), publish_at=at)
    env.post(f"/announcements/{ann_id}/approve", {})
    [d] = env.ledger.deliveries_of(ann_id)
    assert d.state == S.SCHEDULED and d.due_at == pytest.approx(at) and not env.enqueued


def test_admin_during_an_incident_is_not_blocked(review_env):
    env = review_env
    env.submit()  # an open incident (routed to hook, under review — but posted by an admin: not held)
    assert env.get("/approvals").json()["items"] == []
    ann_id = promo(env, env.admin)
    assert [d.state for d in env.ledger.deliveries_of(ann_id)] == [S.PENDING]


def test_admin_without_an_incident_is_held(review_env):
    env = review_env
    ann_id = promo(env, env.admin)
    assert [(d.state, d.due_at) for d in env.ledger.deliveries_of(ann_id)] == [(S.SCHEDULED, None)]


def test_break_glass_is_not_blocked(tmp_path, receiver):
    """``post --direct`` posts straight to the provider: review never holds it."""
    from click.testing import CliRunner

    from broadcaster.cli import main

    cfg = tmp_path / "b.yaml"
    cfg.write_text(f"ledger: sqlite:///{tmp_path}/l.db\nreview: {{kinds: [promotion], channels: [hook]}}\n"
                   f"channels:\n  hook: {{kind: webhook, url: '{receiver.url}/hook'}}\n"
                   "routes: {promotion: [hook]}\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["--config", str(cfg), "post", "--direct", "--kind", "promotion", "--title",
                                    "Sale", "--channel", "hook", "--journal", str(tmp_path / "j.jsonl")],
                               catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert len(receiver.ok()) == 1


def test_metrics_count_posts_waiting(review_env):
    env = review_env
    promo(env, env.token("marketing", kinds=["promotion"]))
    text = env.client.get("/metrics").text
    assert "broadcaster_approvals_pending 1.0" in text
    overdue = next(x for x in text.splitlines() if x.startswith("broadcaster_approvals_overdue_seconds "))
    assert float(overdue.split()[-1]) > 0


def test_scheduler_reminds_of_posts_past_their_time(review_env, caplog):
    from broadcaster.review import ReviewReminder

    env = review_env
    ann_id = promo(env, env.token("marketing", kinds=["promotion"]))
    later = promo(env, env.token("marketing", kinds=["promotion"]), title="Next week", publish_at=time.time() + 3600)
    with caplog.at_level("WARNING", logger="broadcaster.review"):
        tick(env.runtime, [ReviewReminder()])
    [line] = [r.getMessage() for r in caplog.records if "second person" in r.getMessage()]
    assert ann_id in line and later not in line


def test_an_update_of_a_held_post_waits_with_it_and_goes_out_on_approval(review_env):
    env = review_env
    marketing = env.token("marketing", kinds=["promotion"])
    ann_id = promo(env, marketing)
    r = env.client.post(f"/api/v1/announcements/{ann_id}/updates",
                        json={"status": "update", "body": "Now 60% off."}, headers=marketing)
    assert r.status_code == 202, r.text
    tick(env.runtime)
    deliveries = env.ledger.deliveries_of(ann_id)
    assert [(d.state, d.due_at) for d in deliveries] == [(S.SCHEDULED, None)] * 2 and not env.enqueued
    [item] = env.get("/approvals").json()["items"]
    texts = sorted(p["text"] for p in item["preview"])
    assert "Now 60% off." in texts[1] and "Now 60% off." not in texts[0], texts  # each delivery's own text
    r = env.client.post(f"/api/v1/announcements/{ann_id}/approve", headers=env.token("reviewer", kinds=["promotion"]))
    assert r.status_code == 200 and r.json()["released"] == 2, r.text
    assert {d.state for d in env.ledger.deliveries_of(ann_id)} == {S.PENDING}


def test_an_update_of_an_approved_promotion_is_reviewed_too(review_env):
    env = review_env
    marketing = env.token("marketing", kinds=["promotion"])
    reviewer = env.token("reviewer", kinds=["promotion"])
    ann_id = promo(env, marketing)
    env.client.post(f"/api/v1/announcements/{ann_id}/approve", headers=reviewer)
    sent = len(env.enqueued)
    r = env.client.post(f"/api/v1/announcements/{ann_id}/updates",
                        json={"status": "update", "body": "Extended until Sunday."}, headers=marketing)
    assert r.status_code == 202, r.text
    [upd] = [d for d in env.ledger.deliveries_of(ann_id) if d.update_id]
    assert (upd.state, upd.due_at) == (S.SCHEDULED, None) and len(env.enqueued) == sent
    # the update's author cannot approve it, whoever wrote the original
    own = env.client.post(f"/api/v1/announcements/{ann_id}/updates",
                          json={"status": "update", "body": "And Monday."}, headers=reviewer)
    assert own.status_code == 202
    r = env.client.post(f"/api/v1/announcements/{ann_id}/approve", headers=reviewer)
    assert r.status_code == 403 and "second person" in r.json()["error"]["message"], r.text
    r = env.client.post(f"/api/v1/announcements/{ann_id}/approve", headers=env.token("lead", kinds=["promotion"]))
    assert r.status_code == 200 and r.json()["released"] == 2
