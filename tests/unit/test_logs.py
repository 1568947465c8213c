"""Readable, coloured one-line logs on a terminal; JSON lines everywhere else; an env switch."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import subprocess
import sys

import pytest

from broadcaster import logs


@pytest.fixture(autouse=True)
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def emit(stream, env: dict) -> str:
    logs.configure("INFO", stream=stream, env=env)
    logging.getLogger("broadcaster.engine").info("delivery dlv_1 to x-main: delivered",
                                                 extra={"delivery_id": "dlv_1", "channel": "x-main"})
    return stream.getvalue()


def test_a_pipe_gets_json_lines():
    line = emit(io.StringIO(), {}).strip()
    data = json.loads(line)
    assert data["msg"] == "delivery dlv_1 to x-main: delivered" and data["delivery_id"] == "dlv_1"


def test_a_terminal_gets_one_coloured_readable_line():
    out = emit(Tty(), {})
    assert not out.lstrip().startswith("{")
    assert out.count("\n") == 1
    assert "\033[32mINFO" in out, "the level is coloured"
    plain = out.replace("\033[2m", "").replace("\033[32m", "").replace("\033[0m", "")
    assert "INFO    broadcaster.engine: delivery dlv_1 to x-main: delivered delivery_id=dlv_1 channel=x-main" in plain


def test_no_color_and_the_switch_are_respected():
    assert "\033[" not in emit(Tty(), {"NO_COLOR": "1"})
    assert json.loads(emit(Tty(), {"BROADCASTER_LOG_FORMAT": "json"}))["level"] == "info"
    text = emit(io.StringIO(), {"BROADCASTER_LOG_FORMAT": "text"})
    assert "\033[" not in text and "broadcaster.engine: delivery dlv_1" in text


def test_a_traceback_stays_under_its_line():
    stream = Tty()
    logs.configure(stream=stream, env={"NO_COLOR": "1"})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("it failed")
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("x: it failed") and rest and all(line.startswith("    ") for line in rest)


def test_a_real_pseudo_terminal_is_detected_in_a_child_process():
    code = ("import logging; from broadcaster.logs import configure; configure(); "
            "logging.getLogger('broadcaster.t').warning('hello there')")
    env = {k: v for k, v in os.environ.items() if k not in ("BROADCASTER_LOG_FORMAT", "NO_COLOR")}
    env["TERM"] = "xterm"
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", code], stderr=slave, stdout=subprocess.DEVNULL, env=env,
                              timeout=60, check=False)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    assert proc.returncode == 0
    out = b"".join(chunks).decode()
    assert "\033[33mWARNING" in out and "broadcaster.t" in out and "hello there" in out
    assert not out.lstrip().startswith("{")
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                           check=False)
    assert json.loads(piped.stderr)["msg"] == "hello there"
