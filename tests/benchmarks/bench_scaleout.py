"""Scale-out: the fan-out of ``bench_fanout`` through the HTTP API with 1, 2 and 4 worker
processes on one PostgreSQL ledger — deliveries/s per worker count, and proof that adding
processes sends nothing twice.

Each worker count starts N fresh worker processes (× 8 threads) on the same rig (private
Redis, the fast stand-in, a fresh PostgreSQL database, one API process), warms them with a
little traffic (not measured), then runs two phases:

- **end to end**: ``n`` announcements × K signed generic webhooks posted through
  ``POST /api/v1/announcements`` by 4 client threads while the workers consume; deliveries/s
  from the first POST to the last delivery recorded (the API's intake rate is printed next to
  it: on a small machine it can be the bound, not the workers).
- **backlog**: the workers stop consuming the channel queues (Celery's ``cancel_consumer``),
  the same posts go through the API and their wake-ups wait in Redis; then every worker resumes
  at once (``add_consumer``): deliveries/s of the workers alone, from the resume to the last
  delivery recorded. Nothing may be delivered while they are paused.

Next to the rate, each phase reports the CPU it cost (user + system time of the worker
processes per delivery — until every wake-up it published was consumed — and of the API per
announcement, from /proc): on a shared machine the rate
depends on what else runs, the CPU per delivery much less — it says whether an added process
costs more per delivery, and how far the workers would scale given free cores.

After every phase the stand-in's ``webhook-id``s (``msg_<delivery id>``) are compared with the
ledger: each delivery arrived exactly once, nothing unknown arrived. The claim events say which
process claimed each delivery (claims of one row by two processes would show as a re-claim).
The script exits 1 if any delivery is missing, duplicated or not delivered.

    python -m tests.benchmarks.bench_scaleout [--quick] [-n 300] [--workers 1 2 4] [--rounds 2] [--api 1]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import time
from typing import Any

from .bench_fanout import Rig
from .common import Bench, cpu_seconds, log, pg_create, table, write_json

NAME = "scaleout"
_CLAIMED = re.compile(r"claimed by .*:(\d+):\d+ \(batch of (\d+)\)")


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def claims_by_process(rig: Rig, t0: float) -> dict[str, Any]:
    """Who claimed the deliveries created since ``t0``: claims per worker process (from each
    claim event's owner), the mean batch, and rows claimed more than once."""
    from sqlalchemy import select

    from broadcaster.ledger import schema as t

    d, e = t.deliveries, t.delivery_events
    with rig.rt.ledger.read() as conn:
        rows = conn.execute(select(e.c.delivery_id, e.c.reason).join(d, d.c.id == e.c.delivery_id)
                            .where(d.c.created_at >= t0, e.c.to_state == "sending")).all()
    index = {p.pid: i for i, p in enumerate(rig.procs)}
    per: collections.Counter = collections.Counter()
    batches = []
    for r in rows:
        m = _CLAIMED.search(r.reason or "")
        per[index.get(int(m.group(1)), -1) if m else -1] += 1
        if m:
            batches.append(int(m.group(2)))
    times = collections.Counter(r.delivery_id for r in rows)
    return {"claims": len(rows), "per_process": [per.get(i, 0) for i in range(len(rig.procs))],
            "other": per.get(-1, 0), "reclaimed": sum(1 for c in times.values() if c > 1),
            "mean_batch": round(sum(batches) / len(batches), 2) if batches else None}


def _wait_delivered(rig: Rig, t0: float, total: int, timeout: float) -> tuple[int, float | None, int]:
    return rig.wait_delivered(t0, total, timeout)


def _cpu(rig: Rig) -> tuple[float, float]:
    """CPU seconds used so far by the worker processes, and by the API."""
    return cpu_seconds(p.pid for p in rig.procs), cpu_seconds([rig.api_proc.pid] if rig.api_proc else [])


def _finish(rig: Rig, t0: float, start: float, posted: dict[str, Any], n: int, timeout: float,
            cpu0: tuple[float, float]) -> dict[str, Any]:
    total = n * rig.k
    done, last, bad = _wait_delivered(rig, t0, total, timeout)
    # the wake-ups left once everything is sent still cost a message and a claim each: they
    # are this phase's work, not the next one's
    deadline = time.time() + 30
    while rig.queued() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the last ones taken are still running
    cpu1 = _cpu(rig)
    wall = (last or time.time()) - start
    check = rig.exactly_once(t0)
    return {"announcements": n, "accepted": posted["accepted"], "statuses": posted["statuses"],
            "intake_per_s": posted["accepted_per_s"], "deliveries": total, "delivered": done, "not_delivered": bad,
            "wall_s": round(wall, 3), "deliveries_per_s": round(done / wall, 1) if wall > 0 else None,
            "worker_cpu_ms_per_delivery": round(1000 * (cpu1[0] - cpu0[0]) / max(1, done), 2),
            "api_cpu_ms_per_announcement": round(1000 * (cpu1[1] - cpu0[1]) / max(1, posted["accepted"]), 2),
            "check": check, "claims": claims_by_process(rig, t0)}


def warm_up(rig: Rig, workers: int, threads: int, timeout: float, tag: str) -> list[int]:
    """Fresh worker processes, then a little traffic through them (not measured), so the phases
    find each one as a long-running worker is: runtime built, connections open, code loaded.
    Returns the warm-up's claims per process."""
    rig.start_workers(raw=False, workers=workers)
    rig.standin.reset()
    t0 = time.time()
    posted = rig.post(10 * workers, tag, threads)
    _wait_delivered(rig, t0, posted["accepted"] * rig.k, timeout)
    return claims_by_process(rig, t0)["per_process"]


def end_to_end(rig: Rig, n: int, threads: int, timeout: float, tag: str) -> dict[str, Any]:
    rig.standin.reset()
    load = load_avg()
    cpu0 = _cpu(rig)
    t0 = time.time()
    posted = rig.post(n, tag, threads)
    return {"load": load, **_finish(rig, t0, t0, posted, n, timeout, cpu0)}


def backlog(rig: Rig, n: int, threads: int, timeout: float, tag: str) -> dict[str, Any]:
    rig.consuming(False)
    rig.standin.reset()
    api_cpu0 = _cpu(rig)[1]
    t0 = time.time()
    posted = rig.post(n, tag, threads)
    time.sleep(1.0)  # the API publishes right after each answer: let the last ones land
    early = rig.delivered_since(t0)[0]
    load = load_avg()
    cpu0 = (_cpu(rig)[0], api_cpu0)
    start = time.time()
    rig.consuming(True)
    return {"load": load, "delivered_while_paused": early, **_finish(rig, t0, start, posted, n, timeout, cpu0)}


def failures_of(run: dict[str, Any]) -> list[str]:
    c = run["check"]
    out = []
    if run["accepted"] != run["announcements"]:
        out.append(f"{run['announcements'] - run['accepted']} announcements not accepted ({run['statuses']})")
    if run["delivered"] != run["deliveries"]:
        out.append(f"{run['deliveries'] - run['delivered']} deliveries not delivered")
    for key in ("missing", "duplicates", "unexpected"):
        if c[key]:
            out.append(f"{c[key]} {key} at the stand-in")
    if run.get("delivered_while_paused"):
        out.append(f"{run['delivered_while_paused']} delivered while the workers were paused: not a backlog drain")
    if run["claims"]["reclaimed"]:
        out.append(f"{run['claims']['reclaimed']} deliveries claimed more than once")
    return out


def run(quick: bool = False, n: int | None = None, k: int = 4, counts: tuple[int, ...] = (1, 2, 4),
        concurrency: int = 8, threads: int = 4, rounds: int = 1, api: int = 1) -> dict[str, Any]:
    n = n or (60 if quick else 300)
    timeout = 60 if quick else 120
    print(f"\n== scale-out: {n} announcements × {k} webhook channels through the API ({api} process(es), "
          f"{threads} client threads), "
          f"{'/'.join(map(str, counts))} worker process(es) × {concurrency} threads, PostgreSQL ledger, "
          f"{rounds} round(s) ==", flush=True)
    res: dict[str, Any] = {"params": {"n": n, "k": k, "workers": list(counts), "concurrency": concurrency,
                                      "client_threads": threads, "rounds": rounds, "ledger": "postgresql",
                                      "api_processes": api}, "runs": [], "failures": []}
    with Bench(NAME) as bench:
        try:
            url, drop = pg_create()
        except Exception as exc:  # noqa: BLE001 - no PostgreSQL: say so, as the intake benchmark does
            res["skipped"] = f"PostgreSQL unavailable ({type(exc).__name__}: {exc})"
            print(res["skipped"], flush=True)
            return res
        bench.on_close(drop)
        rig = Rig(bench, k, counts[0], concurrency, ledger=url, extra={"api": {"rate_limit": "10000000/1s"}})
        rig.start_api(api)
        for r in range(rounds):
            for w in (counts if r % 2 == 0 else tuple(reversed(counts))):
                log(f"round {r + 1}, {w} worker(s): start and warm up")
                warm = warm_up(rig, w, threads, timeout, f"r{r}-w{w}-warm")
                for phase, fn in (("end to end", end_to_end), ("backlog", backlog)):
                    log(f"round {r + 1}, {w} worker(s): {phase} (load {' '.join(map(str, load_avg()))})")
                    one = fn(rig, n, threads, timeout, f"r{r}-w{w}-{phase.split()[0]}")
                    one.update({"round": r + 1, "workers": w, "phase": phase, "warm_up_claims": warm})
                    res["runs"].append(one)
                    bad = failures_of(one)
                    res["failures"] += [f"round {r + 1}, {w} worker(s), {phase}: {b}" for b in bad]
                    log(f"  {one['deliveries_per_s']} deliveries/s, intake {one['intake_per_s']}/s, worker CPU "
                        f"{one['worker_cpu_ms_per_delivery']} ms/delivery, "
                        f"claims per process {one['claims']['per_process']}, "
                        f"dupes {one['check']['duplicates']}, missing {one['check']['missing']}")
        rig.stop_workers()

    def rate(w: int, phase: str) -> float | None:
        xs = [x["deliveries_per_s"] or 0 for x in res["runs"] if x["workers"] == w and x["phase"] == phase]
        return round(sum(xs) / len(xs), 1) if xs else None

    res["mean_per_s"] = {phase: {w: rate(w, phase) for w in counts} for phase in ("end to end", "backlog")}
    rows = []
    for x in res["runs"]:
        base = res["mean_per_s"][x["phase"]][counts[0]]
        c = x["check"]
        rows.append([x["round"], x["phase"], x["workers"], " ".join(map(str, x["load"])), x["intake_per_s"],
                     x["deliveries_per_s"], f"×{(x['deliveries_per_s'] or 0) / base:.2f}" if base else "-",
                     x["worker_cpu_ms_per_delivery"], x["api_cpu_ms_per_announcement"],
                     "/".join(map(str, x["claims"]["per_process"])), x["claims"]["mean_batch"],
                     f"{x['delivered']}/{x['deliveries']}", c["duplicates"], c["missing"] + c["unexpected"]])
    table(f"scale-out ({n}×{k} = {n * k} deliveries per phase; × is against the mean of {counts[0]} worker(s))",
          ["round", "phase", "workers", "load 1/5/15", "intake/s", "deliveries/s", "×", "worker CPU ms/dlv",
           "API CPU ms/ann", "claims per process",
           "batch", "delivered", "dupes", "missing"], rows)
    if res["failures"]:
        print("NOT EXACTLY ONCE:\n  " + "\n  ".join(res["failures"]), flush=True)
    else:
        print("every delivery arrived exactly once in every phase (stand-in webhook-ids = ledger deliveries)",
              flush=True)
    write_json(NAME, res)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("-n", type=int, default=None, help="announcements per phase (default 300, quick 60)")
    p.add_argument("-k", type=int, default=4, help="webhook channels per announcement")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker process counts")
    p.add_argument("-c", "--concurrency", type=int, default=8, help="threads per worker process")
    p.add_argument("--threads", type=int, default=4, help="client threads posting to the API")
    p.add_argument("--rounds", type=int, default=1, help="rounds; even ones run the counts in reverse order")
    p.add_argument("--api", type=int, default=1, help="API processes (broadcaster api --workers N above 1)")
    a = p.parse_args(argv)
    res = run(a.quick, a.n, a.k, tuple(a.workers), a.concurrency, a.threads, a.rounds, a.api)
    return 1 if res.get("failures") or res.get("skipped") else 0


if __name__ == "__main__":
    raise SystemExit(main())
