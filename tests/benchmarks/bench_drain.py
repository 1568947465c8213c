"""The worker's drain in one process: wall and CPU time per delivery of ``drain.drain`` over a real
ledger (SQLite in a temporary directory and, when it answers, PostgreSQL) and the real signed
webhook adapter answered by ``httpx.MockTransport`` — no broker, no network, no other process:
what the drain itself costs (claims, start marks, outcomes, rendering, signing).

``-n`` announcements to one channel are accepted first, then drained in batches of
``worker.batch`` (8); each figure is the best of ``--rounds`` fresh ledgers (the machine is
shared; the best run is the least disturbed one).

    python -m tests.benchmarks.bench_drain [-n 400] [--rounds 3] [--no-postgres]
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

import httpx

from broadcaster import drain, service
from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from tests.benchmarks.scratch_ledgers import postgres_url, sqlite_url
from tests.support.runtime import memory_runtime


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def once(url: str, n: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per delivery of draining ``n`` due deliveries."""
    settings = load_settings({"channels": {"hook": {"kind": "webhook", "format": "generic",
                                                    "url": "https://hooks.example/bench",
                                                    "secret": "whsec_YmVuY2gtc2VjcmV0"}},
                              "worker": {"batch": 8}}, env={})
    ledger = Ledger.open(url)
    http = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(200, json={"ok": True})))
    rt = memory_runtime(settings, ledger=ledger, http=http)
    try:
        for i in range(n):
            service.submit(rt, {"kind": "incident", "title": f"bench {i}", "body": "b", "channels": ["hook"]},
                           principal=service.SYSTEM)
        wall, cpu, done = time.perf_counter(), _cpu(), 0
        while (report := drain.drain(rt, "hook", owner="bench", budget=1e9)).claimed:
            done += report.claimed
        assert done == n, f"drained {done} of {n}"
        return (time.perf_counter() - wall) / n * 1000, (_cpu() - cpu) / n * 1000
    finally:
        rt.close()
        http.close()
        ledger.close()


def measure(make_url: Callable[[], Any], n: int, rounds: int) -> dict[str, float]:
    runs = []
    for _ in range(rounds):
        with make_url() as url:
            runs.append(once(url, n))
    return {"wall_ms": round(min(w for w, _ in runs), 3), "cpu_ms": round(min(c for _, c in runs), 3)}


def run(quick: bool = False, *, n: int | None = None, rounds: int = 3, postgres: bool = True) -> dict[str, dict]:
    n = n or (100 if quick else 400)
    logging.disable(logging.WARNING)  # a log line per delivery would be most of what is measured
    try:
        out = {"SQLite": measure(sqlite_url, n, rounds)}
        if postgres:
            try:
                out["PostgreSQL"] = measure(postgres_url, n, rounds)
            except Exception as exc:  # noqa: BLE001 - a laptop without PostgreSQL still gets the SQLite figures
                print(f"PostgreSQL skipped: {type(exc).__name__}: {exc}")
    finally:
        logging.disable(logging.NOTSET)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-postgres", action="store_true")
    a = p.parse_args(argv)
    res = run(n=a.n, rounds=a.rounds, postgres=not a.no_postgres)
    print(f"drain of {a.n} deliveries, ms per delivery (best of {a.rounds})")
    for db, r in res.items():
        print(f"{db:12} wall {r['wall_ms']:8.3f}   worker CPU {r['cpu_ms']:8.3f}")


if __name__ == "__main__":
    main()
