"""Intake: authenticated ``POST /api/v1/announcements`` with unique Idempotency-Keys against the
real API (uvicorn: one process, and ``broadcaster api --workers 2``) on SQLite and on
PostgreSQL — accepted/s and p99 — and the rate at which unauthenticated junk is refused
(no ``Authorization`` header at all, and a wrong bearer token) — each with the API's CPU per
accepted (or refused) request, all its processes counted (``/proc``), which a loaded machine
disturbs much less than the rates.

The load generator is ``wrk`` (``apt-get install wrk``) with a Lua script that gives every
request its own Idempotency-Key; without wrk a bounded Python generator (httpx in threads) is
used instead and the table says so. The token is created with ``broadcaster.tokens.TokenStore``;
the token rate limit is lifted for the run (``api.rate_limit``), the anonymous one is left as
configured. No worker runs: deliveries wait in the private Redis.

    python -m tests.benchmarks.bench_intake [--quick] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import threading
import time
from typing import Any

from .common import (
    Bench,
    cpu_seconds,
    create_token,
    inclusive_of,
    log,
    ms,
    pct,
    pg_create,
    print_profile,
    pyspy_record,
    pyspy_wait,
    settings_data,
    start_api,
    table,
    top_frames,
    write_json,
)

NAME = "intake"
PAYLOAD = {"kind": "incident", "title": "Elevated API errors", "severity": "minor",
           "body": "We are investigating elevated error rates on the public API; next update in 30 minutes."}

WRK_SCRIPT = r"""
local threads = {}
local tcount = 0
function setup(thread)
  tcount = tcount + 1
  thread:set("tid", tcount)
  table.insert(threads, thread)
end
function init(args)
  tid = wrk.thread:get("tid")
  run = args[1] or "run"
  mode = args[2] or "post"
  token = args[3] or ""
  n = 0
  statuses = {}
end
function request()
  n = n + 1
  if mode == "post" then
    return wrk.format("POST", "/api/v1/announcements",
      {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json",
       ["Idempotency-Key"] = run .. "-" .. tid .. "-" .. n}, BODY)
  elseif mode == "badtoken" then
    return wrk.format("POST", "/api/v1/announcements",
      {["Authorization"] = "Bearer bct_not-a-real-token-" .. n, ["Content-Type"] = "application/json"}, BODY)
  else
    return wrk.format("POST", "/api/v1/announcements", {["Content-Type"] = "application/json"}, BODY)
  end
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do agg[tostring(k)] = (agg[tostring(k)] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(agg) do table.insert(parts, string.format('"%s":%d', k, v)) end
  io.write(string.format('BENCHJSON {"duration_us":%d,"requests":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"statuses":{%s}}\n',
    summary.duration, summary.requests, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, table.concat(parts, ",")))
end
"""


def wrk_run(bench: Bench, port: int, mode: str, token: str, seconds: int, conns: int, run: str) -> dict[str, Any]:
    script = bench.dir / "intake.lua"
    script.write_text(f"BODY = {json.dumps(json.dumps(PAYLOAD))}\n" + WRK_SCRIPT)
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
           f"http://127.0.0.1:{port}", "--", run, mode, token]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    r = json.loads(line[len("BENCHJSON "):])
    dur = r["duration_us"] / 1e6
    st = {int(k): v for k, v in r["statuses"].items()}
    return {"tool": "wrk", "seconds": round(dur, 2), "connections": conns, "requests": r["requests"], "statuses": st,
            "req_per_s": round(r["requests"] / dur, 1), "p50_s": r["p50_us"] / 1e6, "p99_s": r["p99_us"] / 1e6,
            "socket_errors": r["errors"]}


def py_run(port: int, mode: str, token: str, seconds: int, conns: int, run: str) -> dict[str, Any]:
    """The fallback generator: ``conns`` threads, one keep-alive httpx client each, bounded in time."""
    import httpx

    body = json.dumps(PAYLOAD)
    stop = time.monotonic() + seconds
    lat: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def loop(tid: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            i = 0
            while time.monotonic() < stop:
                i += 1
                h = {"Content-Type": "application/json"}
                if mode == "post":
                    h.update({"Authorization": f"Bearer {token}", "Idempotency-Key": f"{run}-{tid}-{i}"})
                elif mode == "badtoken":
                    h["Authorization"] = f"Bearer bct_not-a-real-token-{i}"
                t = time.perf_counter()
                code = c.post("/api/v1/announcements", content=body, headers=h).status_code
                d = time.perf_counter() - t
                with lock:
                    lat.append(d)
                    statuses[code] = statuses.get(code, 0) + 1

    t0 = time.monotonic()
    ths = [threading.Thread(target=loop, args=(i,)) for i in range(conns)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    dur = time.monotonic() - t0
    return {"tool": "python", "seconds": round(dur, 2), "connections": conns, "requests": len(lat),
            "statuses": statuses, "req_per_s": round(len(lat) / dur, 1), "p50_s": pct(lat, 50), "p99_s": pct(lat, 99)}


def intake_api(bench: Bench, ledger: str, name: str, k: int, processes: int = 1) -> tuple[Any, int, str]:
    """An API whose channels go nowhere (no worker runs), with its token lifted out of the rate limit."""
    channels = {f"wh{i}": {"kind": "webhook", "format": "generic", "url": f"http://127.0.0.1:9/hook/wh{i}"}
                for i in range(k)}
    data = settings_data(ledger, bench.redis_url, channels, api={"rate_limit": "10000000/1s"})
    path = bench.write_settings(data, f"settings-{name}")
    token = create_token(path, name)
    proc, port = start_api(bench, path, name, processes)
    return proc, port, token


def run(quick: bool = False, postgres: bool = True, k: int = 4, profile: bool = True,
        processes: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    seconds = 3 if quick else 15
    conns = 16
    have_wrk = shutil.which("wrk") is not None
    gen = "wrk" if have_wrk else "python (httpx threads; wrk not installed)"
    print(f"\n== intake: POST /api/v1/announcements ({k} channels each), {seconds} s per run, {conns} connections, "
          f"generator: {gen} ==", flush=True)

    def load_run(bench, port, mode, token, secs, tag, api=None):
        """One run; with ``api`` (its process) also the API's CPU seconds (all its processes)."""
        before = cpu_seconds([api.pid]) if api is not None else 0.0
        r = wrk_run(bench, port, mode, token, secs, conns, tag) if have_wrk else \
            py_run(port, mode, token, secs, conns, tag)
        if api is not None:
            r["api_cpu_s"] = round(cpu_seconds([api.pid]) - before, 3)
        return r

    def cpu_per_good(r: dict[str, Any], good: int) -> None:
        r["api_cpu_ms_per_good"] = round(1000 * r["api_cpu_s"] / good, 2) if good else None

    res: dict[str, Any] = {"params": {"seconds": seconds, "connections": conns, "channels": k, "generator": gen,
                                      "api_processes": list(processes)}, "runs": {}}
    prof = None
    with Bench(NAME) as bench:
        bench.start_redis()
        backends = [("sqlite", f"sqlite:///{bench.dir}/ledger.db")]
        if postgres:
            try:
                url, drop = pg_create()
                bench.on_close(drop)
                backends.append(("postgresql", url))
            except Exception as exc:  # noqa: BLE001
                msg = f"PostgreSQL unavailable ({type(exc).__name__}: {exc}); skipped"
                print(msg, flush=True)
                for n in processes:
                    res["runs"][f"postgresql/{n}"] = {"skipped": msg}
        for n in processes:
            for name, url in backends:
                tag = f"{name}/{n}"
                proc, port, token = intake_api(bench, url, f"{name}-{n}", k, n)
                log(f"{tag}: warm-up ({n} API process{'es' if n > 1 else ''})")
                load_run(bench, port, "post", token, 1, f"warm-{name}-{n}")
                log(f"{tag}: authenticated posts with unique Idempotency-Keys")
                spy, out = (None, None)
                if profile and name == "sqlite" and n == 1:
                    spy, out = pyspy_record(bench, proc.pid, max(1, seconds - 2), f"intake-api-{name}")
                r = load_run(bench, port, "post", token, seconds, f"run-{name}-{n}-{time.time():.0f}", proc)
                pyspy_wait(spy)
                if out is not None:
                    prof = top_frames(out, 20)
                    prof["breakdown"] = inclusive_of(out, [
                        "IntakeGuard._admit", "TokenStore.verify", "Limiter.wait", "submit",
                        "AnnouncementIn.model_validate", "Ledger._replay", "Ledger.accept", "Runtime.enqueue",
                        "announcement_detail", "DefaultDialect.do_execute"])
                r["accepted"] = r["statuses"].get(202, 0)
                r["accepted_per_s"] = round(r["accepted"] / r["seconds"], 1)
                cpu_per_good(r, r["accepted"])
                res["runs"][tag] = r
                if name == "sqlite":
                    log(f"junk ({n} API process{'es' if n > 1 else ''}): no Authorization header")
                    j1 = load_run(bench, port, "noauth", "", seconds, "junk1", proc)
                    log(f"junk ({n} API process{'es' if n > 1 else ''}): wrong bearer token")
                    j2 = load_run(bench, port, "badtoken", "", seconds, "junk2", proc)
                    for j in (j1, j2):
                        j["refused"] = sum(v for c, v in j["statuses"].items() if c in (401, 429))
                        j["refused_per_s"] = round(j["refused"] / j["seconds"], 1)
                        cpu_per_good(j, j["refused"])
                    res["runs"][f"junk_no_auth/{n}"] = j1
                    res["runs"][f"junk_bad_token/{n}"] = j2
                bench.procs.stop(proc)
    res["profile_api_sqlite"] = prof
    runs = res["runs"]

    def best(key: str, what: str) -> float:
        return max((runs[f"{key}/{n}"].get(f"{what}_per_s", 0) for n in processes if f"{key}/{n}" in runs), default=0)

    acc = [best(b, "accepted") for b in ("sqlite", "postgresql") if any(f"{b}/{n}" in runs and "skipped" not in
                                                                        runs[f"{b}/{n}"] for n in processes)]
    res["targets"] = {">=500_accepted_per_s": bool(acc and min(acc) >= 500),
                      "junk_refused>=5000_per_s": best("junk_no_auth", "refused") >= 5000}
    rows = []
    for n in processes:
        for label, key, what in (("accepted, SQLite", "sqlite", "accepted"),
                                 ("accepted, PostgreSQL", "postgresql", "accepted"),
                                 ("junk: no token", "junk_no_auth", "refused"),
                                 ("junk: wrong token", "junk_bad_token", "refused")):
            r = runs.get(f"{key}/{n}")
            if not r or "skipped" in r:
                rows.append([label, n, "skipped", "-", "-", "-", "-", "-"])
                continue
            cpu = r.get("api_cpu_ms_per_good")
            rows.append([label, n, r[f"{what}_per_s"], r["req_per_s"], "-" if cpu is None else cpu,
                         ms(r["p50_s"]), ms(r["p99_s"]),
                         ", ".join(f"{c}×{v}" for c, v in sorted(r["statuses"].items()))])
    table("intake", ["load", "API procs", "good/s", "requests/s", "API CPU ms/good", "p50", "p99", "statuses"], rows)
    print(f"targets (best configuration): ≥ 500 accepted/s → {res['targets']['>=500_accepted_per_s']}; "
          f"junk refused ≥ 5,000/s → {res['targets']['junk_refused>=5000_per_s']}", flush=True)
    if prof:
        print_profile("API profile, accepted posts on SQLite, 1 process (py-spy)", prof)
    write_json(NAME, res)
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("-k", type=int, default=4)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="API process counts to run (default 1 2)")
    a = p.parse_args(argv)
    run(a.quick, not a.no_postgres, a.k, not a.no_profile, tuple(a.processes))


if __name__ == "__main__":
    main()
