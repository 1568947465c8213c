"""The fan-out end to end **through the HTTP API**, against the bare Celery floor and Apprise in
the same run: the shape the issue's acceptance benchmark has.

N announcements × K signed generic webhooks to the fast loopback stand-in, posted by 4 client
threads to one API process (uvicorn) on a SQLite ledger, delivered by one worker process with
8 threads. Deliveries/s from the first POST to the last delivery recorded, next to:

- the bare Celery task (same broker, same Celery settings: late acks, prefetch 1, 8 threads),
  one httpx POST per delivery, published as fast as one thread can;
- Apprise in-process, one sequential ``notify()`` per announcement to K ``json://`` URLs.

Rounds alternate the three so a machine that gets busier half-way spoils no comparison.
Then the idle latency through the API: one announcement at a time, POST → first channel
delivered and → all channels delivered (p50/p99). The stand-in's ``webhook-id``s are checked
against the ledger after every system round: each delivery once, none missing.

    python -m tests.benchmarks.bench_api_fanout [--quick] [-n 300] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from .bench_apprise import apprise_run
from .bench_fanout import Rig
from .common import Bench, cpu_seconds, log, ms, pct, table, write_json

NAME = "api_fanout"


def system_round(rig: Rig, n: int, threads: int, timeout: float, tag: str) -> dict[str, Any]:
    rig.start_workers(raw=False)
    rig.standin.reset()
    cpu0 = cpu_seconds(p.pid for p in rig.procs), cpu_seconds([rig.api_proc.pid])
    t0 = time.time()
    posted = rig.post(n, tag, threads)
    done, last, bad = rig.wait_delivered(t0, posted["accepted"] * rig.k, timeout, poll=0.05)
    wall = (last or time.time()) - t0
    cpu1 = cpu_seconds(p.pid for p in rig.procs), cpu_seconds([rig.api_proc.pid])
    check = rig.exactly_once(t0)
    return {"deliveries": n * rig.k, "delivered": done, "not_delivered": bad, "wall_s": round(wall, 3),
            "deliveries_per_s": round(done / wall, 1) if wall > 0 else None,
            "intake_per_s": posted["accepted_per_s"], "statuses": posted["statuses"],
            "worker_cpu_ms_per_delivery": round(1000 * (cpu1[0] - cpu0[0]) / max(1, done), 3),
            "api_cpu_ms_per_announcement": round(1000 * (cpu1[1] - cpu0[1]) / max(1, posted["accepted"]), 3),
            "duplicates": check["duplicates"], "missing": check["missing"], "unexpected": check["unexpected"]}


def latency(rig: Rig, m: int) -> dict[str, Any]:
    """One announcement at a time through the API: POST → first / all channels delivered."""
    import httpx

    if rig.mode != "system":  # a worker just (re)started: warm it as a running system is warm
        rig.start_workers(raw=False)
        rig.post(10, "latency-warm", 2)
        time.sleep(1.0)
    first, allc = [], []
    with httpx.Client(base_url=f"http://127.0.0.1:{rig.api_port}", timeout=10,
                      headers={"Authorization": f"Bearer {rig.api_token}"}) as client:
        for i in range(m):
            time.sleep(0.1)
            t0 = time.time()
            resp = client.post("/api/v1/announcements", json={"kind": "incident", "title": f"latency #{i}",
                                                              "body": "one at a time", "severity": "minor"})
            resp.raise_for_status()
            ds = rig.settled(resp.json()["id"], 10 - (time.time() - t0))
            if ds:
                first.append(min(d.settled_at for d in ds) - t0)
                allc.append(max(d.settled_at for d in ds) - t0)
    return {"samples": len(first), "first_p50": pct(first, 50), "first_p99": pct(first, 99),
            "all_p50": pct(allc, 50), "all_p99": pct(allc, 99)}


def run(quick: bool = False, n: int | None = None, k: int = 4, rounds: int | None = None, threads: int = 4,
        concurrency: int = 8, m: int | None = None) -> dict[str, Any]:
    n = n or (60 if quick else 300)
    rounds = rounds or (1 if quick else 2)
    m = m or (10 if quick else 40)
    timeout = 30 if quick else 90
    try:
        import apprise  # noqa: F401
        have_apprise = True
    except ImportError:
        have_apprise = False
    print(f"\n== fan-out through the API: {n} announcements × {k} signed webhooks, {threads} client threads, "
          f"1 API process, 1 worker × {concurrency} threads, SQLite; {rounds} round(s) ==", flush=True)
    res: dict[str, Any] = {"params": {"n": n, "k": k, "rounds": rounds, "client_threads": threads,
                                      "concurrency": concurrency, "ledger": "sqlite", "latency_samples": m},
                           "rounds": []}
    with Bench(NAME) as bench:
        rig = Rig(bench, k, 1, concurrency, extra={"api": {"rate_limit": "10000000/1s"}})
        rig.start_api(1)
        rig.start_workers(raw=False)
        rig.post(10, "warm", threads)  # runtime built, connections open, code loaded (not measured)
        time.sleep(1.0)
        for r in range(rounds):
            one: dict[str, Any] = {}
            order = ["bare", "apprise", "system"] if r % 2 == 0 else ["system", "apprise", "bare"]
            for what in order:
                log(f"round {r + 1}: {what}")
                if what == "bare":
                    one["bare"] = rig.raw_throughput(n, timeout, f"r{r}")
                elif what == "apprise":
                    one["apprise"] = apprise_run(rig.standin, n, k, 1, f"r{r}") if have_apprise else None
                else:
                    one["system"] = system_round(rig, n, threads, timeout, f"r{r}")
            s, b, a = one["system"], one["bare"], one["apprise"]
            one["ratio_vs_bare"] = round(s["deliveries_per_s"] / b["deliveries_per_s"], 3) \
                if b["deliveries_per_s"] else None
            one["ratio_vs_apprise"] = round(s["deliveries_per_s"] / a["deliveries_per_s"], 3) \
                if a and a["deliveries_per_s"] else None
            res["rounds"].append(one)
            log(f"  system {s['deliveries_per_s']}/s (intake {s['intake_per_s']}/s), bare {b['deliveries_per_s']}/s, "
                f"apprise {a['deliveries_per_s'] if a else '-'}/s → ×{one['ratio_vs_bare']} bare, "
                f"×{one['ratio_vs_apprise']} apprise")
        log("idle latency through the API")
        res["latency"] = latency(rig, m)
        rig.stop_workers()
    vb = [x["ratio_vs_bare"] for x in res["rounds"] if x["ratio_vs_bare"]]
    va = [x["ratio_vs_apprise"] for x in res["rounds"] if x["ratio_vs_apprise"]]
    res["ratio_vs_bare_median"] = round(statistics.median(vb), 3) if vb else None
    res["ratio_vs_apprise_median"] = round(statistics.median(va), 3) if va else None
    lat = res["latency"]
    clean = all(x["system"]["duplicates"] == 0 and x["system"]["missing"] == 0 for x in res["rounds"])
    res["targets"] = {"system>=bare": bool(res["ratio_vs_bare_median"] and res["ratio_vs_bare_median"] >= 1.0),
                      "system>=apprise": bool(res["ratio_vs_apprise_median"] and res["ratio_vs_apprise_median"] >= 1.0),
                      "p99_first<=100ms": bool(lat["first_p99"] is not None and lat["first_p99"] <= 0.1),
                      "p99_all<=250ms": bool(lat["all_p99"] is not None and lat["all_p99"] <= 0.25),
                      "exactly_once": clean}
    rows = []
    for i, x in enumerate(res["rounds"], 1):
        s = x["system"]
        rows.append([i, x["bare"]["deliveries_per_s"], x["apprise"]["deliveries_per_s"] if x["apprise"] else "-",
                     s["deliveries_per_s"], s["intake_per_s"], x["ratio_vs_bare"], x["ratio_vs_apprise"],
                     s["worker_cpu_ms_per_delivery"], s["api_cpu_ms_per_announcement"],
                     f"{s['delivered']}/{s['deliveries']}", s["duplicates"], s["missing"]])
    table(f"through the API ({n}×{k} = {n * k} deliveries per round)",
          ["round", "bare/s", "apprise/s", "system/s", "intake/s", "÷ bare", "÷ apprise", "worker CPU ms/dlv",
           "API CPU ms/ann", "delivered", "dupes", "missing"], rows)
    print(f"idle latency ({lat['samples']} announcements): first p50 {ms(lat['first_p50'])} p99 {ms(lat['first_p99'])}; "
          f"all p50 {ms(lat['all_p50'])} p99 {ms(lat['all_p99'])}", flush=True)
    print("targets: " + ", ".join(f"{k} → {v}" for k, v in res["targets"].items()), flush=True)
    write_json(NAME, res)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("-n", type=int, default=None, help="announcements per round (default 300, quick 60)")
    p.add_argument("-k", type=int, default=4, help="webhook channels per announcement")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--threads", type=int, default=4, help="client threads posting to the API")
    p.add_argument("-c", "--concurrency", type=int, default=8, help="worker threads")
    p.add_argument("-m", type=int, default=None, help="idle latency samples (default 40, quick 10)")
    a = p.parse_args(argv)
    res = run(a.quick, a.n, a.k, a.rounds, a.threads, a.concurrency, a.m)
    return 0 if res["targets"]["exactly_once"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
