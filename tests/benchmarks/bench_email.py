"""Bulk email: one announcement to 100,000 recipients (``--quick``: 10,000) through the whole
system — submit → ledger → Celery worker → email adapter (one message per recipient, durable
per-address progress) → a loopback SMTP sink — against bare smtplib loops over one connection.

The sink is a minimal asyncio SMTP server (``common._smtpsink_main``) that answers at once and
stores nothing, so it is not the bottleneck. Two bare loops run in their own processes:
``fixed`` sends one pre-built message per recipient (the floor), ``mime`` builds each message
with the adapter's own pure functions (``_mail.build`` → ``to_mime`` → ``smtp_payload``) and so
isolates the cost of message building from the cost of durable bookkeeping.

Every run is bounded: when a budget runs out, the rate so far is reported and the time for all
recipients extrapolated (marked ``extrapolated``).

    python -m tests.benchmarks.bench_email [--quick] [-r RECIPIENTS]
"""

from __future__ import annotations

import argparse
import json
import resource
import smtplib
import sys
import time
from typing import Any

from .common import (
    PY,
    Bench,
    free_port,
    inclusive_of,
    log,
    print_profile,
    pyspy_record,
    pyspy_wait,
    rss_peak_mb,
    settings_data,
    smtp_count,
    table,
    top_frames,
    wait_consumers,
    wait_port,
    write_json,
)

NAME = "email"
FROM = "Status <status@example.com>"
BODY = ("We are investigating elevated error rates on the public API. Some requests may fail or be slow; "
        "we will post an update within 30 minutes.\n\n**Affected:** API, Website.")


def addresses(n: int) -> list[str]:
    return [f"user{i:06d}@example.com" for i in range(n)]


# ---------------------------------------------------------------- the bare loops (own process)


def bare(port: int, n: int, budget: float, mode: str) -> dict[str, Any]:
    from broadcaster.channels import _mail
    from broadcaster.models import Post

    post = Post(channel="mail", kind="incident", title="[Investigating] Elevated API errors", text=BODY,
                parts=(BODY,), html="<p>" + BODY + "</p>", url="http://127.0.0.1:8080/a/ann_x", meta={})

    def payload(to: str) -> bytes:
        mail = _mail.build(post, key="dlv_bench", to=to, domain="example.com", unsubscribe_url=None, marketing=False)
        return _mail.smtp_payload(_mail.to_mime(mail, from_address=FROM, reply_to=None, date=time.time()))

    fixed = payload("user000000@example.com")
    conn = smtplib.SMTP("127.0.0.1", port, timeout=30)
    conn.ehlo()
    t0 = time.time()
    sent = 0
    for to in addresses(n):
        data = fixed if mode == "fixed" else payload(to)
        conn.mail("status@example.com")
        conn.rcpt(to)
        code, _ = conn.docmd("data")
        if code != 354:
            raise RuntimeError(f"DATA refused: {code}")
        conn.send(data)
        code, _ = conn.getreply()
        if code != 250:
            raise RuntimeError(f"message refused: {code}")
        sent += 1
        if sent % 50 == 0 and time.time() - t0 > budget:
            break
    wall = time.time() - t0
    conn.quit()
    return {"mode": mode, "sent": sent, "wall_s": round(wall, 3), "per_s": round(sent / wall, 1),
            "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "message_bytes": len(fixed)}


def run_bare(bench: Bench, port: int, n: int, budget: float, mode: str) -> dict[str, Any]:
    import subprocess

    out = subprocess.run([PY, "-m", "tests.benchmarks.bench_email", "bare", str(port), str(n), str(budget), mode],
                         capture_output=True, text=True,
                         timeout=budget + 60, env=_env())
    if out.returncode != 0:
        raise RuntimeError(f"bare loop failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["complete"] = res["sent"] >= n
    res["time_for_all_s"] = round(n / res["per_s"], 1) if res["per_s"] else None
    return res


def _env() -> dict[str, str]:
    import os

    from .common import ROOT

    return {**os.environ, "PYTHONPATH": str(ROOT)}


# ---------------------------------------------------------------- the system


def run(quick: bool = False, recipients: int | None = None, profile: bool = True) -> dict[str, Any]:
    from broadcaster import service
    from broadcaster.runtime import Runtime
    from broadcaster.tasks import celery_enqueuer

    from .common import load

    n = recipients or (10_000 if quick else 100_000)
    budget = 14 if quick else 100
    bare_budget = 4 if quick else 22
    print(f"\n== bulk email: {n} recipients, one SMTP sink on loopback ==", flush=True)
    with Bench(NAME) as bench:
        bench.start_redis()
        port = free_port()
        sink = bench.procs.py("smtpsink", "smtpsink", str(port))
        wait_port(port, proc=sink)
        channels = {"mail": {"kind": "email", "transport": "smtp",
                             "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": "30s"},
                             "from_address": FROM, "recipients": addresses(n), "batch_size": 10_000}}
        data = settings_data(f"sqlite:///{bench.dir}/ledger.db", bench.redis_url, channels,
                             policy={"defaults": {"attempts": 8, "backoff": {"base": "1s", "max": "60s"},
                                                  "timeout": "30s"}})
        path = bench.write_settings(data)
        settings = load(path)
        rt = Runtime.from_settings(settings, enqueuer=celery_enqueuer(settings))
        bench.on_close(lambda: (rt.close(), rt.ledger.close()))

        log("bare smtplib loop, one pre-built message, one connection")
        fixed = run_bare(bench, port, n, bare_budget, "fixed")
        log("bare smtplib loop, each message built by the adapter's _mail functions")
        mime = run_bare(bench, port, n, bare_budget, "mime")

        worker = bench.procs.py("worker", "worker", str(path), "-c", "2")
        wait_consumers(bench, 1, [worker])
        base = smtp_count(port)
        log(f"broadcaster: submit → worker → email adapter (budget {budget} s)")
        t0 = time.time()
        ann = service.submit(rt, {"kind": "incident", "title": "Elevated API errors", "body": BODY},
                             principal=service.SYSTEM).id
        spy, prof_out = (None, None)
        done_at, state, timeline = None, None, []
        prof_started = False
        while time.time() - t0 < budget:
            time.sleep(1.0)
            sent = smtp_count(port) - base
            timeline.append((round(time.time() - t0, 1), sent))
            if profile and not prof_started and time.time() - t0 > 3:
                spy, prof_out = pyspy_record(bench, worker.pid, 4 if quick else 10, "email-worker")
                prof_started = True
            d = rt.ledger.deliveries_of(ann)[0]
            state = str(d.state)
            if d.settled_at:
                done_at = d.settled_at
                break
        rss = rss_peak_mb(worker.pid)
        sent = smtp_count(port) - base
        wall = (done_at or time.time()) - t0
        pyspy_wait(spy)
        bench.procs.stop(worker)
        per_s = sent / wall if wall > 0 else 0
        ours = {"sent": sent, "state": state, "complete": done_at is not None and sent >= n, "wall_s": round(wall, 2),
                "per_s": round(per_s, 1), "rss_peak_mb": round(rss or 0, 1),
                "time_for_all_s": round(wall if done_at else n / per_s, 1) if per_s else None,
                "extrapolated": done_at is None, "timeline": timeline[-10:]}
        prof = top_frames(prof_out, 20) if prof_out else None
        if prof:
            prof["breakdown"] = inclusive_of(prof_out, [
                "Email.send", "Email._one", "build", "to_mime", "smtp_payload", "LedgerProgress.mark",
                "Ledger.mark_items", "Ledger.extend_lease", "SmtpSender.deliver", "Email.audience"])

    ratio = ours["per_s"] / fixed["per_s"] if fixed["per_s"] else None
    ratio_mime = ours["per_s"] / mime["per_s"] if mime["per_s"] else None
    res = {"params": {"recipients": n, "batch_size": 10_000, "worker_concurrency": 2, "ledger": "sqlite",
                      "budget_s": budget, "bare_budget_s": bare_budget},
           "bare_fixed": fixed, "bare_mime": mime, "broadcaster": ours,
           "ratio_vs_bare": round(ratio, 3) if ratio else None,
           "ratio_vs_bare_mime": round(ratio_mime, 3) if ratio_mime else None,
           "targets": {"<=60s_for_100k": bool(ours["time_for_all_s"] and ours["time_for_all_s"] * (100_000 / n) <= 60),
                       "<=300MB_rss": bool(ours["rss_peak_mb"] and ours["rss_peak_mb"] <= 300),
                       ">=0.7x_bare": bool(ratio and ratio >= 0.7)},
           "profile_worker": prof}
    def row(label, r, ratio_):
        t = f"{r['time_for_all_s']} s" + (" (extrapolated)" if not r.get("complete") else "")
        return [label, r["per_s"], r["sent"], t, f"{r['rss_peak_mb']} MB", ratio_]
    table(f"bulk email ({n} recipients)", ["sender", "messages/s", "sent", f"time for {n}", "peak RSS", "ours ÷ it"],
          [row("bare smtplib, pre-built message", fixed, res["ratio_vs_bare"]),
           row("bare smtplib + adapter's MIME build", mime, res["ratio_vs_bare_mime"]),
           row("broadcaster worker (whole system)", ours, 1.0)])
    print(f"targets (scaled to 100,000): ≤ 60 s → {res['targets']['<=60s_for_100k']}; ≤ 300 MB RSS → "
          f"{res['targets']['<=300MB_rss']}; ≥ 0.7× bare → {res['targets']['>=0.7x_bare']}", flush=True)
    if prof:
        print_profile("email worker profile (py-spy)", prof)
    write_json(NAME, res)
    return res


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bare":
        print(json.dumps(bare(int(argv[1]), int(argv[2]), float(argv[3]), argv[4])))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("-r", "--recipients", type=int, default=None)
    p.add_argument("--no-profile", action="store_true")
    a = p.parse_args(argv)
    run(a.quick, a.recipients, not a.no_profile)


if __name__ == "__main__":
    main()
