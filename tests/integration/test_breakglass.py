"""Break glass: with the ledger and broker unreachable, `broadcaster post --direct` still reaches
the channels and journals it; re-running it posts nothing twice; `broadcaster reconcile` imports
the journal without re-posting, handing what failed to the workers."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from broadcaster.cli import main
from broadcaster.ledger import Ledger


@pytest.fixture
def sandbox():
    from broadcaster.sandbox import Sandbox

    sb = Sandbox(port=0, smtp_port=None, rate_limits=False).start()
    yield sb
    sb.stop()


def write_config(path, sandbox, ledger: str):
    path.write_text(yaml.safe_dump({
        "ledger": ledger,
        "broker": "redis://127.0.0.1:1/0",  # nobody home
        "channels": {
            "mastodon-main": {"kind": "mastodon", "base_url": sandbox.url("mastodon"), "access_token": "t",
                              "read_instance_limits": False},
            "hook": {"kind": "webhook", "format": "generic", "url": sandbox.url("webhook") + "/bg"},
            "x-main": {"kind": "x", "base_url": sandbox.url("x"), "access_token": "t"},
            "site": {"kind": "statuspage", "output_dir": str(path.parent / "site"), "components": ["API"]},
        },
        "routes": {"incident": ["mastodon-main", "hook", "x-main"]},
    }))
    return str(path)


def test_direct_post_then_reconcile(sandbox, tmp_path):
    down = write_config(tmp_path / "down.yaml", sandbox, "postgresql://nobody@127.0.0.1:1/none")
    journal = str(tmp_path / "journal.jsonl")
    sandbox.set_fault("x", "bad_token")  # one channel refuses: it must be finished later by the workers
    args = ["--config", down, "post", "--direct", "--journal", journal, "--kind", "incident", "--title",
            "Everything is down", "--body", "Posting from the break-glass path.", "--idempotency-key", "bg-1", "--json"]
    runner = CliRunner()
    first = runner.invoke(main, args)
    assert first.exit_code == 1, first.output  # x failed
    out = json.loads(first.output)
    states = {d["channel"]: d["state"] for d in out["deliveries"]}
    assert states == {"mastodon-main": "delivered", "hook": "delivered", "x-main": "failed"}
    assert len(sandbox.posts("mastodon")) == 1 and len(sandbox.posts("webhook")) == 1

    again = runner.invoke(main, args)  # the operator runs it again: nothing is posted twice
    assert again.exit_code == 1
    assert len(sandbox.posts("mastodon")) == 1 and len(sandbox.posts("webhook")) == 1

    sandbox.clear_faults()
    up = write_config(tmp_path / "up.yaml", sandbox, f"sqlite:///{tmp_path}/ledger.db")
    rec = runner.invoke(main, ["--config", up, "reconcile", journal])
    assert rec.exit_code == 0, rec.output
    assert "2 delivered, 1 handed to the workers" in rec.output
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    ann = ledger.get_announcement(out["id"])
    by_channel = {d.channel: d for d in ledger.deliveries_of(ann.id)}
    assert str(by_channel["mastodon-main"].state) == "delivered" and by_channel["mastodon-main"].remote_url
    assert str(by_channel["x-main"].state) == "pending"
    assert by_channel["hook"].id == next(d["id"] for d in out["deliveries"] if d["channel"] == "hook")
    events = ledger.events_of(by_channel["hook"].id)
    assert "break-glass" in events[0].reason
    again = runner.invoke(main, ["--config", up, "reconcile", journal])
    assert "1 already in the ledger" in again.output
    assert len(ledger.list_announcements()) == 1
    assert len(sandbox.posts("mastodon")) == 1, "reconcile never posts"
    ledger.close()


def test_direct_post_refuses_unknown_components_and_stores_the_configured_spelling(sandbox, tmp_path):
    down = write_config(tmp_path / "down.yaml", sandbox, "postgresql://nobody@127.0.0.1:1/none")
    journal = tmp_path / "journal.jsonl"
    base = ["--config", down, "post", "--direct", "--journal", str(journal), "--kind", "incident", "--title", "Down",
            "--channel", "hook"]
    refused = CliRunner().invoke(main, [*base, "--component", "checkout"])
    assert refused.exit_code != 0 and "known components: API" in refused.output
    assert sandbox.posts("webhook") == []  # refused before anything was sent
    assert "sending directly" not in refused.output, "the input is checked before the banner says it is sent"
    for bad in (["--title", "two\nlines"], ["--channel", "nowhere"]):
        refused = CliRunner().invoke(main, [*base, *bad])
        assert refused.exit_code == 2 and refused.stdout == "", (bad, refused.output)
        assert refused.stderr.startswith("error: "), refused.stderr
    ok = CliRunner().invoke(main, [*base, "--component", "api", "--json"])
    assert ok.exit_code == 0, ok.output
    recorded = [json.loads(line) for line in journal.read_text().splitlines()]
    assert next(r for r in recorded if r["type"] == "announcement")["request"]["components"] == ["API"]
