"""Running the whole system on one machine (``broadcaster up``): find or start Redis, then run
API, worker, scheduler (and the sandbox for the demo) as child processes, restart any that
dies, and stop them all cleanly on Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import mask_url_password

PRIVATE_REDIS_PORT = 6390


def redis_reachable(url: str, timeout: float = 1.0) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


@dataclass
class RedisChoice:
    url: str
    how: str
    process: subprocess.Popen | None = None


def find_or_start_redis(configured: str | None, var_dir: Path, env: dict[str, str], *,
                        local: str = "redis://127.0.0.1:6379/0", private_port: int = PRIVATE_REDIS_PORT,
                        binary: str | None = None) -> RedisChoice:
    """The config's broker, else $REDIS_URL, else local 6379, else a private redis-server under
    ``var/``. Raises RuntimeError with one line saying how to get Redis."""
    if configured:
        if configured.startswith(("amqp", "sentinel")) or redis_reachable(configured):  # workers report their own
            return RedisChoice(configured, "from the configuration")
        raise RuntimeError(f"Redis at {mask_url_password(configured)} (from the configuration) is not reachable; start it or fix 'broker'")
    if env.get("REDIS_URL"):
        if redis_reachable(env["REDIS_URL"]):
            return RedisChoice(env["REDIS_URL"], "from REDIS_URL")
        raise RuntimeError(f"Redis at {mask_url_password(env['REDIS_URL'])} (REDIS_URL) is not reachable")
    if redis_reachable(local):
        return RedisChoice(local, "the local Redis on 6379")
    binary = binary if binary is not None else shutil.which("redis-server")
    if not binary:
        raise RuntimeError("no Redis found: install it (e.g. 'apt-get install redis-server' or 'brew install redis') "
                           "or set REDIS_URL=redis://host:6379/0")
    data = var_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, "--port", str(private_port), "--bind", "127.0.0.1", "--dir", str(data),
         "--appendonly", "yes", "--save", "", "--logfile", str(data / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{private_port}/0"
    for _ in range(50):
        if redis_reachable(url, 0.2):
            return RedisChoice(url, f"a private redis-server under {data}", proc)
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"started redis-server but it did not answer on port {private_port}; see {data}/redis.log")


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0


@dataclass
class Supervisor:
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    stopping: bool = False

    def add(self, name: str, *args: str) -> None:
        self.children.append(Child(name, [sys.executable, "-m", "broadcaster", *args]))

    def start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=self.env, start_new_session=True)
        child.started_at = time.monotonic()

    def run(self, on_ready=None) -> int:
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        for child in self.children:
            self.start(child)
        if on_ready:
            on_ready()
        while not self.stopping:
            time.sleep(0.5)
            for child in self.children:
                code = child.proc.poll() if child.proc else None
                if code is not None and not self.stopping:
                    quick = time.monotonic() - child.started_at < 5
                    child.restarts += 1
                    if quick and child.restarts > 5:
                        print(f"broadcaster: {child.name} keeps exiting (code {code}); stopping", file=sys.stderr)
                        self.stopping = True
                        break
                    print(f"broadcaster: {child.name} exited with {code}; restarting", file=sys.stderr)
                    self.start(child)
        self.shutdown()
        return 0

    def _stop(self, *_):
        self.stopping = True

    def shutdown(self, grace: float = 10.0) -> None:
        for child in self.children:
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            if child.proc:
                try:
                    child.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.proc.kill()


def child_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
