"""Event loop under a preview flood: ``/healthz`` latency while signed-in clients hammer the web
page's live preview (``POST /ui/preview``) with 20 kB texts for every channel of the demo
configuration, against the real API (``create_app`` under uvicorn, its own process).

Before issue 13 the preview rendered on the event loop, and two such loops made ``/healthz``
take 11.6 s. Now rendering runs in worker threads, two at a time per process
(``broadcaster/api/render_slots.py``), so the loop keeps answering. Printed: ``/healthz`` p50 /
p99 / max idle and under the flood, and previews answered per second.

    python -m tests.benchmarks.bench_event_loop [--quick] [--senders N] [--seconds S]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import yaml

from .common import ROOT, Bench, free_port, log, ms, pct, settings_data, table, wait_port, write_json

TOKEN = "bct_bench-event-loop-" + "x" * 24
BODY = ("Checkout is failing for some customers; **we are on it**. See https://status.example.com/x " * 250)[:20000]


def demo_channels() -> dict[str, Any]:
    """The demo configuration's channels (every provider kind), unchanged."""
    return yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["channels"]


def healthz_series(url: str, seconds: float, gap: float = 0.05) -> list[float]:
    out: list[float] = []
    end = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=60) as c:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            c.get("/healthz").raise_for_status()
            out.append(time.perf_counter() - t0)
            time.sleep(gap)
    return out


def sign_in(url: str) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=url, timeout=120, follow_redirects=True)
    pre = re.search(r'name="csrf" value="([^"]*)"', c.get("/signin").text)
    assert pre, "no sign-in form"
    c.post("/signin", data={"csrf": pre.group(1), "token": TOKEN}).raise_for_status()
    csrf = re.search(r'name="csrf" value="([^"]*)"', c.get("/compose").text)
    assert csrf, "not signed in"
    return c, csrf.group(1)


def summary(xs: list[float]) -> dict[str, Any]:
    return {"n": len(xs), "p50_s": pct(xs, 50), "p99_s": pct(xs, 99), "max_s": max(xs) if xs else None}


def run(quick: bool = False, senders: int | None = None, seconds: float | None = None) -> dict[str, Any]:
    senders = senders or (2 if quick else 4)
    seconds = seconds or (5.0 if quick else 15.0)
    with Bench("event-loop") as bench:
        redis_url = bench.start_redis()
        channels = demo_channels()
        data = settings_data(f"sqlite:///{bench.dir}/ledger.db", redis_url, channels,
                             tokens=[{"name": "bench", "hash": "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest(),
                                      "admin": True}],
                             api={"rate_limit": "1000000/1m", "anonymous_rate_limit": "1000000/1m"})
        port = free_port()
        proc = bench.procs.py("api", "api", str(bench.write_settings(data)), str(port))
        wait_port(port, proc=proc, timeout=60)
        url = f"http://127.0.0.1:{port}"
        idle = healthz_series(url, 2.0)
        client, csrf = sign_in(url)
        body = {"kind": "incident", "title": "Checkout errors", "body": BODY, "channels": list(channels)}
        stop = threading.Event()
        answered: list[float] = []

        def send() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                r = client.post("/ui/preview", json=body, headers={"X-CSRF-Token": csrf})
                r.raise_for_status()
                answered.append(time.perf_counter() - t0)

        log(f"flooding /ui/preview from {senders} threads for {seconds:g} s ({len(channels)} channels, 20 kB)")
        with ThreadPoolExecutor(senders) as pool:
            futures = [pool.submit(send) for _ in range(senders)]
            time.sleep(0.5)
            try:
                loaded = healthz_series(url, seconds)
            finally:
                stop.set()
            for f in futures:
                f.result()
        result = {"params": {"senders": senders, "seconds": seconds, "channels": len(channels),
                             "body_chars": len(BODY)},
                  "healthz_idle": summary(idle), "healthz_under_flood": summary(loaded),
                  "previews": {**summary(answered), "per_s": round(len(answered) / (seconds + 0.5), 2)},
                  "targets": {"healthz_max<=1s": (max(loaded) if loaded else 99) <= 1.0}}
    rows = [["/healthz idle", ms(result["healthz_idle"]["p50_s"]), ms(result["healthz_idle"]["p99_s"]),
             ms(result["healthz_idle"]["max_s"]), result["healthz_idle"]["n"]],
            ["/healthz under flood", ms(result["healthz_under_flood"]["p50_s"]),
             ms(result["healthz_under_flood"]["p99_s"]), ms(result["healthz_under_flood"]["max_s"]),
             result["healthz_under_flood"]["n"]],
            [f"/ui/preview ({result['previews']['per_s']}/s)", ms(result["previews"]["p50_s"]),
             ms(result["previews"]["p99_s"]), ms(result["previews"]["max_s"]), result["previews"]["n"]]]
    table(f"event loop: {senders} preview senders, {len(BODY)} chars x {result['params']['channels']} channels",
          ["request", "p50", "p99", "max", "n"], rows)
    write_json("event_loop", result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_event_loop", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--senders", type=int)
    p.add_argument("--seconds", type=float)
    a = p.parse_args(argv)
    run(a.quick, a.senders, a.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
