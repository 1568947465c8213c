"""Recovery: one webhook channel is down (the stand-in answers 503) for 60 s (``--quick``: 15 s)
while announcements keep arriving; then it recovers. Measured: the backlog at recovery, the time
from recovery to an empty backlog against what the channel's ``rate_limit`` allows, and the send
rate the stand-in saw (max per 1-second bin and per sliding window of the limit's period) against
the limit's bucket.

The whole system runs: worker and scheduler processes, SQLite ledger, Redis breaker and limiter.
Policy: ``rate_limit`` 10/1s on the channel, breaker 5 failures / 5 s cooldown, backoff 0.5–5 s,
enough attempts that an outage of this length never exhausts them.

    python -m tests.benchmarks.bench_recovery [--quick] [--down SECONDS] [--rate PER_SECOND]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .bench_fanout import Rig
from .common import Bench, log, print_profile, pyspy_record, pyspy_wait, table, top_frames, write_json

NAME = "recovery"
LIMIT, PER = 10, 1.0


def count_states(rig: Rig, since: float) -> dict[str, int]:
    from sqlalchemy import func, select

    from broadcaster.ledger import schema as t

    d = t.deliveries
    with rig.rt.ledger.read() as conn:
        return {r[0]: r[1] for r in conn.execute(select(d.c.state, func.count()).where(d.c.created_at >= since)
                                                 .group_by(d.c.state))}


def last_settled(rig: Rig, since: float) -> float | None:
    from sqlalchemy import func, select

    from broadcaster.ledger import schema as t

    d = t.deliveries
    with rig.rt.ledger.read() as conn:
        return conn.execute(select(func.max(d.c.settled_at)).where(d.c.created_at >= since)).scalar()


def windows(times: list[float], width: float) -> int:
    """Most events in any half-open window [t, t + width)."""
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= width:
            j += 1
        best = max(best, i - j + 1)
    return best


def run(quick: bool = False, down: float | None = None, arrivals_per_s: float = 2.0, workers: int = 1,
        concurrency: int = 8, profile: bool = True) -> dict[str, Any]:
    down = down or (15.0 if quick else 60.0)
    drain_timeout = 15.0 if quick else 90.0
    print(f"\n== recovery: channel down {down:.0f} s, {arrivals_per_s}/s announcements arriving, rate_limit "
          f"{LIMIT}/{PER:g}s ==", flush=True)
    policy = {"defaults": {"attempts": 1000, "backoff": {"base": "0.5s", "max": "5s"}, "timeout": "5s",
                           "breaker": {"failures": 5, "cooldown": "5s"}},
              "channels": {"wh0": {"rate_limit": f"{LIMIT}/{PER:g}s"}}}
    with Bench(NAME) as bench:
        # the scheduler's sweep is what brings back deliveries parked in the ledger
        rig = Rig(bench, 1, workers, concurrency, policy=policy,
                  extra={"scheduler": {"interval": "0.5s", "requeue_after": "3s", "lease": "10s"}})
        sched = bench.procs.py("scheduler", "scheduler", str(rig.settings_path))
        rig.start_workers(raw=False)
        if sched.poll() is not None:
            raise RuntimeError(f"scheduler exited: {bench.procs.tail('scheduler')}")
        rig.submit(0, "warm")
        time.sleep(1.0)
        rig.standin.reset()
        log(f"channel down (503) for {down:.0f} s; submitting {arrivals_per_s}/s")
        rig.standin.set_status(503)
        t_down = time.time()
        i = 0
        while time.time() - t_down < down:
            rig.submit(i, "outage")
            i += 1
            nxt = t_down + i / arrivals_per_s
            time.sleep(max(0.0, nxt - time.time()))
        backlog_states = count_states(rig, t_down)
        t_rec = time.time()
        rig.standin.set_status(200)
        backlog = sum(v for s, v in backlog_states.items() if s in ("pending", "retrying", "sending"))
        log(f"recovered; backlog {backlog} ({backlog_states}); waiting for it to drain")
        spy, out = (None, None)
        if profile:
            spy, out = pyspy_record(bench, rig.procs[0].pid, 6 if quick else 10, "recovery-worker")
        states: dict[str, int] = {}
        while time.time() - t_rec < drain_timeout:
            states = count_states(rig, t_down)
            if not any(states.get(s) for s in ("pending", "retrying", "sending", "scheduled")):
                break
            time.sleep(0.25)
        t_last = last_settled(rig, t_down)
        pyspy_wait(spy)
        st = rig.standin.stats()
        rig.stop_workers()
        bench.procs.stop(sched)
    ok = sorted(a[0] for a in st["arrivals"] if a[1] == 200 and a[0] >= t_rec)
    failed503 = sorted(a[0] for a in st["arrivals"] if a[1] != 200)
    empty = not any(states.get(s) for s in ("pending", "retrying", "sending", "scheduled"))
    drain = (t_last - t_rec) if (empty and t_last) else None
    rate = LIMIT / PER
    ideal = max(0.0, backlog - LIMIT) / rate
    bins: dict[int, int] = {}
    for t in ok:
        bins[int(t - t_rec)] = bins.get(int(t - t_rec), 0) + 1
    max_bin = max(bins.values()) if bins else 0
    max_window = windows(ok, PER)
    envelope = LIMIT + rate * PER  # a token bucket's most in any window of length PER (full bucket + refill)
    steady = None
    if len(ok) > 2 * LIMIT and ok[-1] > ok[0]:
        # the average send rate over the drain once the initial bucket is spent (gaps included)
        steady = (len(ok) - LIMIT) / (ok[-1] - ok[0])
    res = {"params": {"down_s": down, "arrivals_per_s": arrivals_per_s, "rate_limit": f"{LIMIT}/{PER:g}s",
                      "breaker": "5 failures / 5 s", "backoff": "0.5-5 s", "ledger": "sqlite", "workers": workers,
                      "concurrency": concurrency, "scheduler_interval_s": 0.5},
           "submitted_during_outage": i, "backlog_at_recovery": backlog, "states_at_recovery": backlog_states,
           "states_at_end": states, "drained": empty, "drain_s": round(drain, 2) if drain is not None else None,
           "ideal_drain_s": round(ideal, 2), "drain_vs_ideal": round(drain / ideal, 2) if drain and ideal else None,
           "sent_after_recovery": len(ok), "attempts_while_down": len(failed503),
           "max_per_1s_bin": max_bin, "max_in_any_window_of_per": max_window, "bucket": LIMIT,
           "token_bucket_envelope": envelope, "steady_rate_per_s": round(steady, 2) if steady else None,
           "max_503_per_1s_window": windows(failed503, 1.0), "dupes": st["dupes"],
           "per_second_after_recovery": [bins.get(s, 0) for s in range(0, (max(bins) + 1) if bins else 0)]}
    res["targets"] = {"drains_at_rate_limit": bool(drain is not None and (steady or 0) >= 0.8 * rate),
                      "no_burst_above_bucket": max_bin <= LIMIT and max_window <= LIMIT,
                      "within_token_bucket_envelope": max_window <= envelope}
    res["profile_worker"] = top_frames(out, 20) if out else None
    table(f"recovery after {down:.0f} s down", ["measure", "value"], [
        ["announcements during outage", i],
        ["backlog at recovery", backlog],
        ["time to empty backlog", f"{res['drain_s']} s" if drain is not None else f"not empty after {drain_timeout:.0f} s"],
        [f"ideal at {LIMIT}/{PER:g}s (backlog − bucket) ÷ rate", f"{ideal:.1f} s"],
        ["drain ÷ ideal", res["drain_vs_ideal"]],
        ["mean send rate over the drain, beyond the bucket", f"{res['steady_rate_per_s']}/s (limit {rate:g}/s)"],
        ["max sends in a 1-s bin / any 1-s window", f"{max_bin} / {max_window} (bucket {LIMIT}, envelope {envelope:g})"],
        ["attempts while down (max per 1-s window)", f"{len(failed503)} ({res['max_503_per_1s_window']})"],
        ["sends per second after recovery", " ".join(str(x) for x in res["per_second_after_recovery"][:40])],
        ["duplicates at the stand-in", st["dupes"]],
    ])
    print(f"targets: drains at the rate limit → {res['targets']['drains_at_rate_limit']}; no 1-s bin/window above the "
          f"bucket → {res['targets']['no_burst_above_bucket']}; within the token-bucket envelope → "
          f"{res['targets']['within_token_bucket_envelope']}", flush=True)
    if res["profile_worker"]:
        print_profile("worker profile while draining (py-spy)", res["profile_worker"])
    write_json(NAME, res)
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--down", type=float, default=None)
    p.add_argument("--rate", type=float, default=2.0, help="announcements per second during the outage")
    p.add_argument("--no-profile", action="store_true")
    a = p.parse_args(argv)
    run(a.quick, a.down, a.rate, profile=not a.no_profile)


if __name__ == "__main__":
    main()
