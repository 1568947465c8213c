"""Running the whole system on one machine (``broadcaster up``): find or start Redis, then run
API, worker, scheduler (and the sandbox for the demo) as child processes, say "up" only once
each one serves, restart any that dies, and stop them all cleanly on Ctrl-C.

A part that keeps dying (a worker killed again and again) is restarted for as long as ``up``
runs, with a capped exponential pause between tries that the log announces with the next try's
time; the others keep serving, and ``/readyz`` and ``/metrics`` show it (see ``parts.py``). Only
a required part (API, worker, scheduler) refused by its configuration (exit code 2), or one that
never serves within the start-up timeout, stops ``up``, with a line saying which and why. The
sandbox is optional: if it cannot start (its port is taken), ``up`` says so and runs on.
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

from . import parts
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

#: the exit code of a command that stopped on its configuration (or its command line): restarting
#: it cannot help, so a required part that exits with it stops ``up``
EXIT_CONFIG = 2


@dataclass(frozen=True)
class Backoff:
    """How long to wait before restarting a part that exited: ``first`` after its first exit,
    doubling with each exit that follows a short run, never more than ``cap``. A part that ran
    ``stable_after`` seconds counts as healthy again, so its next exit waits ``first`` again."""

    first: float = 1.0
    cap: float = 60.0
    stable_after: float = 120.0

    def delay(self, failures: int) -> float:
        return min(self.cap, self.first * 2 ** max(0, failures - 1))


@dataclass
class Child:
    name: str
    argv: list[str]
    #: a required child (the API, the worker, the scheduler) that cannot start for a configuration
    #: reason stops ``up``; an optional one (the sandbox) is reported and left out, and the rest
    #: keeps running
    required: bool = True
    #: answers True once the child serves (its port bound); None: started is ready
    probe: Probe | None = None
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    ready: bool = False
    dropped: bool = False
    #: exits in a row, each after a short run (how far the backoff has grown)
    failures: int = 0
    last_exit: int | None = None
    #: while it waits to be restarted: when (monotonic clock, and wall clock for people)
    next_try: float | None = None
    next_try_wall: float | None = None


def _say(message: str) -> None:
    print(f"broadcaster: {message}", file=sys.stderr, flush=True)


def _utc(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


@dataclass
class Supervisor:
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    #: how long the children get to bind their ports before ``up`` gives up
    ready_timeout: float = 90.0
    say: Callable[[str], None] = _say
    backoff: Backoff = field(default_factory=Backoff)
    #: where the parts' states are written for the API (``/readyz``, ``/metrics``); None: nowhere
    state_file: Path | None = None
    #: how often the loop looks at the children
    tick: float = 0.5

    def add(self, name: str, *args: str, required: bool = True, probe: Probe | None = None) -> Child:
        child = Child(name, [sys.executable, "-m", "broadcaster", *args], required=required, probe=probe)
        self.children.append(child)
        return child

    def start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=self.env, start_new_session=True)
        child.started_at = time.monotonic()
        child.next_try = child.next_try_wall = None
        self.publish()

    def _drop(self, child: Child, why: str) -> None:
        child.dropped = True
        child.next_try = child.next_try_wall = None
        self.say(f"{child.name} {why}; carrying on without it")
        self.publish()

    def _config_stop(self, child: Child, code: int) -> None:
        self.say(f"{child.name} cannot start: its configuration was refused (exit code {code}; its message is "
                 "above); stopping everything — fix it and run `broadcaster up` again")

    def _schedule_restart(self, child: Child, code: int) -> None:
        """A part exited: restart it after the backoff, and say when."""
        now = time.monotonic()
        ran = now - child.started_at
        child.failures = 1 if ran >= self.backoff.stable_after else child.failures + 1
        child.restarts += 1
        child.last_exit = code
        delay = self.backoff.delay(child.failures)
        child.next_try, child.next_try_wall = now + delay, time.time() + delay
        at = time.strftime("%H:%M:%S", time.localtime(child.next_try_wall))
        self.say(f"{child.name} exited with code {code} after {ran:.0f}s; restarting in {delay:g}s "
                 f"(next try at {at}, restart {child.restarts}); the other parts keep running")
        self.publish()

    def _exited(self, child: Child) -> int | None:
        """The exit code of a child that has exited and is not already waiting for a restart."""
        if child.dropped or child.next_try is not None or child.proc is None:
            return None
        return child.proc.poll()

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if not child.dropped and child.next_try is not None and now >= child.next_try and not self.stopping:
                self.start(child)

    def publish(self) -> None:
        """Write every part's state for the API (best effort: a full disk must not stop ``up``)."""
        if self.state_file is None:
            return
        states = {}
        for c in self.children:
            if c.dropped:
                state = parts.LEFT_OUT
            elif c.next_try is not None:
                state = parts.RESTARTING
            elif self.stopping:
                state = parts.STOPPED
            else:
                state = parts.RUNNING
            states[c.name] = parts.PartState(
                state, c.restarts, c.last_exit, _utc(c.next_try_wall) if c.next_try_wall is not None else None)
        try:
            parts.write(self.state_file, states)
        except OSError:
            pass

    def wait_ready(self) -> bool:
        """Wait until every child serves; False (after saying why, once) if a required one can't:
        it stopped on its configuration, or it did not serve within ``ready_timeout`` (a part
        that exits for another reason is restarted with the backoff meanwhile)."""
        deadline = time.monotonic() + self.ready_timeout
        while not self.stopping:
            waiting = False
            self._restart_due()
            for child in self.children:
                if child.ready or child.dropped:
                    continue
                if child.next_try is not None:
                    waiting = True
                    continue
                code = self._exited(child)
                if code is not None:
                    if not child.required:
                        self._drop(child, f"could not start (exit code {code}; its message is above)")
                        continue
                    if code == EXIT_CONFIG:
                        self._config_stop(child, code)
                        return False
                    self._schedule_restart(child, code)
                    waiting = True
                    continue
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
                    names = ", ".join(
                        c.name + (f" (exits with code {c.last_exit}; its message is above)"
                                  if c.last_exit is not None else "")
                        for c in late if c.required)
                    self.say(f"{names} did not start within {self.ready_timeout:g}s; stopping")
                    return False
                return True
            time.sleep(0.1)
        return False

    def run(self, on_ready: Callable[[list[Child]], None] | None = None) -> int:
        """Start every child; call ``on_ready`` with the ones that serve once they all do; then
        restart any that exits, with a growing pause (see :class:`Backoff`), until Ctrl-C — the
        others keep running meanwhile. 0 after a clean stop, 1 if a required child could not
        start (its configuration refused, or not serving in time) or later exits on its
        configuration."""
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
            time.sleep(self.tick)
            self._restart_due()
            for child in self.children:
                exit_code = self._exited(child)
                if exit_code is None or self.stopping:
                    continue
                if exit_code == EXIT_CONFIG:
                    if not child.required:
                        self._drop(child, f"stopped on its configuration (exit code {exit_code})")
                        continue
                    self._config_stop(child, exit_code)
                    self.stopping, code = True, 1
                    break
                self._schedule_restart(child, exit_code)
        self.shutdown()
        return code

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def shutdown(self, grace: float = 10.0) -> None:
        for child in self.children:
            child.next_try = child.next_try_wall = None
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            if child.proc:
                try:
                    child.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.proc.kill()
        if self.state_file is not None:
            try:
                self.state_file.unlink(missing_ok=True)
            except OSError:
                pass


def child_env(redis_url: str, parts_file: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    if parts_file is not None:
        env[parts.ENV] = str(parts_file.resolve())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
