"""`broadcaster up` as a user runs it: everything starts, an announcement posted with curl-like
HTTP reaches a loopback webhook receiver, and Ctrl-C stops every process."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import yaml

from broadcaster.channels.webhook import verify
from broadcaster.supervise import port_answers, port_free
from tests.conftest import free_port

pytestmark = pytest.mark.slow
SECRET = "whsec_" + "dXAtdGVzdC1zZWNyZXQtMDEyMzQ1Njc4OQ=="


def test_up_delivers_and_stops_on_ctrl_c(tmp_path, receiver, shared_redis_url):
    port = free_port()
    cfg = tmp_path / "up.yaml"
    cfg.write_text(yaml.safe_dump({
        "ledger": f"sqlite:///{tmp_path}/ledger.db",
        "api": {"port": port},
        "channels": {"hook": {"kind": "webhook", "format": "generic", "url": receiver.url + "/hook", "secret": SECRET}},
        "routes": {"incident": ["hook"], "deploy": ["hook"]},
    }))
    env = {**os.environ, "BROADCASTER_VAR": str(tmp_path / "var"), "REDIS_URL": shared_redis_url,
           "BROADCASTER_LOG_FORMAT": "text"}
    proc = subprocess.Popen([sys.executable, "-m", "broadcaster", "--config", str(cfg), "up"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 40
        while time.time() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("the API did not come up")
        token = (tmp_path / "var" / "admin-token").read_text().strip()
        r = httpx.post(base + "/api/v1/announcements", timeout=10,
                       headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "deploy-42"},
                       json={"kind": "deploy", "title": "Deployed v1.2.3", "body": "Rolled out to production."})
        assert r.status_code == 202, r.text
        assert receiver.wait_for(lambda: len(receiver.ok()) == 1, timeout=30), "the webhook never arrived"
        seen = receiver.ok()[0]
        assert verify(SECRET, seen.headers, seen.body)
        assert seen.json()["data"]["title"] == "Deployed v1.2.3"
        detail = httpx.get(f"{base}/api/v1/announcements/{r.json()['id']}",
                           headers={"Authorization": f"Bearer {token}"})
        assert detail.status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail("broadcaster up did not stop on Ctrl-C within 30 s")
    assert proc.returncode == 0, out[-2000:]
    assert f"web page:  http://127.0.0.1:{port}/" in out
    assert "broadcaster stopped." in out
    assert "Traceback" not in out, out[-3000:]
    leftover = subprocess.run(["pgrep", "-f", str(cfg)], capture_output=True, text=True).stdout.split()
    assert not leftover, f"processes left running: {leftover}"


def _read_lines(proc, lines: queue.Queue) -> None:
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


def test_up_says_up_only_once_serving_and_runs_on_without_a_sandbox_whose_port_is_taken(tmp_path, shared_redis_url):
    port, box_port, smtp_port = free_port(), free_port(), free_port()
    cfg = tmp_path / "up.yaml"
    cfg.write_text(yaml.safe_dump({
        "ledger": f"sqlite:///{tmp_path}/ledger.db", "api": {"port": port},
        "sandbox": {"autostart": True, "port": box_port, "smtp_port": smtp_port},
        "channels": {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"}},
        "routes": {"deploy": ["hook"]},
    }))
    env = {**os.environ, "BROADCASTER_VAR": str(tmp_path / "var"), "REDIS_URL": shared_redis_url}
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", box_port))
    squatter.listen()
    proc = subprocess.Popen([sys.executable, "-m", "broadcaster", "--config", str(cfg), "up"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail("up exited: " + "".join(seen)[-3000:])
            seen.append(line)
            if line.startswith("broadcaster is up"):
                # no retry: the moment it says "up", the API must already answer
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
                break
        else:
            pytest.fail("never said it was up: " + "".join(seen)[-3000:])
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        squatter.close()
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    out = "".join(seen)
    assert proc.returncode == 0, out[-3000:]
    assert f"sandbox:   NOT started — 127.0.0.1:{box_port} already in use" in out
    assert "Traceback" not in out, out[-3000:]
    assert "[queues]" not in out and "[config]" not in out, "no Celery banner under up"


def test_up_with_its_api_port_taken_fails_at_once_with_one_line(tmp_path, shared_redis_url):
    port = free_port()
    cfg = tmp_path / "up.yaml"
    cfg.write_text(yaml.safe_dump({
        "ledger": f"sqlite:///{tmp_path}/ledger.db", "api": {"port": port},
        "channels": {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"}}, "routes": {"deploy": ["hook"]},
    }))
    env = {**os.environ, "BROADCASTER_VAR": str(tmp_path / "var"), "REDIS_URL": shared_redis_url}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        res = subprocess.run([sys.executable, "-m", "broadcaster", "--config", str(cfg), "up"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert res.stderr.strip() == (f"error: cannot start the API: 127.0.0.1:{port} is already in use "
                                  "(another broadcaster up?); stop that, or pass --port / set api.port")
    assert "is up" not in res.stdout


def test_port_free_sees_a_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        assert port_answers("127.0.0.1", port)
    assert port_free("127.0.0.1", port)


def _readyz_parts(base: str) -> dict:
    r = httpx.get(base + "/readyz", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["parts"]


def test_up_keeps_serving_while_its_worker_is_killed_again_and_again(tmp_path, shared_redis_url):
    """The outside trial: the worker killed with SIGKILL over and over. ``up`` restarts it with a
    growing pause and says when it tries next; the API keeps answering and /readyz shows the worker
    restarting; Ctrl-C still stops everything with exit 0."""
    port = free_port()
    cfg = tmp_path / "up.yaml"
    cfg.write_text(yaml.safe_dump({
        "ledger": f"sqlite:///{tmp_path}/ledger.db", "api": {"port": port},
        "channels": {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"}}, "routes": {"deploy": ["hook"]},
    }))
    env = {**os.environ, "BROADCASTER_VAR": str(tmp_path / "var"), "REDIS_URL": shared_redis_url,
           "BROADCASTER_LOG_FORMAT": "text"}
    proc = subprocess.Popen([sys.executable, "-m", "broadcaster", "--config", str(cfg), "up"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
    seen: list[str] = []

    def wait_for(pred, what: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(pred(line) for line in seen):
                return
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"up exited while waiting for {what}: " + "".join(seen)[-3000:])
            seen.append(line)
        pytest.fail(f"never saw {what}: " + "".join(seen)[-3000:])

    def worker_pid() -> int:
        for _ in range(200):
            found = subprocess.run(["pgrep", "-o", "-f", f"{cfg} worker"], capture_output=True, text=True).stdout
            if found.strip():
                return int(found.split()[0])
            time.sleep(0.1)
        pytest.fail("no worker process")

    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda line: line.startswith("broadcaster is up"), "up")
        assert {name: p["state"] for name, p in _readyz_parts(base).items()} == {
            "api": "running", "worker": "running", "scheduler": "running"}
        for kill in range(1, 7):
            os.kill(worker_pid(), signal.SIGKILL)
            wait_for(lambda line, n=kill: f"restart {n})" in line, f"restart {kill} announced")
            if kill == 6:
                worker = _readyz_parts(base)["worker"]
                assert worker["state"] == "restarting" and worker["last_exit"] == -9 and worker["restarts"] == 6
            assert httpx.get(base + "/healthz", timeout=5).status_code == 200, "the API keeps serving"
            if kill < 6:
                # the next start is the one to kill: wait until the worker runs again
                deadline = time.time() + 60
                while _readyz_parts(base)["worker"]["state"] != "running" and time.time() < deadline:
                    time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    out = "".join(seen)
    assert proc.returncode == 0, out[-3000:]
    assert "keeps exiting" not in out and "stopped: a required part" not in out
    pauses = re.findall(r"worker exited with code -9 after \d+s; restarting in (\d+)s \(next try at", out)
    assert pauses == ["1", "2", "4", "8", "16", "32"], out[-3000:]
    assert "broadcaster stopped." in out
    leftover = subprocess.run(["pgrep", "-f", str(cfg)], capture_output=True, text=True).stdout.split()
    assert not leftover, f"processes left running: {leftover}"
