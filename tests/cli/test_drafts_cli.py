"""``broadcaster drafts`` against a live API on loopback: list, show, publish (once), discard."""

from __future__ import annotations

import json

import httpx
from click.testing import CliRunner

from broadcaster.cli import main
from tests.cli.conftest import CHANNELS
from tests.cli.live import make_settings, memory_runtime, serve

TOKEN = "am-cli-token-9f9f"


def alert(group: str) -> dict:
    return {"version": "4", "groupKey": group, "status": "firing", "commonLabels": {"alertname": group},
            "commonAnnotations": {"summary": "down"}, "alerts": [{"status": "firing", "fingerprint": group}]}


def test_drafts_commands(tmp_path):
    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", CHANNELS,
                             inbound={"receivers": {"prom": {"source": "alertmanager", "token": TOKEN}},
                                      "rules": [{"title": "{labels.alertname} is failing"}]})
    rt = memory_runtime(settings)
    with serve(settings, rt) as (url, app):
        token, _ = app.state.tokens.create("ops", admin=True, actor="test")
        ids = [httpx.post(f"{url}/api/v1/inbound/alertmanager/prom", json=alert(g),
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()["draft"] for g in ("Api", "Db")]
        env = {"BROADCASTER_URL": url, "BROADCASTER_TOKEN": token}

        def cli(*args: str):
            return CliRunner().invoke(main, ["drafts", *args], env=env, catch_exceptions=False)

        listed = cli("list")
        assert listed.exit_code == 0 and all(i in listed.stdout for i in ids) and "Api is failing" in listed.stdout
        shown = cli("show", ids[0])
        assert shown.exit_code == 0 and "alert:    Api" in shown.stdout
        out = cli("publish", "--json", ids[0])
        assert out.exit_code == 0, out.output
        ann_id = json.loads(out.stdout)["announcement"]
        assert rt.ledger.get_announcement(ann_id).title == "Api is failing"
        again = cli("publish", ids[0])
        assert again.exit_code != 0 and "already published" in again.output
        assert cli("discard", ids[1]).exit_code == 0
        assert [a.id for a in rt.ledger.list_announcements(limit=10)] == [ann_id]
        assert "Db is failing" not in cli("list").stdout
    rt.ledger.close()
