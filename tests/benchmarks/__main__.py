"""``python -m tests.benchmarks [--quick] [--only NAME]``: run the benchmarks one after the other
(each in its own private Redis, stand-ins and worker processes) and print a summary of the
targets. ``make bench`` runs this."""

from __future__ import annotations

import argparse
import time
import traceback

from . import (
    bench_api_fanout,
    bench_apprise,
    bench_breakglass,
    bench_email,
    bench_event_loop,
    bench_fanout,
    bench_intake,
    bench_ledger,
    bench_recovery,
    bench_render,
    bench_scaleout,
    bench_token_refresh,
)
from .common import machine, ms, table, write_json

BENCHMARKS = {
    "api_fanout": lambda quick: bench_api_fanout.run(quick),
    "fanout": lambda quick: bench_fanout.run(quick),
    "apprise": lambda quick: bench_apprise.run(quick),
    "email": lambda quick: bench_email.run(quick),
    "intake": lambda quick: bench_intake.run(quick),
    "recovery": lambda quick: bench_recovery.run(quick),
    "event_loop": lambda quick: bench_event_loop.run(quick),
    "render": lambda quick: bench_render.run(quick),
    "scaleout": lambda quick: bench_scaleout.run(quick),
    "breakglass": lambda quick: bench_breakglass.run(quick),
    "token_refresh": lambda quick: bench_token_refresh.run(quick),
    "ledger": lambda quick: bench_ledger.run(quick),
}


def summary_rows(name: str, r: dict) -> list[list]:
    if r.get("skipped"):
        return [[name, "skipped", r["skipped"][:60], "-"]]
    t = r.get("targets", {})
    if name == "api_fanout":
        lat = r["latency"]
        return [[name, "through the API: system ÷ bare Celery+httpx ≥ 1.0", r["ratio_vs_bare_median"],
                 t.get("system>=bare")],
                [name, "through the API: system ÷ Apprise sequential ≥ 1.0", r["ratio_vs_apprise_median"],
                 t.get("system>=apprise")],
                [name, "idle p99 POST → first delivered ≤ 100 ms", ms(lat["first_p99"]), t.get("p99_first<=100ms")],
                [name, "idle p99 POST → all delivered ≤ 250 ms", ms(lat["all_p99"]), t.get("p99_all<=250ms")]]
    if name == "fanout":
        lat = r["latency_system"]
        return [[name, "ratio system ÷ bare Celery+httpx ≥ 0.9", r["ratio_median"], t.get("ratio>=0.9")],
                [name, "p99 submit → first delivered ≤ 250 ms", f"{(lat['first_p99'] or 0) * 1000:.0f} ms",
                 t.get("p99_first<=250ms")]]
    if name == "apprise":
        return [[name, "deliveries/s ≥ Apprise's (sequential notify)",
                 f"{r['broadcaster']['deliveries_per_s']} vs {r['apprise_sequential']['deliveries_per_s']} "
                 f"(×{r['ratio_vs_sequential']})", t.get(">=apprise")]]
    if name == "email":
        o = r["broadcaster"]
        by = ", ".join(f"{c}: ×{v['ratio_vs_bare']}" for c, v in r.get("by_connections", {}).items())
        return [[name, "100,000 recipients ≤ 20 s", f"{o['time_for_all_s']} s for {r['params']['recipients']}"
                 + (" (extrapolated)" if o.get("extrapolated") else ""), t.get("<=20s_for_100k")],
                [name, "peak RSS ≤ 300 MB per worker", f"{o['rss_peak_mb']} MB", t.get("<=300MB_rss")],
                [name, "≥ 1.5× the bare one-connection smtplib loop", f"×{r['ratio_vs_bare']} (by connections: {by})",
                 t.get(">=1.5x_bare")]]
    if name == "intake":
        runs = r["runs"]

        def rates(key: str, what: str) -> str:
            got = [f"{v.get(f'{what}_per_s')} ({k.split('/')[1]}p)" for k, v in runs.items()
                   if k.split("/")[0] == key and f"{what}_per_s" in v]
            return " / ".join(got) or "skipped"

        return [[name, "≥ 500 accepted/s (1p / 2p = API processes)",
                 f"SQLite {rates('sqlite', 'accepted')}; PostgreSQL {rates('postgresql', 'accepted')}",
                 t.get(">=500_accepted_per_s")],
                [name, "junk refused ≥ 5,000/s", rates("junk_no_auth", "refused"), t.get("junk_refused>=5000_per_s")]]
    if name == "recovery":
        return [[name, "backlog drains at the rate limit", f"{r['drain_s']} s (ideal {r['ideal_drain_s']} s)",
                 t.get("drains_at_rate_limit")],
                [name, "no 1-s window above the bucket", f"max {r['max_in_any_window_of_per']} (bucket {r['bucket']})",
                 t.get("no_burst_above_bucket")]]
    if name == "event_loop":
        f = r["healthz_under_flood"]
        return [[name, "/healthz ≤ 1 s while previews flood the page",
                 f"max {(f['max_s'] or 0) * 1000:.0f} ms, p99 {(f['p99_s'] or 0) * 1000:.0f} ms",
                 r["targets"].get("healthz_max<=1s")]]
    if name == "scaleout":
        def per(phase: str) -> str:
            return " / ".join(f"{v}" for v in r["mean_per_s"][phase].values())

        counts = "/".join(map(str, r["params"]["workers"]))
        return [[name, f"deliveries/s with {counts} worker processes, end to end (PostgreSQL)", per("end to end"),
                 "-"],
                [name, f"deliveries/s with {counts} worker processes, backlog", per("backlog"), "-"],
                [name, "each delivery exactly once (stand-in webhook-ids)",
                 "; ".join(r["failures"][:2]) or "yes, every phase", not r["failures"]]]
    if name == "render":
        def cell(k: str, v: dict) -> str:
            before = "-" if v["before_s"] is None else f"{v['before_s']:.2f}"
            return f"{k} {v['after_s']:.3f} (was {before})"

        return [[name, "20 kB thread split: CPU s (before)",
                 ", ".join(cell(k, v) for k, v in r["runs"].items() if "parts" in v), r["targets"].get("same_parts")]]
    if name == "ledger":
        return [[name, f"ms per operation: {op}", " / ".join(f"{db} {v[op]}" for db, v in r.items()), "-"]
                for op in bench_ledger.OPERATIONS]
    if name == "breakglass":
        return [[name, f"ms per attempt / per progress write: {k}", f"{v['attempt_ms']} / {v['mark_ms']}", "-"]
                for k, v in r.items()]
    if name == "token_refresh":
        return [[name, "token() of a renewable channel when nothing is due", f"{r['hot_path_us']} µs", "-"],
                [name, "one renewal (lock, store, token endpoint, fsync) p50 / p95",
                 f"{r['renewal_ms_p50']} / {r['renewal_ms_p95']} ms", "-"],
                [name, f"{r['processes']} processes due at once renew once",
                 f"{r['token_requests_when_all_due']} token request(s)", not r["failures"]]]
    return []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: each benchmark well under a minute")
    p.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only this one (repeatable)")
    a = p.parse_args(argv)
    names = a.only or list(BENCHMARKS)
    results, rows, took = {}, [], {}
    for name in names:
        t0 = time.monotonic()
        try:
            results[name] = BENCHMARKS[name](a.quick)
            rows += summary_rows(name, results[name])
        except Exception as exc:  # noqa: BLE001 - report and go on with the next one
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            rows.append([name, "error", f"{type(exc).__name__}: {exc}"[:80], False])
        took[name] = round(time.monotonic() - t0, 1)
    print()
    table(f"summary ({'quick' if a.quick else 'full'} run; seconds per benchmark: "
          + ", ".join(f"{k} {v}" for k, v in took.items()) + ")", ["benchmark", "target", "measured", "met"], rows)
    write_json("summary", {"quick": a.quick, "seconds": took, "rows": rows, "machine_at_end": machine()})
    # a benchmark that checks correctness as it measures (scaleout: nothing missing, nothing twice) fails the run
    return 1 if any(r.get("failures") for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
