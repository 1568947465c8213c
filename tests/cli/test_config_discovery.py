"""How admin commands find the configuration: --config, then $BROADCASTER_CONFIG, then
config/broadcaster.yaml; with none of them, one clear line and exit 2 (the README's
`broadcaster tokens create …` once failed here with nothing to go on)."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from broadcaster.cli import main


def write_config(path, tmp_path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "ledger": f"sqlite:///{tmp_path}/ledger.db",
        "channels": {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"}},
        "routes": {"deploy": ["hook"]},
    }))


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env={"BROADCASTER_CONFIG": "", **(env or {})})


def test_no_configuration_anywhere_says_how_to_give_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run("tokens", "create", "ci", "--kinds", "deploy")
    assert res.exit_code == 2
    assert "no configuration found" in res.stderr
    assert "--config" in res.stderr and "BROADCASTER_CONFIG" in res.stderr and "config/broadcaster.yaml" in res.stderr
    assert "Traceback" not in res.output


def test_the_environment_variable_then_the_default_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere.yaml"
    write_config(elsewhere, tmp_path)
    res = run("tokens", "create", "ci", "--kinds", "deploy", env={"BROADCASTER_CONFIG": str(elsewhere)})
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().startswith("bct_")
    write_config(tmp_path / "config" / "broadcaster.yaml", tmp_path)
    res = run("tokens", "create", "ci-2", "--kinds", "deploy")
    assert res.exit_code == 0, res.output


def test_a_named_file_that_is_missing_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run("tokens", "list", env={"BROADCASTER_CONFIG": "config/demo-typo.yaml"})
    assert res.exit_code == 2 and "config/demo-typo.yaml: no such file" in res.stderr
