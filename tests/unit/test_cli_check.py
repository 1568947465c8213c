"""`broadcaster check`: configuration problems end with exit 2, one line per problem with its key
path, and never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from broadcaster.cli import EXIT_USAGE, main

SECRET_VALUE = "hook-secret-value-XYZ"


def run(*args, env=None):
    runner = CliRunner()
    return runner.invoke(main, list(args), env={"BROADCASTER_CONFIG": None, **(env or {})}, catch_exceptions=True)


def output_of(result) -> str:
    """Everything the user saw (click >= 8.2 interleaves stdout and stderr in ``output``)."""
    return result.output


def test_bad_configuration_exits_2_with_one_line_per_problem(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "bogus: 1\n"
        "public_url: nope\n"
        "channels:\n"
        "  x: {kind: webhook, url: 'ftp:/bad', secret: '${WH_SECRET}'}\n"
        "  y: {kind: carrier-pigeon}\n"
        "policy:\n"
        "  defaults: {deadline: 'soon'}\n"
    )
    result = run("--config", str(cfg), "check", "--offline")
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = output_of(result)
    assert "Traceback" not in text
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    expected = {
        "config error: bogus: unknown key",
        "config error: public_url: not a URL",
        "config error: channels.x.url: not a URL",
        "config error: channels.x.secret: environment variable WH_SECRET is not set",
        "config error: policy.defaults.deadline: not a duration: 'soon' (use e.g. 30s, 5m, 2h)",
    }
    assert expected <= set(lines), lines
    assert any(line.startswith("config error: channels.y.kind: unknown channel kind 'carrier-pigeon'") for line in lines)
    assert len(lines) == 6, "exactly one line per problem"
    assert "configuration OK" not in result.output


def test_missing_file_exits_2(tmp_path):
    result = run("--config", str(tmp_path / "nope.yaml"), "check", "--offline")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.strip() == f"config error: {tmp_path / 'nope.yaml'}: no such file"
    assert "Traceback" not in output_of(result)


def test_missing_file_named_by_the_environment_exits_2(tmp_path):
    result = run("check", "--offline", env={"BROADCASTER_CONFIG": str(tmp_path / "gone.yaml")})
    assert result.exit_code == EXIT_USAGE
    assert "no such file" in result.stderr


def test_invalid_yaml_exits_2_with_its_line(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("channels:\n  a: [1, 2\n")
    result = run("--config", str(cfg), "check", "--offline")
    assert result.exit_code == EXIT_USAGE
    assert "not valid YAML at line" in result.stderr
    assert "Traceback" not in output_of(result)


def test_good_configuration_offline_is_ok_and_secret_free(tmp_path):
    cfg = tmp_path / "good.yaml"
    cfg.write_text(
        "channels:\n"
        "  hook: {kind: webhook, url: 'https://hooks.example/${WH_SECRET}', secret: '${WH_SECRET}'}\n"
        "routes: {incident: [hook]}\n"
    )
    result = run("--config", str(cfg), "check", "--offline", env={"WH_SECRET": SECRET_VALUE})
    assert result.exit_code == 0, output_of(result)
    assert "configuration OK" in result.output and "1 channels, 1 routes" in result.output
    assert SECRET_VALUE not in output_of(result)


def test_online_check_of_a_generic_webhook_does_not_post(tmp_path):
    """A generic webhook cannot be verified without posting, so `check` must not contact it
    (there is no server at this address: any request would fail the check)."""
    port_free_url = "http://127.0.0.1:9/hook"
    cfg = tmp_path / "good.yaml"
    cfg.write_text(f"channels:\n  hook: {{kind: webhook, url: '{port_free_url}'}}\n"
                   f"  spare: {{kind: webhook, url: '{port_free_url}', enabled: false}}\n")
    result = run("--config", str(cfg), "check")
    assert result.exit_code == 0, output_of(result)
    assert "hook" in result.output and "ok:" in result.output
    assert "disabled" in result.output


@pytest.mark.parametrize("args", [["check", "--offline"], ["migrate"]])
def test_every_server_command_reports_config_errors_the_same_way(tmp_path, args):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("ledger: 5\nworker: {pool: gevent}\n")
    result = run("--config", str(cfg), *args)
    assert result.exit_code == EXIT_USAGE
    assert "config error: worker.pool:" in result.stderr
    assert "Traceback" not in output_of(result)


def test_list_valued_channel_kind_is_a_config_error_not_a_crash(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("channels:\n  hook: {kind: [webhook], url: 'https://h.example/x'}\n")
    result = run("--config", str(cfg), "check", "--offline")
    assert result.exit_code == EXIT_USAGE
    assert "config error: channels.hook.kind:" in result.output
