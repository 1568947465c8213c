"""``broadcaster subscribers endpoints``: the admin's view of endpoints subscribers brought, on a
real SQLite ledger."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

from broadcaster.cli import main
from broadcaster.ledger import Ledger
from broadcaster.ledger.endpoints import EndpointRequest, EndpointStore

URL = "https://hooks.example.test/services/T0/SECRET-PATH"


def test_list_shows_a_disabled_endpoint_without_its_url_and_enable_brings_it_back(tmp_path):
    ledger_url = f"sqlite:///{tmp_path}/l.db"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"ledger": ledger_url, "public_url": "https://status.example.test",
                                   "channels": {"subs": {"kind": "subscriber_webhooks", "lists": ["ops"]}},
                                   "routes": {"incident": ["subs"]}}))
    ledger = Ledger.open(ledger_url)
    store = EndpointStore(ledger)
    ep = store.request(EndpointRequest("ops", "slack", URL, "k" * 64, None, ()), stale_before=0)
    store.claim_challenge(ep.id, "h" * 64, not_since=0)
    assert store.confirm("h" * 64, requested_after=0) is not None
    assert store.failed(ep.id, "HTTP 503", max_failures=1) is not None
    ledger.close()

    listed = CliRunner().invoke(main, ["--config", str(cfg), "subscribers", "endpoints", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = [json.loads(line) for line in listed.output.splitlines()]
    assert row["state"] == "disabled" and row["failures"] == 1 and "SECRET-PATH" not in listed.output

    runner = CliRunner()
    enabled = runner.invoke(main, ["--config", str(cfg), "subscribers", "endpoints", "enable", ep.id])
    assert enabled.exit_code == 0 and f"{ep.id}: confirmed" in enabled.output
    table = runner.invoke(main, ["--config", str(cfg), "subscribers", "endpoints", "list", "--state", "confirmed"])
    assert ep.id in table.output and "failures=0" in table.output
    missing = runner.invoke(main, ["--config", str(cfg), "subscribers", "endpoints", "enable", "end_nope"])
    assert missing.exit_code != 0
