"""Fan-out: N announcements × K generic-webhook channels through the whole system, against a
bare Celery task doing one httpx POST per delivery to the same stand-in (no ledger).

System path: ``service.submit`` (ledger transaction + one Celery message per delivery) → Redis →
worker process(es) (threads pool) → ``engine.attempt`` (claim, breaker, render, send, record) →
the stand-in → ledger. "Delivered" is the ledger's ``settled_at``. Baseline path: the same Celery
settings and broker, a task that POSTs a body of the same size with the same httpx client
settings; "delivered" is the arrival at the stand-in.

Throughput: submit/publish everything as fast as one thread can, deliveries/s from the first
submit to the last delivery. Latency (idle): one announcement at a time, submit → first and →
all channels delivered. Same machine, same run, rounds alternate baseline and system.

    python -m tests.benchmarks.bench_fanout [--quick] [--workers 1] [-c 8] [-n 500] [-k 4]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .common import (
    RAW_QUEUE,
    Bench,
    StandIn,
    create_token,
    inclusive_of,
    log,
    ms,
    pct,
    post_announcements,
    print_profile,
    pyspy_record,
    pyspy_wait,
    settings_data,
    start_api,
    table,
    top_frames,
    wait_consumers,
    write_json,
)

NAME = "fanout"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = ("We are investigating elevated error rates on the public API. Some requests may fail or be slow; "
        "we will post an update within 30 minutes.")


def webhook_channels(standin: StandIn, k: int) -> dict[str, Any]:
    return {f"wh{i}": {"kind": "webhook", "format": "generic", "url": standin.url(f"wh{i}"), "secret": SECRET}
            for i in range(k)}


def raw_body() -> str:
    """A body the size of the adapter's generic payload."""
    return json.dumps({"type": "announcement.created", "timestamp": int(time.time()),
                       "data": {"channel": "wh0", "kind": "incident", "title": "Elevated API errors", "text": BODY,
                                "url": None, "status": "investigating", "announcement_id": "ann_18c2f0a1b2c_3f9a1c2e",
                                "update_id": None, "in_reply_to": None}}, separators=(",", ":"))


class Rig:
    """The services of one fan-out run: Redis, stand-in, ledger, driver runtime, workers."""

    def __init__(self, bench: Bench, k: int, workers: int, concurrency: int, ledger: str | None = None,
                 policy: dict | None = None, channels: dict | None = None, extra: dict | None = None):
        from broadcaster.runtime import Runtime
        from broadcaster.tasks import celery_enqueuer, create_app

        from .common import load

        self.bench = bench
        self.k = k
        self.workers = workers
        self.concurrency = concurrency
        bench.start_redis()
        self.standin = StandIn(bench)
        self.channels = channels or webhook_channels(self.standin, k)
        data = settings_data(ledger or f"sqlite:///{bench.dir}/ledger.db", bench.redis_url, self.channels,
                             policy=policy, **(extra or {}))
        self.settings_path = bench.write_settings(data)
        self.settings = load(self.settings_path)
        self.rt = Runtime.from_settings(self.settings, enqueuer=celery_enqueuer(self.settings))
        self.app = create_app(self.settings, self.rt)
        bench.on_close(self._close_rt)
        self.procs: list = []
        self.mode: str | None = None
        self.api_proc, self.api_port, self.api_token = None, 0, ""

    def _close_rt(self) -> None:
        self.rt.close()
        self.rt.ledger.close()
        if self.rt.redis is not None:
            self.rt.redis.close()

    def start_workers(self, raw: bool, workers: int | None = None) -> None:
        """``workers`` processes (default: the rig's) of the system or the baseline, all started
        before any is waited for; returns once every one is consuming."""
        mode = "raw" if raw else "system"
        workers = workers or self.workers
        if self.mode == mode and len(self.procs) == workers:
            return
        self.stop_workers()
        for i in range(workers):
            args = ["worker", str(self.settings_path), "-c", str(self.concurrency)] + (["--raw"] if raw else [])
            self.procs.append(self.bench.procs.py(f"worker-{mode}-{i}", *args))
        wait_consumers(self.bench, workers, self.procs)
        self.mode = mode

    def consuming(self, on: bool) -> None:
        """Stop (``False``) or resume every worker's consuming of the channel queues, by Celery's
        remote control: meanwhile wake-ups wait in Redis, and on resuming every process starts
        on them at once, warm. Stopping waits for every worker's answer; resuming does not (a
        worker busy with the first queue it resumed would answer late, and the others wait)."""
        from broadcaster.runtime import queue_name

        for channel in self.channels:
            if on:
                self.app.control.add_consumer(queue_name(channel), reply=False)
                continue
            replies = self.app.control.cancel_consumer(queue_name(channel), reply=True, timeout=5)
            if len(replies or []) < len(self.procs):
                raise RuntimeError(f"{len(replies or [])} of {len(self.procs)} workers answered cancel_consumer "
                                   f"for {channel}; see {self.bench.dir}")

    def queued(self) -> int:
        """Wake-ups waiting in the channel queues (not yet taken by a worker)."""
        import redis

        from broadcaster.runtime import queue_name

        client = redis.Redis.from_url(self.bench.redis_url)
        try:
            return sum(client.llen(queue_name(c)) for c in self.channels)
        finally:
            client.close()

    def stop_workers(self) -> None:
        for proc in self.procs:
            self.bench.procs.stop(proc)
        self.procs = []
        self.mode = None

    # -- the system

    def start_api(self, processes: int = 1) -> None:
        """The API on the rig's settings (``processes`` uvicorn workers) and a token for it:
        submits then go through HTTP (``post``) as a client's do. Give the rig ``extra={"api":
        {"rate_limit": …}}`` to lift the per-token limit."""
        self.api_token = create_token(self.settings_path, "rig")
        self.api_proc, self.api_port = start_api(self.bench, self.settings_path, "rig", processes)

    def post(self, n: int, tag: str, threads: int = 4) -> dict[str, Any]:
        """``n`` announcements through ``POST /api/v1/announcements`` from ``threads`` clients."""
        payloads = [{"kind": "incident", "title": f"Elevated API errors ({tag} #{i})", "body": BODY,
                     "severity": "minor"} for i in range(n)]
        return post_announcements(self.api_port, self.api_token, payloads, threads, tag)

    def exactly_once(self, t0: float) -> dict[str, Any]:
        """The stand-in's answered ``webhook-id``s (since its last reset) against the ledger's
        delivered deliveries created since ``t0``: each must have arrived once, nothing else."""
        from sqlalchemy import select

        from broadcaster.ledger import schema as t

        d = t.deliveries
        with self.rt.ledger.read() as conn:
            rows = conn.execute(select(d.c.id, d.c.state).where(d.c.created_at >= t0)).all()
        expected = {f"msg_{r.id}" for r in rows}
        got = self.standin.ids()
        return {"deliveries": len(rows), "delivered": sum(1 for r in rows if r.state == "delivered"),
                "received": sum(got.values()), "missing": len(expected - set(got)),
                "duplicates": sum(c - 1 for c in got.values() if c > 1), "unexpected": len(set(got) - expected)}

    def submit(self, i: int, tag: str) -> str:
        from broadcaster import service

        res = service.submit(self.rt, {"kind": "incident", "title": f"Elevated API errors ({tag} #{i})",
                                       "body": BODY, "severity": "minor"}, principal=service.SYSTEM)
        return res.id

    def delivered_since(self, t0: float) -> tuple[int, float | None, int]:
        from sqlalchemy import func, select

        from broadcaster.ledger import schema as t

        d = t.deliveries
        with self.rt.ledger.read() as conn:
            n, last = conn.execute(select(func.count(), func.max(d.c.settled_at)).where(
                d.c.created_at >= t0, d.c.state == "delivered")).one()
            other = conn.execute(select(func.count()).where(d.c.created_at >= t0, d.c.state.in_(
                ["failed", "unknown", "fallen_back", "cancelled"]))).scalar()
        return n, last, other

    def wait_delivered(self, t0: float, total: int, timeout: float, poll: float = 0.2) -> tuple[int, float | None, int]:
        """Wait (up to ``timeout``) until ``total`` deliveries created since ``t0`` are settled;
        returns (delivered, the last one's settled_at, settled otherwise)."""
        deadline = time.time() + timeout
        done, last, bad = 0, None, 0
        while time.time() < deadline:
            done, last, bad = self.delivered_since(t0)
            if done + bad >= total:
                break
            time.sleep(poll)
        return done, last, bad

    def settled(self, ann_id: str, timeout: float = 10.0, poll: float = 0.002) -> list[Any]:
        """The announcement's deliveries once every one of its K is settled ([] at the timeout)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            ds = self.rt.ledger.deliveries_of(ann_id)
            if len(ds) == self.k and all(d.settled_at for d in ds):
                return ds
            time.sleep(poll)
        return []

    def system_throughput(self, n: int, timeout: float, tag: str) -> dict[str, Any]:
        self.start_workers(raw=False)
        self.standin.reset()
        total = n * self.k
        t0 = time.time()
        for i in range(n):
            self.submit(i, tag)
        t_sub = time.time()
        done, last, bad = self.wait_delivered(t0, total, timeout - (t_sub - t0))
        st = self.standin.stats(10**9)
        wall = (last or time.time()) - t0
        return {"deliveries": total, "delivered": done, "not_delivered": bad, "complete": done == total,
                "wall_s": round(wall, 3), "deliveries_per_s": round(done / wall, 1) if wall > 0 else None,
                "submits_per_s": round(n / (t_sub - t0), 1), "standin_unique": st["unique"], "standin_dupes": st["dupes"]}

    def system_latency(self, m: int) -> dict[str, Any]:
        self.start_workers(raw=False)
        first, allc, sub = [], [], []
        wait, work = [], []  # per delivery: submit → claimed (broker + queue), claimed → recorded (engine)
        for i in range(m):
            time.sleep(0.05)
            t0 = time.time()
            ann = self.submit(i, "latency")
            sub.append(time.time() - t0)
            ds = self.settled(ann, 10 - (time.time() - t0))
            if ds:
                first.append(min(d.settled_at for d in ds) - t0)
                allc.append(max(d.settled_at for d in ds) - t0)
                for d in ds:
                    claimed = [e.at for e in self.rt.ledger.events_of(d.id) if str(e.to_state) == "sending"]
                    if claimed:
                        wait.append(claimed[0] - t0)
                        work.append(d.settled_at - claimed[0])
        out = _lat(first, allc, sub)
        out.update({"claim_wait_p50": pct(wait, 50), "claim_wait_p99": pct(wait, 99),
                    "engine_p50": pct(work, 50), "engine_p99": pct(work, 99)})
        return out

    # -- the baseline

    def raw_throughput(self, n: int, timeout: float, tag: str) -> dict[str, Any]:
        self.start_workers(raw=True)
        self.standin.reset()
        body = raw_body()
        total = n * self.k
        urls = [self.standin.url(f"wh{c}") for c in range(self.k)]
        t0 = time.time()
        for i in range(n):
            for c in range(self.k):
                self.app.send_task("bench.raw_post", args=(urls[c], body, f"raw-{tag}-{i}-{c}"), queue=RAW_QUEUE)
        t_pub = time.time()
        deadline = t0 + timeout
        while time.time() < deadline and self.standin.count() < total:
            time.sleep(0.1)
        st = self.standin.stats()
        ok = [a[0] for a in st["arrivals"] if a[1] == 200]
        wall = (max(ok) if ok else time.time()) - t0
        return {"deliveries": total, "delivered": len(ok), "complete": len(ok) == total, "wall_s": round(wall, 3),
                "deliveries_per_s": round(len(ok) / wall, 1) if wall > 0 else None,
                "publish_per_s": round(total / (t_pub - t0), 1)}

    def raw_latency(self, m: int) -> dict[str, Any]:
        self.start_workers(raw=True)
        self.standin.reset()
        body = raw_body()
        urls = [self.standin.url(f"wh{c}") for c in range(self.k)]
        first, allc, sub = [], [], []
        seen = 0
        for i in range(m):
            time.sleep(0.05)
            t0 = time.time()
            for c in range(self.k):
                self.app.send_task("bench.raw_post", args=(urls[c], body, f"rawlat-{i}-{c}"), queue=RAW_QUEUE)
            sub.append(time.time() - t0)
            deadline = t0 + 10
            while time.time() < deadline:
                st = self.standin.stats(seen)
                if len(st["arrivals"]) >= self.k:
                    ts = [a[0] for a in st["arrivals"][: self.k]]
                    first.append(min(ts) - t0)
                    allc.append(max(ts) - t0)
                    seen += self.k
                    break
                time.sleep(0.003)
        return _lat(first, allc, sub)


def _lat(first: list[float], allc: list[float], sub: list[float]) -> dict[str, Any]:
    return {"samples": len(first), "first_p50": pct(first, 50), "first_p99": pct(first, 99),
            "all_p50": pct(allc, 50), "all_p99": pct(allc, 99), "submit_p50": pct(sub, 50), "submit_p99": pct(sub, 99)}


def run(quick: bool = False, n: int | None = None, k: int = 4, workers: int = 1, concurrency: int = 8,
        profile: bool = True) -> dict[str, Any]:
    n = n or (40 if quick else 200)
    m = 10 if quick else 30
    rounds = 1 if quick else 2
    timeout = 15 if quick else 40
    print(f"\n== fan-out: {n} announcements × {k} webhook channels, {workers} worker process(es) × "
          f"{concurrency} threads, SQLite ledger ==", flush=True)
    with Bench(NAME) as bench:
        rig = Rig(bench, k, workers, concurrency)
        results: dict[str, Any] = {"params": {"n": n, "k": k, "workers": workers, "concurrency": concurrency,
                                              "pool": "threads", "ledger": "sqlite", "rounds": rounds,
                                              "latency_samples": m}, "rounds": []}
        for r in range(rounds):
            last = r == rounds - 1
            log(f"round {r + 1}: baseline (bare Celery task + httpx)")
            raw = rig.raw_throughput(n, timeout, f"r{r}")
            if last:
                log("idle latency: baseline")
                results["latency_baseline"] = rig.raw_latency(m)
            log(f"round {r + 1}: system (submit → ledger → worker → adapter → ledger)")
            sys_ = rig.system_throughput(n, timeout, f"r{r}")
            if last:
                log("idle latency: system")
                results["latency_system"] = rig.system_latency(m)
            ratio = (sys_["deliveries_per_s"] or 0) / raw["deliveries_per_s"] if raw["deliveries_per_s"] else None
            results["rounds"].append({"baseline": raw, "system": sys_, "ratio": round(ratio, 3) if ratio else None})
            log(f"  baseline {raw['deliveries_per_s']}/s, system {sys_['deliveries_per_s']}/s, ratio {ratio:.2f}")

        ratios = [x["ratio"] for x in results["rounds"] if x["ratio"]]
        best = max(results["rounds"], key=lambda x: x["ratio"] or 0)
        import statistics

        results["ratio_median"] = round(statistics.median(ratios), 3) if ratios else None
        results["ratio_best"] = best["ratio"]
        lat = results["latency_system"]
        results["targets"] = {
            "ratio>=0.9": bool(results["ratio_median"] and results["ratio_median"] >= 0.9),
            "p99_first<=250ms": bool(lat["first_p99"] is not None and lat["first_p99"] <= 0.25),
        }

        if profile:
            secs = 4 if quick else 10
            log(f"profiling one worker for {secs}s under the same load (not counted in the figures)")
            rig.start_workers(raw=False)
            spy, out = pyspy_record(bench, rig.procs[0].pid, secs, "fanout-worker")
            t_end = time.time() + secs
            i = 0
            while time.time() < t_end:
                for _ in range(20):
                    rig.submit(i, "profile")
                    i += 1
                time.sleep(0.05)
            pyspy_wait(spy)
            results["profile_worker"] = top_frames(out, 20)
            results["profile_worker"]["breakdown"] = inclusive_of(out, [
                "create_app.<locals>.deliver", "attempt", "_peek", "Ledger.claim", "Ledger.get_announcement",
                "build_message", "render_post", "Webhook.send", "Ledger.transition", "RedisBreaker.allow",
                "RedisBreaker.success", "Ledger.tx", "Ledger.read", "DefaultDialect.do_execute",
                "DefaultDialect.do_commit"])
            time.sleep(1)

        rows = []
        for idx, rnd in enumerate(results["rounds"], 1):
            rows.append([idx, rnd["baseline"]["deliveries_per_s"], rnd["system"]["deliveries_per_s"], rnd["ratio"],
                         rnd["system"]["submits_per_s"], rnd["system"]["delivered"], rnd["system"]["standin_dupes"]])
        table(f"fan-out throughput ({n}×{k} = {n * k} deliveries)",
              ["round", "baseline/s", "system/s", "ratio", "submits/s", "delivered", "dupes"], rows)
        lb, ls = results["latency_baseline"], results["latency_system"]
        table(f"idle latency ({m} announcements, one at a time)",
              ["path", "first p50", "first p99", "all p50", "all p99", "submit p50", "submit p99"],
              [["baseline", ms(lb["first_p50"]), ms(lb["first_p99"]), ms(lb["all_p50"]), ms(lb["all_p99"]),
                ms(lb["submit_p50"]), ms(lb["submit_p99"])],
               ["system", ms(ls["first_p50"]), ms(ls["first_p99"]), ms(ls["all_p50"]), ms(ls["all_p99"]),
                ms(ls["submit_p50"]), ms(ls["submit_p99"])]])
        print(f"system latency split per delivery: submit → claimed p50 {ms(ls.get('claim_wait_p50'))} / p99 "
              f"{ms(ls.get('claim_wait_p99'))}; claimed → recorded p50 {ms(ls.get('engine_p50'))} / p99 "
              f"{ms(ls.get('engine_p99'))}", flush=True)
        print(f"targets: ratio ≥ 0.9 → {results['targets']['ratio>=0.9']} (median {results['ratio_median']}); "
              f"p99 first ≤ 250 ms → {results['targets']['p99_first<=250ms']}", flush=True)
        if profile:
            print_profile("worker profile (py-spy, active threads)", results["profile_worker"])
        rig.stop_workers()
    write_json(NAME, results)
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("-n", type=int, default=None)
    p.add_argument("-k", type=int, default=4)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("-c", "--concurrency", type=int, default=8)
    p.add_argument("--no-profile", action="store_true")
    a = p.parse_args(argv)
    run(a.quick, a.n, a.k, a.workers, a.concurrency, not a.no_profile)


if __name__ == "__main__":
    main()
