"""Against Apprise: the same N announcements × K posts to the same stand-in, sent by Apprise
in-process (``json://`` URLs, one ``notify()`` per announcement — how Apprise is used) and by
broadcaster through the whole system (submit → ledger → Celery worker → adapter → ledger).

Apprise keeps no ledger, no retries across restarts, no rate limits: it is the floor of "post
this JSON to K URLs". A second Apprise row calls ``notify()`` from as many threads as the
worker has, for a like-for-like concurrency. Same stand-in, same run.

    python -m tests.benchmarks.bench_apprise [--quick]
"""

from __future__ import annotations

import argparse
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .bench_fanout import BODY, Rig
from .common import Bench, log, table, write_json

NAME = "apprise"


def apprise_run(standin, n: int, k: int, threads: int, tag: str) -> dict[str, Any]:
    import apprise

    logging.getLogger("apprise").setLevel(logging.ERROR)
    standin.reset()
    ap = apprise.Apprise()
    for c in range(k):
        if not ap.add(f"json://127.0.0.1:{standin.port}/hook/wh{c}"):
            raise RuntimeError("apprise refused the json:// URL")

    def one(i: int) -> bool:
        return bool(ap.notify(body=BODY, title=f"Elevated API errors ({tag} #{i})"))

    t0 = time.time()
    if threads <= 1:
        oks = [one(i) for i in range(n)]
    else:
        with ThreadPoolExecutor(threads) as pool:
            oks = list(pool.map(one, range(n)))
    wall = time.time() - t0
    st = standin.stats()
    ok = sum(1 for a in st["arrivals"] if a[1] == 200)
    return {"deliveries": n * k, "delivered": ok, "notify_ok": sum(oks), "wall_s": round(wall, 3),
            "deliveries_per_s": round(ok / wall, 1) if wall > 0 else None, "threads": threads}


def run(quick: bool = False, n: int | None = None, k: int = 4, workers: int = 1, concurrency: int = 8) -> dict[str, Any]:
    try:
        import apprise
    except ImportError as exc:
        msg = (f"apprise is not installed ({exc}); install it with `.venv/bin/pip install apprise` "
               "(the [apprise] extra) — skipped")
        print(f"\n== against Apprise: {msg}", flush=True)
        write_json(NAME, {"skipped": msg})
        return {"skipped": msg}
    n = n or (40 if quick else 200)
    timeout = 15 if quick else 40
    print(f"\n== against Apprise {apprise.__version__}: {n} announcements × {k} json:// posts, same stand-in ==",
          flush=True)
    with Bench(NAME) as bench:
        rig = Rig(bench, k, workers, concurrency)
        log("Apprise, one notify() at a time (each fans out to the K URLs)")
        ap1 = apprise_run(rig.standin, n, k, 1, "seq")
        log(f"Apprise, notify() from {concurrency} threads")
        apn = apprise_run(rig.standin, n, k, concurrency, "thr")
        log("broadcaster, whole system")
        ours = rig.system_throughput(n, timeout, "ap")
        rig.stop_workers()
    ratio1 = ours["deliveries_per_s"] / ap1["deliveries_per_s"] if ap1["deliveries_per_s"] else None
    ration = ours["deliveries_per_s"] / apn["deliveries_per_s"] if apn["deliveries_per_s"] else None
    res = {"apprise_version": apprise.__version__,
           "params": {"n": n, "k": k, "workers": workers, "concurrency": concurrency, "ledger": "sqlite"},
           "apprise_sequential": ap1, "apprise_threads": apn, "broadcaster": ours,
           "ratio_vs_sequential": round(ratio1, 3) if ratio1 else None,
           "ratio_vs_threads": round(ration, 3) if ration else None,
           "targets": {">=apprise": bool(ratio1 and ratio1 >= 1.0)}}
    table(f"against Apprise ({n}×{k} = {n * k} posts)", ["sender", "deliveries/s", "delivered", "wall", "ours ÷ it"],
          [["Apprise (sequential notify)", ap1["deliveries_per_s"], ap1["delivered"], f"{ap1['wall_s']} s",
            res["ratio_vs_sequential"]],
           [f"Apprise ({concurrency} threads)", apn["deliveries_per_s"], apn["delivered"], f"{apn['wall_s']} s",
            res["ratio_vs_threads"]],
           ["broadcaster (whole system)", ours["deliveries_per_s"], ours["delivered"], f"{ours['wall_s']} s", 1.0]])
    print(f"target: at least Apprise's deliveries/s → {res['targets']['>=apprise']}", flush=True)
    write_json(NAME, res)
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("-n", type=int, default=None)
    p.add_argument("-k", type=int, default=4)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("-c", "--concurrency", type=int, default=8)
    a = p.parse_args(argv)
    run(a.quick, a.n, a.k, a.workers, a.concurrency)


if __name__ == "__main__":
    main()
