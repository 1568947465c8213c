"""Break glass reaches the worker's audience, or says it did not (issue 13 item 5).

A real SMTP server (the sandbox's aiosmtpd sink) on loopback, subscribers in a real SQLite
ledger: `post --direct` to an email channel with `lists:` mails the confirmed subscribers when the
ledger can be read, or from a `subscribers export` file when it cannot; with neither it mails the
static recipients, reports the lists NOT reached, exits 1, and `reconcile` hands the delivery to
the workers — which mail the subscribers and not the static recipient a second time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from broadcaster import engine, subscribers as subs
from broadcaster.channels.ports import ChannelPorts
from broadcaster.cli import main
from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from tests.support.runtime import memory_runtime

DOWN = "postgresql://nobody@127.0.0.1:1/none"  # nobody listens on port 1
ONCALL = "oncall@example.test"
READERS = ("ann@example.test", "bob@example.test")
SECRET = "breakglass-test-signing-key-0123456789"


@pytest.fixture
def smtp():
    from broadcaster.sandbox import Sandbox

    sb = Sandbox(port=0, smtp_port=0, rate_limits=False).start()
    yield sb
    sb.stop()


@pytest.fixture
def ledger_url(tmp_path):
    """A ledger with two confirmed readers, one pending and one who left the list."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = Ledger.open(url)
    for address in READERS:
        subs.add(ledger, "customers", address, state="confirmed", marketing=False, actor="test")
    subs.add(ledger, "customers", "pending@example.test", state="pending", actor="test")
    subs.add(ledger, "customers", "left@example.test", state="unsubscribed", actor="test")
    ledger.close()
    return url


def config(tmp_path, smtp, ledger: str, name: str = "bg.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({
        "ledger": ledger,
        "broker": "redis://127.0.0.1:1/0",  # nobody home
        "public_url": "https://status.example.test",
        "subscribers": {"secret_key": SECRET},
        "channels": {"mail": {"kind": "email", "from_address": "status@example.test", "recipients": [ONCALL],
                              "lists": ["customers"],
                              "smtp": {"host": "127.0.0.1", "port": smtp.smtp_port, "security": "none"}}},
        "routes": {"incident": ["mail"], "promotion": ["mail"]},
    }))
    return str(path)


def direct(cfg: str, journal: str, *extra: str, kind: str = "incident", key: str = "bg-mail-1"):
    args = ["--config", cfg, "post", "--direct", "--journal", journal, "--kind", kind, "--title", "Checkout is down",
            "--body", "We are on it.", "--idempotency-key", key, "--json", *extra]
    return CliRunner().invoke(main, args)


def mailed(smtp) -> dict[str, int]:
    return {a: smtp.mails_to(a) for a in (ONCALL, *READERS, "pending@example.test", "left@example.test")}


def test_with_the_ledger_readable_the_subscribers_get_the_mail(smtp, ledger_url, tmp_path):
    cfg = config(tmp_path, smtp, ledger_url)
    journal = str(tmp_path / "journal.jsonl")
    r = direct(cfg, journal)
    assert r.exit_code == 0, r.output
    (d,) = json.loads(r.output)["deliveries"]
    assert d["state"] == "delivered" and "from the ledger" in d["subscribers"]
    assert mailed(smtp) == {ONCALL: 1, READERS[0]: 1, READERS[1]: 1, "pending@example.test": 0,
                            "left@example.test": 0}
    rec = CliRunner().invoke(main, ["--config", cfg, "reconcile", journal])
    assert rec.exit_code == 0 and "1 delivered" in rec.output, rec.output


def test_without_ledger_or_file_the_lists_are_reported_not_reached(smtp, ledger_url, tmp_path):
    journal = str(tmp_path / "journal.jsonl")
    down = config(tmp_path, smtp, DOWN, "down.yaml")
    r = direct(down, journal)
    assert r.exit_code == 1, r.output
    (d,) = json.loads(r.output)["deliveries"]
    assert d["state"] == "incomplete"
    assert "lists: customers NOT reached: ledger unreachable" in d["error"] and "no --subscribers-file" in d["error"]
    assert mailed(smtp)[ONCALL] == 1 and mailed(smtp)[READERS[0]] == 0

    human = CliRunner().invoke(main, ["--config", down, "post", "--direct", "--journal", journal, "--kind",
                                      "incident", "--title", "Checkout is down", "--body", "We are on it.",
                                      "--idempotency-key", "bg-mail-1"])
    assert human.exit_code == 1 and "incomplete" in human.output and "NOT reached" in human.output
    assert mailed(smtp)[ONCALL] == 1, "a re-run does not mail the static recipient again"

    # the system is back: reconcile does not call the lists reached; the workers finish the job
    up = config(tmp_path, smtp, ledger_url, "up.yaml")
    rec = CliRunner().invoke(main, ["--config", up, "reconcile", journal])
    assert rec.exit_code == 0 and "0 delivered, 1 handed to the workers" in rec.output, rec.output
    settings = load_settings(yaml.safe_load(Path(up).read_text()), env={})
    rt = memory_runtime(settings, ports=lambda rt: ChannelPorts(subscribers=subs.source(rt)))
    try:
        (delivery,) = rt.ledger.deliveries_of(json.loads(r.output)["id"])
        assert str(delivery.state) == "pending"
        assert rt.ledger.item_states(delivery.id)[ONCALL][0] == "done"
        assert engine.attempt(rt, delivery.id) == "delivered"
    finally:
        rt.close()
        rt.ledger.close()
    assert mailed(smtp) == {ONCALL: 1, READERS[0]: 1, READERS[1]: 1, "pending@example.test": 0,
                            "left@example.test": 0}


def test_an_export_taken_for_the_purpose_reaches_the_lists(smtp, ledger_url, tmp_path):
    up = config(tmp_path, smtp, ledger_url, "up.yaml")
    export = tmp_path / "subscribers.csv"
    out = CliRunner().invoke(main, ["--config", up, "subscribers", "export", "--output", str(export)])
    assert out.exit_code == 0, out.output
    down = config(tmp_path, smtp, DOWN, "down.yaml")
    journal = str(tmp_path / "journal.jsonl")
    r = direct(down, journal, "--subscribers-file", str(export))
    assert r.exit_code == 0, r.output
    (d,) = json.loads(r.output)["deliveries"]
    assert d["state"] == "delivered" and str(export) in d["subscribers"]
    assert mailed(smtp) == {ONCALL: 1, READERS[0]: 1, READERS[1]: 1, "pending@example.test": 0,
                            "left@example.test": 0}

    # a promotion must carry unsubscribe links, which an export cannot give: not sent from a file
    promo = direct(down, journal, "--subscribers-file", str(export), kind="promotion", key="bg-promo")
    assert promo.exit_code == 1
    (p,) = json.loads(promo.output)["deliveries"]
    assert p["state"] == "incomplete" and "promotions need unsubscribe links" in p["error"]


def test_an_unreadable_subscribers_file_is_refused_before_anything_is_sent(smtp, tmp_path):
    down = config(tmp_path, smtp, DOWN, "down.yaml")
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\nx,y\n")
    for path in (str(bad), str(tmp_path / "missing.csv")):
        r = direct(down, str(tmp_path / "journal.jsonl"), "--subscribers-file", path)
        assert r.exit_code == 2 and path in r.output
    assert smtp.mails_to(ONCALL) == 0
