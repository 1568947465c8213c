"""`broadcaster up` as a user runs it: everything starts, an announcement posted with curl-like
HTTP reaches a loopback webhook receiver, and Ctrl-C stops every process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from broadcaster.channels.webhook import verify
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
        detail = httpx.get(f"{base}/api/v1/announcements/{r.json()['id']}", headers={"Authorization": f"Bearer {token}"})
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
