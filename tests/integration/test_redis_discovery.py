"""How `broadcaster up` finds Redis: config, then REDIS_URL, then the local one, then a private
redis-server under var/, else one line saying how to get Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from broadcaster.supervise import find_or_start_redis, redis_reachable
from tests.conftest import free_port

DEAD = "redis://127.0.0.1:1/0"


def test_configured_and_env_urls_win(shared_redis_url, tmp_path):
    assert find_or_start_redis(shared_redis_url, tmp_path, {}).how == "from the configuration"
    assert find_or_start_redis(None, tmp_path, {"REDIS_URL": shared_redis_url}).how == "from REDIS_URL"


def test_unreachable_configured_redis_is_one_clear_line(tmp_path):
    with pytest.raises(RuntimeError, match="not reachable") as exc:
        find_or_start_redis("redis://:hunter2@127.0.0.1:1/0", tmp_path, {})
    assert "hunter2" not in str(exc.value) and "\n" not in str(exc.value)


def test_starts_a_private_redis_when_none_runs(tmp_path):
    port = free_port()
    choice = find_or_start_redis(None, tmp_path, {}, local=DEAD, private_port=port)
    try:
        assert choice.process is not None and str(tmp_path) in choice.how
        assert redis_reachable(choice.url)
    finally:
        choice.process.terminate()
        choice.process.wait(5)


def test_starts_a_private_redis_under_a_relative_var_dir(tmp_path, monkeypatch):
    """`up`'s default is the relative `var/`: redis-server changes into --dir before opening
    --logfile, so relative paths once made the private Redis fail to start on a fresh machine."""
    monkeypatch.chdir(tmp_path)
    choice = find_or_start_redis(None, Path("var"), {}, local=DEAD, private_port=free_port())
    try:
        assert redis_reachable(choice.url)
        assert (tmp_path / "var" / "redis" / "redis.log").is_file()
    finally:
        choice.process.terminate()
        choice.process.wait(5)


def test_no_redis_anywhere_says_how_to_get_it(tmp_path):
    with pytest.raises(RuntimeError, match="install it") as exc:
        find_or_start_redis(None, tmp_path, {}, local=DEAD, binary="")
    assert "REDIS_URL" in str(exc.value)
