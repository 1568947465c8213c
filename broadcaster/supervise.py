"""Running the whole system on one machine (``broadcaster up``): find or start Redis, then run
API, worker, scheduler (and the sandbox for the demo) as child processes, say "up" only once
each one serves, restart any that dies, and stop them all cleanly on Ctrl-C.

The API, worker and scheduler are required: if one cannot start, ``up`` says which and stops.
The sandbox is optional: if it cannot start (its port is taken), ``up`` says so and runs on.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
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
        raise RuntimeError(f"Redis at {mask_url_password(configured)} (from the configuration) is not reachable; "
                           "start it or fix 'broker'")
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
    # absolute: redis-server changes into --dir before it opens --logfile, so a relative var/
    # (the default) would point the log at var/redis/var/redis/… and the server would not start
    data = (var_dir / "redis").resolve()
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


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (as uvicorn does: SO_REUSEADDR, so a
    port in TIME_WAIT counts as free; one with a listener does not)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


Probe = Callable[[], bool]


@dataclass
class Child:
    name: str
    argv: list[str]
    #: a required child (the API, the worker, the scheduler) that cannot start stops ``up``; an
    #: optional one (the sandbox) is reported and left out, and the rest keeps running
    required: bool = True
    #: answers True once the child serves (its port bound); None: started is ready
    probe: Probe | None = None
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    ready: bool = False
    dropped: bool = False


def _say(message: str) -> None:
    print(f"broadcaster: {message}", file=sys.stderr, flush=True)


@dataclass
class Supervisor:
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    #: how long the children get to bind their ports before ``up`` gives up
    ready_timeout: float = 90.0
    say: Callable[[str], None] = _say

    def add(self, name: str, *args: str, required: bool = True, probe: Probe | None = None) -> Child:
        child = Child(name, [sys.executable, "-m", "broadcaster", *args], required=required, probe=probe)
        self.children.append(child)
        return child

    def start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=self.env, start_new_session=True)
        child.started_at = time.monotonic()

    def _drop(self, child: Child, why: str) -> None:
        child.dropped = True
        self.say(f"{child.name} {why}; carrying on without it")

    def wait_ready(self) -> bool:
        """Wait until every child serves; False (after saying why, once) if a required one can't."""
        deadline = time.monotonic() + self.ready_timeout
        while not self.stopping:
            waiting = False
            for child in self.children:
                if child.ready or child.dropped:
                    continue
                code = child.proc.poll() if child.proc else None
                if code is not None:
                    if not child.required:
                        self._drop(child, f"could not start (exit code {code}; its message is above)")
                        continue
                    self.say(f"{child.name} could not start (exit code {code}; its message is above); stopping")
                    return False
                if child.probe is None or child.probe():
                    child.ready = True
                    continue
                waiting = True
            if not waiting:
                return True
            if time.monotonic() > deadline:
                late = [c for c in self.children if not (c.ready or c.dropped)]
                for child in late:
                    if not child.required:
                        self._drop(child, f"did not answer within {self.ready_timeout:g}s")
                if any(c.required for c in late):
                    names = ", ".join(c.name for c in late if c.required)
                    self.say(f"{names} did not answer within {self.ready_timeout:g}s; stopping")
                    return False
                return True
            time.sleep(0.1)
        return False

    def run(self, on_ready: Callable[[list[Child]], None] | None = None) -> int:
        """Start every child; call ``on_ready`` with the ones that serve once they all do; then
        restart any that dies until Ctrl-C. 0 after a clean stop, 1 if a required child could
        not start or keeps exiting."""
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        for child in self.children:
            self.start(child)
        code = 0
        if not self.wait_ready():
            code = 0 if self.stopping else 1
            self.stopping = True
        elif on_ready and not self.stopping:
            on_ready([c for c in self.children if not c.dropped])
        while not self.stopping:
            time.sleep(0.5)
            for child in self.children:
                exit_code = child.proc.poll() if child.proc and not child.dropped else None
                if exit_code is None or self.stopping:
                    continue
                quick = time.monotonic() - child.started_at < 5
                child.restarts += 1
                if quick and child.restarts > 5:
                    if not child.required:
                        self._drop(child, f"keeps exiting (code {exit_code})")
                        continue
                    self.say(f"{child.name} keeps exiting (code {exit_code}); stopping")
                    self.stopping, code = True, 1
                    break
                self.say(f"{child.name} exited with {exit_code}; restarting")
                self.start(child)
        self.shutdown()
        return code

    def _stop(self, *_: object) -> None:
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
