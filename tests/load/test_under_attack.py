"""Under attack (the "under attack" guarantee, docs/reliability.md): the real API, served by uvicorn in its own process
(``broadcaster api``) with its rate limits in a real Redis, is flooded on loopback with junk —
requests without a token, with guessed tokens, and from a valid but over-eager token — while a
legitimate client posts one announcement a second.

Promise checked: every legitimate post is accepted (202) and its latency is reported (p50, p99,
max); junk is refused (401/429, never 5xx) at a reported rate; the server's memory (VmRSS)
stays bounded. Length: ``BROADCASTER_ATTACK_SECONDS`` (default 30, CI 10); raise it for a soak.

Redis: a dedicated database number of the shared server (``ATTACK_DB``), emptied before and
after. The generator is bounded (a fixed number of concurrent connections) and loopback only.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import IN_CI, free_port

pytestmark = [pytest.mark.slow, pytest.mark.redis]

SECONDS = float(os.environ.get("BROADCASTER_ATTACK_SECONDS", "10" if IN_CI else "30"))
ATTACK_DB = 13
CONCURRENCY = 48  # junk connections in flight at once
RSS_GROWTH_LIMIT_MB = 150
LEGIT_TOKEN = "legit-ops-token-5d41402abc4b2a76b9719d911017c592"
NOISY_TOKEN = "noisy-ci-token-7d793037a0760186574b0282f2f435e7"


def _hash(raw: str) -> str:
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Server:
    """``broadcaster api`` on a free loopback port, in a subprocess we can measure."""

    def __init__(self, tmp_path: Path, redis_url: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url
        cfg = {
            "ledger": f"sqlite:///{tmp_path}/ledger.db",
            "broker": redis_url,
            "public_url": "https://status.example.test",
            "channels": {"hook": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"},
                         "chat": {"kind": "webhook", "format": "slack", "url": "http://127.0.0.1:9/chat"}},
            "routes": {"incident": ["hook", "chat"], "deploy": ["chat"]},
            "tokens": [{"name": "ops-legit", "hash": _hash(LEGIT_TOKEN), "kinds": ["incident"]},
                       {"name": "ci-noisy", "hash": _hash(NOISY_TOKEN), "kinds": ["deploy"]}],
            "api": {"max_body_bytes": 16384, "rate_limit": "120/m", "anonymous_rate_limit": "30/m"},
        }
        self.config = tmp_path / "attack.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - the server writes it until stop() closes it
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        exe = Path(sys.executable).with_name("broadcaster")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "broadcaster"]
        self.proc = subprocess.Popen([*cmd, "--config", str(self.config), "api", "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "BROADCASTER_LOG_FORMAT": "text"})
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the API exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the API did not start within 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def _empty(client) -> None:
    for key in client.scan_iter(count=1000):
        client.delete(key)


@pytest.fixture(scope="module")
def attack_redis(shared_redis_url):
    import redis

    base = shared_redis_url.rsplit("/", 1)[0]
    url = f"{base}/{ATTACK_DB}"
    client = redis.Redis.from_url(url)
    _empty(client)
    yield url
    _empty(client)
    client.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, attack_redis):
    s = Server(tmp_path_factory.mktemp("attack"), attack_redis).start()
    yield s
    s.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _flood(url: str, seconds: float) -> dict:
    import httpx

    junk_kinds = [
        ("POST", "/api/v1/announcements", {}, {"kind": "incident", "title": "junk"}),  # no token
        ("GET", "/api/v1/announcements", {"Authorization": "Bearer bct_guessed-token-000"}, None),  # guessed
        ("POST", "/api/v1/announcements", {"Authorization": "Bearer " + "x" * 40}, {"kind": "incident", "title": "j"}),
        ("POST", "/api/v1/announcements", {"Authorization": f"Bearer {NOISY_TOKEN}"},
         {"kind": "deploy", "title": "again and again"}),  # valid, over its limit
        ("GET", "/api/v1/channels", {"Authorization": f"Bearer {NOISY_TOKEN}"}, None),
    ]
    junk: dict = {"sent": 0, "by_status": {}, "errors": 0}
    legit: dict = {"latencies": [], "statuses": [], "errors": []}
    stop_at = time.monotonic() + seconds

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    legit_limits = httpx.Limits(max_connections=int(seconds) + 5)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as junk_client, \
            httpx.AsyncClient(base_url=url, timeout=30, limits=legit_limits) as legit_client:

        async def attacker(i: int) -> None:
            n = i
            while time.monotonic() < stop_at:
                method, path, headers, body = junk_kinds[n % len(junk_kinds)]
                n += 1
                try:
                    r = await junk_client.request(method, path, headers=headers, json=body)
                    junk["by_status"][r.status_code] = junk["by_status"].get(r.status_code, 0) + 1
                except httpx.HTTPError:
                    junk["errors"] += 1
                junk["sent"] += 1

        async def post_once(i: int) -> None:
            started = time.perf_counter()
            try:
                r = await legit_client.post("/api/v1/announcements",
                                            json={"kind": "incident", "title": f"Real incident {i}",
                                                  "body": "Still investigating."},
                                            headers={"Authorization": f"Bearer {LEGIT_TOKEN}",
                                                     "Idempotency-Key": f"legit-{i}"})
                legit["latencies"].append(time.perf_counter() - started)
                legit["statuses"].append(r.status_code)
            except httpx.HTTPError as exc:
                legit["errors"].append(type(exc).__name__)

        async def legitimate() -> None:
            """One post a second, on the clock: a slow answer does not delay the next post."""
            posts, i, next_at = [], 0, time.monotonic()
            while next_at < stop_at:
                i += 1
                posts.append(asyncio.create_task(post_once(i)))
                next_at += 1.0
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*posts)

        started = time.monotonic()
        await asyncio.gather(legitimate(), *(attacker(i) for i in range(CONCURRENCY)))
        elapsed = time.monotonic() - started
    return {"junk": junk, "legit": legit, "elapsed": elapsed}


def test_legitimate_posts_flow_while_junk_floods_the_intake(server):
    import httpx

    pid = server.proc.pid
    # warm up (imports, first ledger and Redis connections) before the memory baseline
    for _ in range(20):
        httpx.get(server.url + "/api/v1/channels", headers={"Authorization": "Bearer nope"})
    baseline = rss_kb(pid)
    samples = [baseline]
    done = False

    import threading

    def sample() -> None:
        while not done:
            try:
                samples.append(rss_kb(pid))
            except (OSError, AssertionError):
                return
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = asyncio.run(_flood(server.url, SECONDS))
    finally:
        done = True
        sampler.join(2)
    assert server.proc.poll() is None, "the API died under the flood"

    legit, junk = result["legit"], result["junk"]
    lat_ms = [x * 1000 for x in legit["latencies"]]
    refused = sum(v for k, v in junk["by_status"].items() if k in (401, 429))
    peak = max(samples)
    print(f"\nunder attack: {result['elapsed']:.1f} s, {CONCURRENCY} junk connections; "
          f"junk sent {junk['sent']} ({junk['sent'] / result['elapsed']:.0f}/s), refused 401/429 {refused} "
          f"({refused / result['elapsed']:.0f}/s), by status {dict(sorted(junk['by_status'].items()))}, "
          f"client errors {junk['errors']}; legitimate posts {len(legit['statuses'])}: "
          f"{legit['statuses'].count(202)} × 202, latency p50 {statistics.median(lat_ms):.1f} ms, "
          f"p99 {percentile(lat_ms, 0.99):.1f} ms, max {max(lat_ms):.1f} ms; server RSS {baseline / 1024:.1f} MB → "
          f"peak {peak / 1024:.1f} MB (+{(peak - baseline) / 1024:.1f} MB)")

    assert not legit["errors"], legit["errors"]
    assert len(legit["statuses"]) >= int(SECONDS)
    assert set(legit["statuses"]) == {202}, legit["statuses"]
    # the flood must outnumber the real posts many times over (its rate depends on the machine)
    assert junk["sent"] > 10 * len(legit["statuses"]), "the flood was too thin to prove anything"
    assert not [s for s in junk["by_status"] if s >= 500], junk["by_status"]
    assert set(junk["by_status"]) <= {401, 429, 200, 202}, junk["by_status"]
    # the noisy token gets its 120 per minute (a sliding window), then 429; other junk is refused.
    # Generous bound: a 30 s run once admitted 232 against a theoretical 180 (not reproduced with the
    # limiter alone — see docs/reliability.md); the point here is that the flood is throttled.
    allowance = 120 * (SECONDS / 60 + 1)
    admitted = junk["by_status"].get(200, 0) + junk["by_status"].get(202, 0)
    print(f"noisy token admitted {admitted} (allowance {allowance:.0f})")
    assert admitted <= 2 * allowance
    assert junk["by_status"].get(429, 0) > 0 and junk["by_status"].get(401, 0) > 0
    assert (peak - baseline) / 1024 < RSS_GROWTH_LIMIT_MB


def test_every_legitimate_post_is_in_the_ledger(server):
    from broadcaster.ledger import Ledger

    cfg = yaml.safe_load(server.config.read_text())
    ledger = Ledger.open(cfg["ledger"], migrate_schema=False)
    try:
        items = ledger.list_announcements(limit=200, kind="incident")
        titles = {a.title for a in items}
        legit = {t for t in titles if t.startswith("Real incident")}
        assert legit and "junk" not in titles and "j" not in titles
        assert all(len(ledger.deliveries_of(a.id)) == 2 for a in items)
    finally:
        ledger.close()


def test_huge_headers_are_refused_and_the_server_stays_up(server):
    """Header size is the HTTP server's job (h11/httptools limits): a 100 KB header or 2,000
    headers never reach the app — the connection gets a 4xx or is closed — and nothing is written."""
    import httpx

    def raw(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            try:
                s.sendall(request)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                return b""  # the server closed on us mid-send: refused too
            chunks = []
            try:
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            except OSError:
                pass
            return b"".join(chunks)

    body = b'{"kind": "incident", "title": "via huge header"}'
    head = (f"POST /api/v1/announcements HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {LEGIT_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n").encode()
    for extra in (b"X-Junk: " + b"j" * 100_000 + b"\r\n", b"".join(b"X-H%d: v\r\n" % i for i in range(2000))):
        answer = raw(head + extra + b"\r\n" + body)
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
        assert status is None or 400 <= status < 500, answer[:300]
    assert httpx.get(server.url + "/healthz").status_code == 200
    r = httpx.get(server.url + "/api/v1/announcements", headers={"Authorization": f"Bearer {LEGIT_TOKEN}"})
    assert "via huge header" not in r.text
