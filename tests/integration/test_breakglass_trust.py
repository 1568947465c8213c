"""Break glass gives every channel the worker's collaborators (an outside trial of the demo):

- the status site's trust files — so the signature of a break-glass post is published (and
  verifies) as soon as the post is out, not after the next post a worker makes: break-glass is
  used for the whole outage, exactly when readers check;
- the endpoints subscribers brought (``subscriber_webhooks``) and the SMS numbers that replied STOP,
  read from the ledger when it can be read, and otherwise a clear word for that channel alone
  (never "no endpoint source").

The sandbox's stand-ins on loopback, a real SQLite ledger with a confirmed endpoint, a real
keyring, and the CLI as an operator runs it (``post --direct``, then ``verify --id``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from broadcaster import signing
from broadcaster.cli import main
from broadcaster.ledger import Ledger
from broadcaster.ledger.endpoints import EndpointRequest, EndpointStore
from broadcaster.ledger.opt_outs import OptOutStore

DOWN = "postgresql://nobody@127.0.0.1:1/none"  # nobody listens on port 1
SITE = "https://status.example.test"
ONCALL, STOPPED = "+15550100001", "+15550100002"


@pytest.fixture
def sandbox():
    from broadcaster.sandbox import Sandbox

    sb = Sandbox(port=0, smtp_port=None, rate_limits=False).start()
    yield sb
    sb.stop()


@pytest.fixture
def ledger_url(tmp_path, sandbox):
    """A ledger holding two confirmed endpoints of ``customers`` on the sandbox's webhook stand-in:
    one for the API, one for the Website only (an API incident is not for it) — and one on-call
    number that replied STOP."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = Ledger.open(url)
    store = EndpointStore(ledger)
    for n, (path, components) in enumerate((("reader-endpoint", ("API",)), ("website-only", ("Website",)))):
        target = f"{sandbox.url('webhook')}/{path}"
        ep = store.request(EndpointRequest("customers", "generic", target, str(n) * 64, None, components),
                           stale_before=0)
        store.claim_challenge(ep.id, f"h{n}" * 32, not_since=0)
        assert store.confirm(f"h{n}" * 32, requested_after=0) is not None
    OptOutStore(ledger).opt_out(STOPPED, channel="oncall-sms", reason="replied STOP")
    ledger.close()
    return url


def config(tmp_path: Path, sandbox, ledger: str, name: str, *, key: bool = True) -> str:
    keys = tmp_path / "keys"
    if key and not keys.exists():
        signing.Keyring(keys).create("k-demo")
    path = tmp_path / name
    path.write_text(yaml.safe_dump({
        "ledger": ledger,
        "broker": "redis://127.0.0.1:1/0",  # nobody home
        "public_url": "https://api.example.test",
        "subscribers": {"secret_key": "breakglass-trust-test-key-0123456789"},
        "signing": {"key_dir": str(keys)},
        "channels": {
            "mastodon-main": {"kind": "mastodon", "base_url": sandbox.url("mastodon"), "access_token": "t",
                              "read_instance_limits": False},
            "status-site": {"kind": "statuspage", "output_dir": str(tmp_path / "site"), "site_url": SITE,
                            "components": ["API"]},
            "customer-webhooks": {"kind": "subscriber_webhooks", "lists": ["customers"], "allow_http": True,
                                  "allow_private": True},
            "oncall-sms": {"kind": "twilio_sms", "base_url": sandbox.url("twilio"), "account_sid": "AC" + "5" * 32,
                           "auth_token": "sandbox-token", "from_number": "+15550199999",
                           "recipients": [ONCALL, STOPPED]},
        },
        "routes": {"incident": ["mastodon-main", "status-site", "customer-webhooks", "oncall-sms"]},
    }))
    return str(path)


def direct(cfg: str, journal: Path, key: str = "bg-trust-1"):
    return CliRunner().invoke(main, [
        "--config", cfg, "post", "--direct", "--journal", str(journal), "--kind", "incident", "--title",
        "Checkout is failing", "--body", "We are investigating.", "--severity", "major", "--component", "API",
        "--idempotency-key", key, "--json"])


def test_the_signature_is_published_and_subscriber_endpoints_are_reached_from_the_ledger(sandbox, ledger_url,
                                                                                        tmp_path):
    cfg = config(tmp_path, sandbox, ledger_url, "up.yaml")
    r = direct(cfg, tmp_path / "journal.jsonl")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    ann_id = out["id"]
    states = {d["channel"]: d["state"] for d in out["deliveries"]}
    assert set(states.values()) == {"delivered"} and len(states) == 4, states
    hooks = next(d for d in out["deliveries"] if d["channel"] == "customer-webhooks")
    assert "from the ledger" in (hooks["note"] or "")
    assert [p["to"] for p in sandbox.posts("twilio")] == [ONCALL], "the ledger's opt-outs are honoured"

    (toot,) = sandbox.posts("mastodon")
    assert f"Verify: {SITE}/verify.html?id={ann_id}" in json.dumps(toot)
    (reader,) = [p for p in sandbox.posts("webhook") if "reader-endpoint" in json.dumps(p)]
    assert ann_id in json.dumps(reader)
    assert not [p for p in sandbox.posts("webhook") if "website-only" in json.dumps(p)], \
        "the audience rule reads the announcement's components, as a worker's does"

    # the status site was sent first, so no post's Verify link ever pointed at a missing signature
    sent = [c["row"]["id"] for line in (tmp_path / "journal.jsonl").read_text().splitlines()
            for c in json.loads(line).get("changes", ())
            if c["table"] == "deliveries" and c["row"]["state"] == "sending"]
    first = next(d for d in out["deliveries"] if d["channel"] == "status-site")["id"]
    assert sent[0] == first, sent

    # the Verify link answers at once: the signature file is on the site, and it verifies
    assert (tmp_path / "site" / signing.WELL_KNOWN / "signatures" / f"{ann_id}.json").is_file()
    ok = CliRunner().invoke(main, ["--config", cfg, "verify", "--id", ann_id])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith(f"OK: announcement {ann_id} is signed by us")


def test_with_the_ledger_down_only_the_endpoint_channel_says_what_it_could_not_reach(sandbox, tmp_path):
    cfg = config(tmp_path, sandbox, DOWN, "down.yaml")
    r = direct(cfg, tmp_path / "journal.jsonl")
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    by = {d["channel"]: d for d in out["deliveries"]}
    assert by["mastodon-main"]["state"] == "delivered" and by["status-site"]["state"] == "delivered"
    hooks = by["customer-webhooks"]
    assert hooks["state"] == "failed"
    assert "endpoints of customers NOT reached: ledger unreachable" in hooks["error"], hooks["error"]
    assert "nothing was sent" in hooks["error"] and "no endpoint source" not in hooks["error"]
    assert [p for p in sandbox.posts("webhook") if "reader-endpoint" in json.dumps(p)] == []
    sms = by["oncall-sms"]
    assert sms["state"] == "delivered" and "SMS opt-outs not checked (ledger unreachable" in sms["note"]

    # signing needs no ledger: the break-glass post verifies all the same
    ok = CliRunner().invoke(main, ["--config", cfg, "verify", "--id", out["id"]])
    assert ok.exit_code == 0 and ok.output.startswith("OK:"), ok.output

    human = CliRunner().invoke(main, ["--config", cfg, "post", "--direct", "--journal", str(tmp_path / "journal.jsonl"),
                                      "--kind", "incident", "--title", "Checkout is failing", "--body",
                                      "We are investigating.", "--severity", "major", "--component", "API",
                                      "--idempotency-key", "bg-trust-1"])
    assert human.exit_code == 1
    assert "customer-webhooks" in human.output and "NOT reached" in human.output


def test_without_the_signing_key_here_the_status_site_line_says_the_posts_are_not_signed(sandbox, ledger_url,
                                                                                        tmp_path):
    cfg = config(tmp_path, sandbox, ledger_url, "nokey.yaml", key=False)
    r = direct(cfg, tmp_path / "journal.jsonl")
    out = json.loads(r.output)
    site = next(d for d in out["deliveries"] if d["channel"] == "status-site")
    assert site["state"] == "delivered"  # a missing signature never holds back an incident notice
    assert "posts NOT signed (no keyring in" in site["note"], site
    assert all("NOT signed" not in (d["note"] or "") for d in out["deliveries"] if d is not site)
