"""Bulk email: one announcement to 100,000 recipients (``--quick``: 10,000) through the whole
system — submit → ledger → Celery worker → email adapter (one message per recipient, durable
per-address progress) → a loopback SMTP sink — with the channel's ``connections`` at 1, 2, 4 and
8 (a fresh worker and mailing each), against bare smtplib loops over one connection (the
pre-built one runs before and after the system runs; the faster is the floor). The load average
is printed with each run: the machine may be shared.

The sink is a minimal asyncio SMTP server (``common._smtpsink_main``) that answers at once and
stores nothing, so it is not the bottleneck; it offers PIPELINING, as Postfix does, so the worker
drives its connections in rounds (``channels/_rounds.py``) — the bare loops speak smtplib one
command at a time, as the issue's baseline does. Two bare loops run in their own processes:
``fixed`` sends one pre-built message per recipient (the floor), ``mime`` builds each message
with the adapter's own pure functions (``_mail.build`` → ``to_mime`` → ``smtp_payload``) and so
isolates the cost of message building from the cost of durable bookkeeping.

Every run is bounded: when a budget runs out, the rate so far is reported and the time for all
recipients extrapolated (marked ``extrapolated``).

    python -m tests.benchmarks.bench_email [--quick] [-r RECIPIENTS] [-c CONNECTIONS ...]
    python -m tests.benchmarks.bench_email adapter [-r RECIPIENTS] [-c CONNECTIONS ...] [--rounds N] [--no-ledger]
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
    cpu_seconds,
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
        mail = _mail.build(post, key="dlv_bench", to=to, domain="example.com", unsubscribe_url=None)
        return _mail.smtp_payload(_mail.to_mime(mail, from_address=FROM, reply_to=None, date=time.time()))

    fixed = payload("user000000@example.com")
    conn = smtplib.SMTP("127.0.0.1", port, timeout=30)
    conn.ehlo()
    t0, cpu0 = time.time(), time.process_time()
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
    wall, cpu = time.time() - t0, time.process_time() - cpu0
    conn.quit()
    return {"mode": mode, "sent": sent, "wall_s": round(wall, 3), "per_s": round(sent / wall, 1),
            "cpu_us_per_msg": round(1e6 * cpu / sent) if sent else None,
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


#: the SMTP connection counts measured, each a fresh worker and a fresh mailing (issue 15 part 3)
CONNECTIONS = (1, 2, 4, 8)


def loadavg() -> str:
    import os

    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_system(bench: Bench, rt, port: int, n: int, budget: float, connections: int, channel: dict[str, Any],
               data_for, profile: bool, quick: bool, sink_pid: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One mailing to ``n`` recipients through a fresh worker whose email channel uses
    ``connections`` SMTP connections: submit → worker → adapter → sink, until settled or ``budget``."""
    from broadcaster import service

    path = bench.write_settings(data_for({"mail": {**channel, "connections": connections}}), name=f"settings-c{connections}")
    worker = bench.procs.py(f"worker-c{connections}", "worker", str(path), "-c", "2")
    wait_consumers(bench, 1, [worker])
    base = smtp_count(port)
    cpu0, sink0 = cpu_seconds([worker.pid]), cpu_seconds([sink_pid])
    load_before = loadavg()
    log(f"broadcaster, {connections} SMTP connection(s): submit → worker → email adapter (budget {budget} s, "
        f"load {load_before})")
    t0 = time.time()
    ann = service.submit(rt, {"kind": "incident", "title": "Elevated API errors", "body": BODY},
                         principal=service.SYSTEM).id
    spy, prof_out = (None, None)
    done_at, state, timeline = None, None, []
    prof_started = False
    while time.time() - t0 < budget:
        time.sleep(0.5)
        sent = smtp_count(port) - base
        timeline.append((round(time.time() - t0, 1), sent))
        if profile and not prof_started and time.time() - t0 > 2:
            spy, prof_out = pyspy_record(bench, worker.pid, 4 if quick else 8, f"email-worker-c{connections}")
            prof_started = True
        d = rt.ledger.deliveries_of(ann)[0]
        state = str(d.state)
        if d.settled_at:
            done_at = d.settled_at
            break
    rss = rss_peak_mb(worker.pid)
    cpu1, sink1 = cpu_seconds([worker.pid]), cpu_seconds([sink_pid])
    sent = smtp_count(port) - base
    wall = (done_at or time.time()) - t0
    pyspy_wait(spy)
    bench.procs.stop(worker)
    per_s = sent / wall if wall > 0 else 0
    ours = {"connections": connections, "sent": sent, "state": state, "complete": done_at is not None and sent >= n,
            "wall_s": round(wall, 2), "per_s": round(per_s, 1), "rss_peak_mb": round(rss or 0, 1),
            "time_for_all_s": round(wall if done_at else n / per_s, 1) if per_s else None,
            "extrapolated": done_at is None, "load_before": load_before, "load_after": loadavg(),
            "cpu_us_per_msg": round(1e6 * (cpu1 - cpu0) / sent) if sent else None,
            "sink_cpu_us_per_msg": round(1e6 * (sink1 - sink0) / sent) if sent else None,
            "timeline": timeline}
    prof = top_frames(prof_out, 20) if prof_out else None
    if prof:
        prof["breakdown"] = inclusive_of(prof_out, [
            "Email.send", "Rounds._read", "Rounds._write_marks", "Rounds._send", "Template.payload",
            "LedgerProgress.mark_all", "Ledger.mark_items_and_extend", "SmtpSender.read_body",
            "SmtpSender.read_envelope", "Email._lane", "Committer._write", "Email.audience"])
    return ours, prof


def run(quick: bool = False, recipients: int | None = None, profile: bool = True,
        connections: tuple[int, ...] = CONNECTIONS) -> dict[str, Any]:
    from broadcaster.channels.email import DEFAULT_CONNECTIONS
    from broadcaster.runtime import Runtime
    from broadcaster.tasks import celery_enqueuer

    from .common import load

    n = recipients or (10_000 if quick else 100_000)
    budget = 14 if quick else 60
    bare_budget = 4 if quick else 22
    print(f"\n== bulk email: {n} recipients, one SMTP sink on loopback, {', '.join(map(str, connections))} "
          f"connection(s); load {loadavg()} ==", flush=True)
    with Bench(NAME) as bench:
        bench.start_redis()
        port = free_port()
        sink = bench.procs.py("smtpsink", "smtpsink", str(port))
        wait_port(port, proc=sink)
        channel = {"kind": "email", "transport": "smtp",
                   "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": "30s"},
                   "from_address": FROM, "recipients": addresses(n), "batch_size": 10_000}

        def data_for(channels: dict[str, Any]) -> dict[str, Any]:
            return settings_data(f"sqlite:///{bench.dir}/ledger.db", bench.redis_url, channels,
                                 policy={"defaults": {"attempts": 8, "backoff": {"base": "1s", "max": "60s"},
                                                      "timeout": "30s"}})

        settings = load(bench.write_settings(data_for({"mail": channel})))
        rt = Runtime.from_settings(settings, enqueuer=celery_enqueuer(settings))
        bench.on_close(lambda: (rt.close(), rt.ledger.close()))

        log(f"bare smtplib loop, one pre-built message, one connection (load {loadavg()})")
        fixed = run_bare(bench, port, n, bare_budget, "fixed")
        log("bare smtplib loop, each message built by the adapter's _mail functions")
        mime = run_bare(bench, port, n, bare_budget, "mime")

        runs: dict[str, dict[str, Any]] = {}  # "4", and "4 (again)" when a count is measured twice
        prof = None
        for c in connections:
            key = str(c) if str(c) not in runs else f"{c} (again)"
            runs[key], p = run_system(bench, rt, port, n, budget, c, channel, data_for,
                                    profile and c == DEFAULT_CONNECTIONS, quick, sink.pid)
            prof = p or prof
        log(f"bare smtplib loop again, after the system runs (load {loadavg()})")
        fixed_after = run_bare(bench, port, n, bare_budget, "fixed")

    default = runs.get(str(DEFAULT_CONNECTIONS)) or list(runs.values())[-1]
    floor = max(fixed["per_s"], fixed_after["per_s"])  # the faster of the two bare runs: the harder bar

    def ratio(r: dict[str, Any], base: float) -> float | None:
        return round(r["per_s"] / base, 3) if base else None

    for r in runs.values():
        r["ratio_vs_bare"] = ratio(r, floor)
    res = {"params": {"recipients": n, "batch_size": 10_000, "worker_concurrency": 2, "ledger": "sqlite",
                      "budget_s": budget, "bare_budget_s": bare_budget, "connections": list(connections),
                      "default_connections": DEFAULT_CONNECTIONS},
           "bare_fixed": fixed, "bare_fixed_after": fixed_after, "bare_mime": mime,
           "broadcaster": default, "by_connections": runs,
           "ratio_vs_bare": ratio(default, floor), "ratio_vs_bare_mime": ratio(default, mime["per_s"]),
           "targets": {"<=20s_for_100k": bool(default["time_for_all_s"]
                                              and default["time_for_all_s"] * (100_000 / n) <= 20),
                       "<=300MB_rss": bool(default["rss_peak_mb"] and default["rss_peak_mb"] <= 300),
                       ">=1.5x_bare": bool(ratio(default, floor) and ratio(default, floor) >= 1.5)},
           "profile_worker": prof}

    def row(label, r, ratio_):
        t = f"{r['time_for_all_s']} s" + (" (extrapolated)" if not r.get("complete") else "")
        return [label, r["per_s"], r["sent"], t, f"{r['rss_peak_mb']} MB", ratio_, r.get("cpu_us_per_msg"),
                r.get("load_before", "")]
    rows = [row("bare smtplib, pre-built message, 1 connection", fixed, round(fixed["per_s"] / floor, 3)),
            row("  the same, after the system runs", fixed_after, round(fixed_after["per_s"] / floor, 3)),
            row("bare smtplib + adapter's MIME build", mime, round(mime["per_s"] / floor, 3))]
    rows += [row(f"broadcaster worker, {c} connection{'s' if c > 1 else ''}"
                 + (" (default)" if c == DEFAULT_CONNECTIONS else "") + (" again" if "again" in key else ""),
                 r, r["ratio_vs_bare"]) for key, r in runs.items() for c in [r["connections"]]]
    table(f"bulk email ({n} recipients)", ["sender", "messages/s", "sent", f"time for {n}", "peak RSS",
                                           "÷ bare pre-built", "CPU µs/msg", "load before"], rows)
    print(f"targets (default {DEFAULT_CONNECTIONS} connections, scaled to 100,000): ≤ 20 s → "
          f"{res['targets']['<=20s_for_100k']}; ≤ 300 MB RSS → {res['targets']['<=300MB_rss']}; ≥ 1.5× bare → "
          f"{res['targets']['>=1.5x_bare']}", flush=True)
    if prof:
        print_profile(f"email worker profile, {DEFAULT_CONNECTIONS} connections (py-spy)", prof)
    write_json(NAME, res)
    return res


# ---------------------------------------------------------------- the adapter alone


def adapter_sweep(n: int, connections: tuple[int, ...], rounds: int, ledger_progress: bool = True) -> list[dict[str, Any]]:
    """``Email.send`` in this process, with the worker's durable progress (``LedgerProgress`` on
    a SQLite ledger; ``--no-ledger``: in memory, to see what the writes cost), to the sink: no
    Celery, no claim. Prints, per connection count and round, messages/s, CPU µs per message and
    messages per progress write (the group commit). Rounds run the counts forwards, then
    backwards, so a change in the machine's load hits both ends."""
    import os
    import tempfile

    from broadcaster.channels import _lanes
    from broadcaster.channels.base import MemoryProgress
    from broadcaster.channels.email import Email, EmailSettings
    from broadcaster.engine import LedgerProgress
    from broadcaster.ledger.repository import Ledger
    from broadcaster.models import Announcement, Message

    writes = [0]
    write_marks = _lanes.write_marks

    def counting_write(progress, marks):  # how many progress writes the pass made (threads or rounds)
        writes[0] += 1
        write_marks(progress, marks)

    _lanes.write_marks = counting_write  # type: ignore[assignment]
    out = []
    with Bench(NAME + "-adapter") as bench:
        port = free_port()
        sink = bench.procs.py("smtpsink", "smtpsink", str(port))
        wait_port(port, proc=sink)
        ledger = Ledger.open(f"sqlite:///{tempfile.mkdtemp(dir=bench.dir)}/ledger.db")
        bench.on_close(ledger.close)

        class Rt:
            deliveries = ledger

        order = [c for r in range(rounds) for c in (connections if r % 2 == 0 else connections[::-1])]
        for c in order:
            st = EmailSettings.model_validate({
                "kind": "email", "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
                "from_address": FROM, "recipients": addresses(n), "batch_size": 10_000, "connections": c})
            ch = Email("mail", st)
            post = ch.render(Message(announcement=Announcement(id="ann_x", kind="incident",
                                                               title="Elevated API errors", body=BODY)))
            ann, _ = ledger.create_announcement({"kind": "incident", "title": "t", "body": "b"},
                                                [{"channel": "mail", "state": "pending"}], actor="bench")
            [d] = ledger.deliveries_of(ann)
            ledger.claim_with_announcement(d.id, "bench", 600)
            base, writes[0] = smtp_count(port), 0
            t0, cpu0 = time.time(), time.process_time()
            progress = LedgerProgress(Rt(), d, "bench", 600) if ledger_progress else MemoryProgress()
            ch.send(post, key=d.id, progress=progress)
            wall, cpu = time.time() - t0, time.process_time() - cpu0
            sent = smtp_count(port) - base
            r = {"connections": c, "progress": "ledger" if ledger_progress else "memory", "sent": sent,
                 "wall_s": round(wall, 2), "per_s": round(sent / wall),
                 "cpu_us_per_msg": round(1e6 * cpu / sent), "msgs_per_commit": round(sent / max(writes[0], 1), 2),
                 "load": round(os.getloadavg()[0], 1)}
            out.append(r)
            log(f"{c} connection(s): {r['per_s']} msg/s, {r['cpu_us_per_msg']} µs CPU/msg, "
                f"{r['msgs_per_commit']} msgs per progress write (load {r['load']})")
    _lanes.write_marks = write_marks  # type: ignore[assignment]
    write_json(NAME + "_adapter" + ("" if ledger_progress else "_memory"), {"recipients": n, "runs": out})
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bare":
        print(json.dumps(bare(int(argv[1]), int(argv[2]), float(argv[3]), argv[4])))
        return
    if argv and argv[0] == "adapter":
        q = argparse.ArgumentParser(prog="bench_email adapter", description=adapter_sweep.__doc__.split("\n")[0])
        q.add_argument("-r", "--recipients", type=int, default=8000)
        q.add_argument("-c", "--connections", type=int, action="append")
        q.add_argument("--rounds", type=int, default=2)
        q.add_argument("--no-ledger", action="store_true", help="progress in memory instead of the ledger")
        b = q.parse_args(argv[1:])
        adapter_sweep(b.recipients, tuple(b.connections or (*CONNECTIONS, 16)), b.rounds, not b.no_ledger)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("-r", "--recipients", type=int, default=None)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("-c", "--connections", type=int, action="append",
                   help=f"SMTP connection counts to measure (repeatable; default {' '.join(map(str, CONNECTIONS))})")
    a = p.parse_args(argv)
    run(a.quick, a.recipients, not a.no_profile, tuple(a.connections or CONNECTIONS))


if __name__ == "__main__":
    main()
