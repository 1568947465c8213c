"""The audit log is complete (the "nothing leaks" guarantee, docs/reliability.md: every action is in the audit log with its
author): each mutating API action — submit, update, retract, cancel, retry, maintenance cancel —
and each token create/revoke leaves an ``audit_log`` row naming the token that did it; refused
actions (403, 401, 422) leave none; an idempotent replay adds none.
"""

from __future__ import annotations

import time

from broadcaster.models import DeliveryState as S
from tests.support.ledger import audit_entries


def rows(env, since: int = 0) -> list[dict]:
    return audit_entries(env.ledger, limit=10_000, since_id=since)


def new_rows(env, before: list[dict]) -> list[tuple[str, str, str | None]]:
    seen = len(before)
    return [(e["actor"], e["action"], e["target"]) for e in rows(env)[seen:]]


def test_every_mutating_api_action_is_audited_with_the_token_name(env):
    h = env.token("ops-carol", kinds=["incident", "maintenance"])
    def post(path, body=None, **kw):
        return env.client.post(f"/api/v1{path}", json=body, headers={**h, **kw})

    before = rows(env)
    a = post("/announcements", {"kind": "incident", "title": "API down"}).json()
    assert ("ops-carol", "announcement.create", a["id"]) in new_rows(env, before)

    before = rows(env)
    assert post(f"/announcements/{a['id']}/updates", {"status": "identified", "body": "found"}).status_code == 202
    assert ("ops-carol", "announcement.update", a["id"]) in new_rows(env, before)

    did = a["deliveries"][0]["id"]
    env.ledger.force(did, S.FAILED, "test", actor="test", from_states=[S.PENDING])
    before = rows(env)
    assert post(f"/deliveries/{did}/retry").status_code == 202
    assert ("ops-carol", "delivery.retry", did) in new_rows(env, before)

    before = rows(env)
    assert post(f"/announcements/{a['id']}/retract", {"reason": "wrong"}).status_code == 202
    assert ("ops-carol", "announcement.retract", a["id"]) in new_rows(env, before)

    later = post("/announcements", {"kind": "incident", "title": "later", "publish_at": time.time() + 3600}).json()
    before = rows(env)
    assert post(f"/announcements/{later['id']}/cancel").status_code == 200
    assert ("ops-carol", "announcement.cancel", later["id"]) in new_rows(env, before)

    window = {"starts_at": time.time() + 3600, "ends_at": time.time() + 7200}
    m = post("/announcements", {"kind": "maintenance", "title": "db upgrade", "window": window}).json()
    before = rows(env)
    assert post(f"/maintenance/{m['id']}/cancel", {"reason": "moved"}).status_code == 200
    assert ("ops-carol", "maintenance.cancel", m["id"]) in new_rows(env, before)

    # nobody else wrote any of it
    mine = [e for e in rows(env) if e["target"] in (a["id"], later["id"], m["id"], did)]
    assert mine and {e["actor"] for e in mine} <= {"ops-carol", "test", "system", "lifecycle"}, mine
    assert all(e["at"] for e in mine)


def test_token_create_and_revoke_are_audited_with_the_actor(env):
    before = rows(env)
    env.store.create("ci-deploy", kinds=["deploy"], actor="admin-dave")
    env.store.revoke("ci-deploy", actor="admin-erin")
    got = new_rows(env, before)
    assert ("admin-dave", "token.create", "ci-deploy") in got
    assert ("admin-erin", "token.revoke", "ci-deploy") in got


def test_cli_token_commands_audit_the_operator(tmp_path):
    import yaml
    from click.testing import CliRunner

    from broadcaster.cli import main
    from broadcaster.ledger import Ledger

    cfg = tmp_path / "b.yaml"
    cfg.write_text(yaml.safe_dump({"ledger": f"sqlite:///{tmp_path}/l.db",
                                   "channels": {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/h"}},
                                   "routes": {"deploy": ["hook"]}}))
    runner = CliRunner()
    env = {"BROADCASTER_CONFIG": None, "USER": "frank"}
    r1 = runner.invoke(main, ["--config", str(cfg), "tokens", "create", "ci", "--kinds", "deploy"], env=env)
    r2 = runner.invoke(main, ["--config", str(cfg), "tokens", "revoke", "ci"], env=env)
    assert r1.exit_code == 0 and r2.exit_code == 0, (r1.output, r2.output)
    ledger = Ledger.open(f"sqlite:///{tmp_path}/l.db")
    try:
        got = [(e["action"], e["target"], e["actor"]) for e in audit_entries(ledger, limit=100)]
    finally:
        ledger.close()
    actions = [(a, t) for a, t, _ in got]
    assert ("token.create", "ci") in actions and ("token.revoke", "ci") in actions
    assert all(actor for _, _, actor in got)  # an author on every row


def test_refused_and_replayed_actions_add_no_audit_rows(env):
    a = env.submit()
    deploy = env.token("ci-only", kinds=["deploy"])
    before = rows(env)
    # refused: wrong scope, unknown token, invalid body
    assert env.client.post("/api/v1/announcements", json={"kind": "incident", "title": "x"}, headers=deploy).status_code == 403
    assert env.client.post(f"/api/v1/announcements/{a['id']}/retract", headers=deploy).status_code == 403
    assert env.client.post("/api/v1/announcements", json={"kind": "incident", "title": "x"},
                           headers={"Authorization": "Bearer nope"}).status_code == 401
    assert env.post("/announcements", {"kind": "party", "title": "x"}).status_code == 422
    assert new_rows(env, before) == []
    # replayed: same Idempotency-Key, same body — one create row, not two
    before = rows(env)
    body = {"kind": "incident", "title": "once"}
    first = env.post("/announcements", body, headers={"Idempotency-Key": "k-audit"})
    again = env.post("/announcements", body, headers={"Idempotency-Key": "k-audit"})
    assert first.status_code == 202 and again.status_code == 200
    assert [x for x in new_rows(env, before) if x[1] == "announcement.create"] == [("admin", "announcement.create",
                                                                                    first.json()["id"])]
