"""Tokens: shown once, stored hashed, scoped, revocable, audited — in the store and the CLI."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from click.testing import CliRunner

from broadcaster.cli import main
from broadcaster.errors import InvalidRequest, NotFound
from broadcaster.ledger import Ledger
from broadcaster.tokens import PREFIX, TokenStore, hash_token
from tests.support.ledger import audit_entries

from .conftest import STATIC_TOKEN, config


@pytest.fixture
def store(env) -> TokenStore:
    return env.store


def test_create_returns_a_random_token_and_stores_only_its_hash(store, env):
    raw, info = store.create("ci", kinds=["deploy"], channels=["ops-chat"], actor="cli:alice")
    raw2, _ = store.create("ci2", actor="cli:alice")
    assert raw.startswith(PREFIX) and len(raw) > 40 and raw != raw2
    assert hash_token(raw) == "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    assert info.kinds == ("deploy",) and info.channels == ("ops-chat",) and not info.admin
    p = store.verify(raw)
    assert (p.name, p.kinds, p.channels, p.admin) == ("ci", ("deploy",), ("ops-chat",), False)
    listed = {i.name: i.to_dict() for i in store.list()}
    assert set(listed) == {"ops-static", "ci", "ci2"}
    assert raw not in json.dumps(listed) and hash_token(raw) not in json.dumps(listed)


def test_verify_refuses_unknown_revoked_and_odd_tokens(store):
    raw, _ = store.create("x", actor="t")
    assert store.verify(raw[:-1]) is None
    assert store.verify("") is None and store.verify(None) is None and store.verify("a" * 600) is None
    assert store.verify(raw + "\udcff") is None  # undecodable junk is just unknown
    store.revoke("x", actor="t")
    assert store.verify(raw) is None


def test_static_tokens_verify_without_the_ledger(env):
    offline = TokenStore(None, env.settings)
    p = offline.verify(STATIC_TOKEN)
    assert p.name == "ops-static" and p.kinds == ("incident", "maintenance")
    assert offline.verify("anything else") is None


@pytest.mark.parametrize("name, kw, field", [
    ("", {}, "name"), ("has space", {}, "name"), ("ops-static", {}, "name"),
    ("k", {"kinds": ["outage"]}, "kinds"), ("c", {"channels": ["nowhere"]}, "channels"),
])
def test_create_refuses_bad_input(store, name, kw, field):
    with pytest.raises(InvalidRequest) as exc:
        store.create(name, actor="t", **kw)
    assert exc.value.field == field


def test_names_are_unique_even_after_revocation(store):
    store.create("ci", actor="t")
    store.revoke("ci", actor="t")
    with pytest.raises(InvalidRequest, match="already exists"):
        store.create("ci", actor="t")


def test_revoke_errors(store):
    with pytest.raises(NotFound):
        store.revoke("nope", actor="t")
    with pytest.raises(InvalidRequest, match="configuration"):
        store.revoke("ops-static", actor="t")


def test_create_and_revoke_are_audited(store, env):
    store.create("ci", kinds=["deploy"], actor="cli:alice")
    store.revoke("ci", actor="cli:bob")
    store.revoke("ci", actor="cli:bob")  # second revoke changes nothing and is not logged again
    entries = [(e["actor"], e["action"], e["target"]) for e in audit_entries(env.ledger)]
    assert ("cli:alice", "token.create", "ci") in entries
    assert entries.count(("cli:bob", "token.revoke", "ci")) == 1


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def cli(tmp_path):
    cfg = config(ledger=f"sqlite:///{tmp_path}/cli.db")
    path = tmp_path / "broadcaster.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, ["--config", str(path), *args], catch_exceptions=False)

    run.ledger_url = cfg["ledger"]
    return run


def test_cli_create_prints_the_token_once_on_stdout(cli):
    r = cli("tokens", "create", "ci-deploy", "--kinds", "deploy", "--channels", "ops-chat")
    assert r.exit_code == 0, r.output
    raw = r.stdout.strip()
    assert raw.startswith(PREFIX) and "\n" not in raw
    assert "shown only now" in r.stderr
    ledger = Ledger.open(cli.ledger_url)
    try:
        p = TokenStore(ledger, _settings(cli)).verify(raw)
        assert p.kinds == ("deploy",) and p.channels == ("ops-chat",)
        assert any(e["action"] == "token.create" and e["actor"].startswith("cli") for e in audit_entries(ledger))
    finally:
        ledger.close()
    listing = cli("tokens", "list")
    assert "ci-deploy" in listing.stdout and "kinds=deploy channels=ops-chat" in listing.stdout
    assert raw not in listing.output


def _settings(cli):
    from broadcaster.config import load_settings

    return load_settings(config(ledger=cli.ledger_url), env={})


def test_cli_admin_list_json_and_revoke(cli):
    cli("tokens", "create", "root", "--admin")
    rows = [json.loads(line) for line in cli("tokens", "list", "--json").stdout.splitlines()]
    assert {r["name"]: r["admin"] for r in rows} == {"ops-static": False, "root": True}
    assert all("hash" not in r for r in rows)
    r = cli("tokens", "revoke", "root")
    assert r.exit_code == 0 and "revoked" in r.stderr
    active = [json.loads(line)["name"] for line in cli("tokens", "list", "--json", "--active").stdout.splitlines()]
    assert active == ["ops-static"]


@pytest.mark.parametrize("args", [
    ("tokens", "create", "x", "--kinds", "outage"),
    ("tokens", "create", "x", "--channels", "nowhere"),
    ("tokens", "revoke", "nobody"),
    ("tokens", "revoke", "ops-static"),
])
def test_cli_usage_errors_exit_2_without_traceback(cli, args):
    r = cli(*args)
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.output


def test_cli_duplicate_name_exits_2(cli):
    assert cli("tokens", "create", "dup").exit_code == 0
    r = cli("tokens", "create", "dup")
    assert r.exit_code == 2 and "already exists" in r.stderr
