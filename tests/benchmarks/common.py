"""Shared plumbing for the benchmarks: private services on loopback, the fast stand-ins, the
worker/scheduler/API launchers, profiling with py-spy, tables and JSON.

Everything here runs on 127.0.0.1 only and every process started is registered with a
:class:`Procs` so it is stopped (by its own pid) when the benchmark ends, even on error.

The launchers are also entry points, run as separate processes::

    python -m tests.benchmarks.common standin PORT          # fast HTTP stand-in (keep-alive)
    python -m tests.benchmarks.common smtpsink PORT         # fast SMTP sink
    python -m tests.benchmarks.common worker SETTINGS.json [-c N] [--raw]
    python -m tests.benchmarks.common scheduler SETTINGS.json
    python -m tests.benchmarks.common api SETTINGS.json PORT

``worker``/``scheduler``/``api`` do exactly what ``broadcaster worker|scheduler|api`` do
(``tasks.create_app`` + ``worker_main``, ``scheduler.run``, ``api.create_app`` under uvicorn),
but read the settings from JSON instead of YAML so a 100,000-recipient config loads in a blink.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "var" / "bench"
PY = sys.executable
PG_ADMIN_URL = os.environ.get("BROADCASTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


# ---------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def pct(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    xs = sorted(values)
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, round(q / 100.0 * len(xs) + 0.5) - 1))
    return xs[k]


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f} ms"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0, 0, 0)
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_mb": mem, "python": platform.python_version(),
            "kernel": platform.release(), "load_at_start": [round(x, 2) for x in load]}


def table(title: str, headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    out = [title, line, "  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=False)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in cells[1:]]
    out.append(line)
    text = "\n".join(out)
    print(text, flush=True)
    return text


def write_json(name: str, data: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    data = {"benchmark": name, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **data}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {path.relative_to(ROOT)}", flush=True)
    return path


def rss_peak_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time (user + system, all threads) used so far by these processes and their children
    that are still running (``broadcaster api --workers N`` runs N children): what a phase cost
    in CPU, whatever else the machine was doing meanwhile."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # the command name (field 2) may hold spaces: split after its closing parenthesis
                stats[int(entry.name)] = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
    wanted, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid in stats and pid not in wanted:
            wanted.add(pid)
            todo += [c for c, f in stats.items() if int(f[1]) == pid]
    return sum(int(stats[p][11]) + int(stats[p][12]) for p in wanted) / tick


def log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- processes


class Procs:
    """Every process a benchmark starts; ``stop_all`` ends them by their own pid."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.items: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        logf = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child process writes it for its whole life
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "BROADCASTER_LOG_FORMAT": "text", **(env or {})}
        proc = subprocess.Popen(args, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=True)
        logf.close()
        self.items.append((name, proc))
        return proc

    def py(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.start(name, [PY, "-m", "tests.benchmarks.common", *args], env=env)

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> None:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass
        self.items = [(n, p) for n, p in self.items if p is not proc]

    def stop_all(self) -> None:
        for _name, proc in reversed(list(self.items)):
            self.stop(proc)

    def tail(self, name: str, lines: int = 20) -> str:
        try:
            return "\n".join((self.workdir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Bench:
    """A workdir, a process registry and a private Redis, torn down by ``close``."""

    def __init__(self, name: str):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"bc-bench-{name}-"))
        self.procs = Procs(self.dir)
        self.redis_port = None
        self._cleanups: list[Callable[[], None]] = []

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.redis_port = free_port()
        proc = self.procs.start("redis", [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                          "--dir", str(self.dir), "--save", "", "--appendonly", "no"])
        wait_port(self.redis_port, proc=proc)
        return self.redis_url

    def on_close(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def close(self) -> None:
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - tear down as much as possible
                print(f"cleanup: {exc}", file=sys.stderr)
        self.procs.stop_all()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- configuration

    def write_settings(self, data: dict[str, Any], name: str = "settings") -> Path:
        path = self.dir / f"{name}.json"
        path.write_text(json.dumps(data))
        return path


def settings_data(ledger: str, redis_url: str, channels: dict[str, Any], *, policy: dict | None = None,
                  routes: dict | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "ledger": ledger,
        "broker": redis_url,
        "public_url": "http://127.0.0.1:8080",
        "channels": channels,
        "routes": routes or {"incident": list(channels)},
        "policy": policy or {"defaults": {"attempts": 8, "backoff": {"base": "1s", "max": "60s"}, "timeout": "10s"}},
        **extra,
    }


def load(path: Path | str):
    from broadcaster.config import load_settings

    return load_settings(json.loads(Path(path).read_text()), env={})


# ---------------------------------------------------------------- PostgreSQL


def pg_create() -> tuple[str, Callable[[], None]]:
    """A fresh database on the loopback PostgreSQL; returns (url, drop)."""
    import psycopg

    name = f"bc_bench_{os.getpid()}_{int(time.time())}"
    admin = PG_ADMIN_URL
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return admin.rsplit("/", 1)[0] + f"/{name}", drop


# ---------------------------------------------------------------- the HTTP stand-in


_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"
_DOWN = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"ok\":\"false\"}\n"


def _run_fast(coro) -> None:
    """Run a stand-in's loop on uvloop when it is installed (it comes with ``uvicorn[standard]``):
    the stand-in shares the machine's cores with what is measured, and the less CPU it takes per
    request, the closer the comparison is to a receiver on a machine of its own."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def _standin_main(port: int) -> None:
    """A deliberately minimal HTTP/1.1 server (keep-alive, Content-Length bodies) that answers
    every POST at once and records (time, status, path, webhook-id). ``/_stats?from=i``,
    ``/_ids`` (each webhook-id answered 200, with how often), ``/_status/<code>`` and
    ``/_reset`` control it."""
    arrivals: list[tuple[float, int, str]] = []
    ids: collections.Counter = collections.Counter()
    mode = {"status": 200}

    def control(path: str) -> bytes:
        if path.startswith("/_ids"):
            body = json.dumps(ids).encode()
        elif path.startswith("/_stats"):
            start = int(path.partition("from=")[2] or 0)
            ok = sum(1 for a in arrivals if a[1] == 200)
            body = json.dumps({"count": len(arrivals), "ok": ok, "unique": len(ids),
                               "dupes": sum(n - 1 for n in ids.values() if n > 1),
                               "arrivals": arrivals[start:]}).encode()
        elif path.startswith("/_status/"):
            mode["status"] = int(path.rsplit("/", 1)[1])
            body = b"{}"
        elif path.startswith("/_reset"):
            arrivals.clear()
            ids.clear()
            body = b"{}"
        else:
            body = b"{}"
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                parts = lines[0].split(b" ")
                path = parts[1].decode() if len(parts) > 1 else "/"
                clen, wid, close = 0, None, False
                for raw in lines[1:]:
                    k, _, v = raw.partition(b":")
                    k = k.strip().lower()
                    if k == b"content-length":
                        clen = int(v)
                    elif k == b"webhook-id":
                        wid = v.strip().decode()
                    elif k == b"connection" and v.strip().lower() == b"close":
                        close = True
                if clen:
                    await reader.readexactly(clen)
                if path.startswith("/_"):
                    writer.write(control(path))
                else:
                    status = mode["status"]
                    arrivals.append((time.time(), status, path))
                    if status == 200:
                        if wid:
                            ids[wid] += 1
                        writer.write(_OK)
                    else:
                        writer.write(_DOWN)
                if close:
                    await writer.drain()
                    break
                if writer.transport.get_write_buffer_size() > 65536:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024, limit=1 << 20)
        async with server:
            await server.serve_forever()

    _run_fast(main())


class StandIn:
    """Client side of the stand-in process."""

    def __init__(self, bench: Bench):
        import httpx

        self.port = free_port()
        self.proc = bench.procs.py("standin", "standin", str(self.port))
        wait_port(self.port, proc=self.proc)
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.base, timeout=10)
        bench.on_close(self.http.close)
        self._seen = 0

    def url(self, hook: str) -> str:
        return f"{self.base}/hook/{hook}"

    def stats(self, start: int = 0) -> dict[str, Any]:
        return self.http.get(f"/_stats?from={start}").json()

    def ids(self) -> dict[str, int]:
        """Every ``webhook-id`` answered with 200 since the last reset, and how many times."""
        return self.http.get("/_ids").json()

    def count(self) -> int:
        return self.http.get("/_stats?from=999999999").json()["count"]

    def set_status(self, code: int) -> None:
        self.http.post(f"/_status/{code}")

    def reset(self) -> None:
        self.http.post("/_reset")


# ---------------------------------------------------------------- the SMTP sink


def _smtpsink_main(port: int) -> None:
    """A minimal SMTP server: EHLO/HELO (offering PIPELINING, as Postfix does), MAIL, RCPT, DATA,
    RSET, NOOP, QUIT and ``XCNT`` (answers ``250 <messages accepted>``). Replies to everything at
    once; stores nothing."""
    count = {"n": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP ready\r\n")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 end with <CRLF>.<CRLF>\r\n")
                    await reader.readuntil(b"\r\n.\r\n")
                    count["n"] += 1
                    writer.write(b"250 2.0.0 OK queued\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                elif verb == b"XCNT":
                    writer.write(b"250 %d\r\n" % count["n"])
                elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    writer.write(b"250 OK\r\n")
                else:
                    writer.write(b"502 command not implemented\r\n")
                if writer.transport.get_write_buffer_size() > 65536:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256, limit=1 << 24)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def smtp_count(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"XCNT\r\n")
        n = int(f.readline().split()[1])
        s.sendall(b"QUIT\r\n")
        return n


# ---------------------------------------------------------------- worker / scheduler / API


RAW_QUEUE = "bench.raw"


def _raw_task(app) -> None:
    """The baseline: a bare Celery task, one httpx POST per delivery, no ledger. Same Celery app
    settings (late acks, prefetch 1, json) and the same httpx client settings as the adapters,
    on httpx's own transport (httpcore) — what a plain Celery + httpx service would run, not
    the adapters' leaner one (``channels/_transport.py``)."""
    import httpx

    from broadcaster.channels._http import make_client

    client = make_client(10.0, transport=httpx.HTTPTransport(limits=httpx.Limits(max_connections=20,
                                                                                 max_keepalive_connections=10)))

    @app.task(name="bench.raw_post", ignore_result=True, shared=False)
    def raw_post(url: str, body: str, msg_id: str) -> int:
        resp = client.post(url, content=body.encode(), headers={"Content-Type": "application/json",
                                                                 "webhook-id": msg_id})
        resp.raise_for_status()
        return resp.status_code


def _worker_main(path: str, concurrency: int, raw: bool) -> None:
    from broadcaster.logs import configure
    from broadcaster.tasks import create_app

    configure("WARNING")
    settings = load(path)
    app = create_app(settings)
    argv = ["worker", "--loglevel=WARNING", "--pool=threads", f"--concurrency={concurrency}",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if raw:
        _raw_task(app)
        argv.append(f"--queues={RAW_QUEUE}")
    app.worker_main(argv=argv)


def _scheduler_main(path: str) -> None:
    import threading

    from broadcaster import scheduler as sched
    from broadcaster.logs import configure
    from broadcaster.runtime import Runtime
    from broadcaster.tasks import celery_enqueuer

    configure("WARNING")
    settings = load(path)
    runtime = Runtime.from_settings(settings, enqueuer=celery_enqueuer(settings))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sched.run(runtime, stop)


def _api_main(path: str, port: int) -> None:
    import uvicorn

    from broadcaster.asgi import create_app
    from broadcaster.logs import configure

    configure("WARNING")
    app = create_app(load(path))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=5,
                timeout_graceful_shutdown=5, proxy_headers=False, access_log=False)


def create_token(settings_path: Path, name: str) -> str:
    """A bearer token for the API, stored hashed in the settings' ledger (what ``broadcaster
    tokens create`` does); returns the raw token."""
    from broadcaster.ledger import Ledger
    from broadcaster.tokens import TokenStore

    settings = load(settings_path)
    led = Ledger.open(settings.ledger)
    try:
        raw, _info = TokenStore(led, settings).create(f"bench-{name}", actor="bench")
    finally:
        led.close()
    return raw


def start_api(bench: Bench, settings_path: Path, name: str, processes: int = 1) -> tuple[subprocess.Popen, int]:
    """The API on a free port: one uvicorn process (the ``api`` entry point below), or exactly
    what an operator runs for more, ``broadcaster api --workers N``. Returns (process, port)."""
    port = free_port()
    if processes == 1:
        proc = bench.procs.py(f"api-{name}", "api", str(settings_path), str(port))
    else:
        proc = bench.procs.start(f"api-{name}", [PY, "-m", "broadcaster", "--config", str(settings_path), "api",
                                                 "--host", "127.0.0.1", "--port", str(port),
                                                 "--workers", str(processes)])
    wait_port(port, timeout=30, proc=proc)
    time.sleep(0.5 * (processes - 1))  # let every process finish its start-up before load
    return proc, port


def post_announcements(port: int, token: str, payloads: list[dict[str, Any]], threads: int = 4,
                       tag: str = "run") -> dict[str, Any]:
    """``POST /api/v1/announcements`` for each payload from ``threads`` client threads (one
    kept-alive httpx client each, a unique Idempotency-Key per request), as a CI fleet would.
    Returns the ids accepted (202), the statuses, and the rate."""
    import threading

    import httpx

    ids: list[str] = []
    statuses: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def loop(tid: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            for i in range(tid, len(payloads), threads):
                resp = client.post("/api/v1/announcements", json=payloads[i],
                                   headers={"Idempotency-Key": f"{tag}-{i}"})
                with lock:
                    statuses[resp.status_code] += 1
                    if resp.status_code == 202:
                        ids.append(resp.json()["id"])

    t0 = time.monotonic()
    ths = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    took = time.monotonic() - t0
    return {"ids": ids, "accepted": len(ids), "statuses": dict(statuses), "seconds": round(took, 3),
            "accepted_per_s": round(len(ids) / took, 1) if took > 0 else None}


def wait_consumers(bench: Bench, n: int, procs: list[subprocess.Popen], timeout: float = 30.0) -> None:
    """Wait until ``n`` workers are consuming from the bench's Redis (each idle one sits in BRPOP)."""
    from tests.support.consumers import wait_consumers as wait

    wait(bench.redis_url, n, procs, timeout, where=str(bench.dir))


# ---------------------------------------------------------------- profiling


def pyspy_record(bench: Bench, pid: int, seconds: float, name: str) -> tuple[subprocess.Popen | None, Path]:
    """Start sampling ``pid`` for ``seconds`` (collapsed stacks); returns (process, output)."""
    (OUT / "profiles").mkdir(parents=True, exist_ok=True)
    out = OUT / "profiles" / f"{name}.collapsed"
    out.unlink(missing_ok=True)
    binary = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(binary).exists():
        return None, out
    proc = bench.procs.start(f"pyspy-{name}", [binary, "record", "-p", str(pid), "-d", str(int(max(1, seconds))),
                                               "-r", "100", "-f", "raw", "--nonblocking", "-o", str(out)])
    return proc, out


def pyspy_wait(proc: subprocess.Popen | None, timeout: float = 60.0) -> None:
    if proc is None:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(10)


def _frame_key(frame: str) -> str:
    # "function (path/to/file.py:123)" → "function (file.py)" but keep the package path short
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{name} ({file})"


def top_frames(collapsed: Path, n: int = 15, focus: str | None = None) -> dict[str, Any]:
    """Self and inclusive sample shares per function from a py-spy collapsed file."""
    if not collapsed.exists():
        return {"samples": 0, "self": [], "inclusive": [], "note": "no profile (py-spy unavailable)"}
    self_c: collections.Counter = collections.Counter()
    incl_c: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if " (" in f]
        if focus and not any(focus in f for f in frames):
            continue
        c = int(count)
        total += c
        if frames:
            self_c[_frame_key(frames[-1])] += c
        for key in {_frame_key(f) for f in frames}:
            incl_c[key] += c
    def share(cnt):
        return [[k, round(100.0 * v / total, 1)] for k, v in cnt.most_common(n)] if total else []
    return {"samples": total, "self": share(self_c), "inclusive": share(incl_c)}


def inclusive_of(collapsed: Path | None, names: Iterable[str]) -> dict[str, float]:
    """Share of samples (in %) whose stack contains a frame of each named function
    (``Class.method`` or ``function``, matched exactly on the function part of the frame)."""
    if collapsed is None or not collapsed.exists():
        return {}
    names = list(names)
    hits = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        funcs = {f.partition(" (")[0] for f in stack.split(";")}
        for n in names:
            if n in funcs:
                hits[n] += c
    return {n: round(100.0 * hits[n] / total, 1) if total else 0.0 for n in names}


def print_profile(title: str, prof: dict[str, Any], n: int = 12) -> None:
    print(f"{title}: {prof.get('samples', 0)} samples", flush=True)
    for label in ("self", "inclusive"):
        print(f"  top {label}:", flush=True)
        for name, share in prof.get(label, [])[:n]:
            print(f"    {share:5.1f}%  {name}", flush=True)
    if prof.get("breakdown"):
        print("  inclusive share of selected functions:", flush=True)
        for name, share in prof["breakdown"].items():
            print(f"    {share:5.1f}%  {name}", flush=True)


# ---------------------------------------------------------------- entry points


def _main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.common")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("standin")
    s.add_argument("port", type=int)
    s = sub.add_parser("smtpsink")
    s.add_argument("port", type=int)
    s = sub.add_parser("worker")
    s.add_argument("settings")
    s.add_argument("-c", "--concurrency", type=int, default=8)
    s.add_argument("--raw", action="store_true")
    s = sub.add_parser("scheduler")
    s.add_argument("settings")
    s = sub.add_parser("api")
    s.add_argument("settings")
    s.add_argument("port", type=int)
    a = p.parse_args(argv)
    if a.cmd == "standin":
        _standin_main(a.port)
    elif a.cmd == "smtpsink":
        _smtpsink_main(a.port)
    elif a.cmd == "worker":
        _worker_main(a.settings, a.concurrency, a.raw)
    elif a.cmd == "scheduler":
        _scheduler_main(a.settings)
    elif a.cmd == "api":
        _api_main(a.settings, a.port)


if __name__ == "__main__":
    _main()
