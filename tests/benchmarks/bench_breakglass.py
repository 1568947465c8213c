"""Break-glass over the ledger twin: what the journal costs.

``post --direct`` runs ``engine.attempt`` over a memory twin of the ledger that fsyncs every
transaction to its journal. Measured here, in one process with no services:

- one attempt end to end (claim, render, a webhook send over httpx.MockTransport, outcome) on
  the twin in memory, the journalled twin and the SQLite ledger;
- per-recipient progress marks of a mailing (one transaction per message, as the email adapter
  writes them) on the same three.

    python -m tests.benchmarks.bench_breakglass [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from broadcaster import engine
from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from broadcaster.ledger.journal import Journal
from broadcaster.ledger.memory import MemoryLedger
from broadcaster.resilience import MemoryBreaker, MemoryRateLimiter
from broadcaster.runtime import Runtime

from .common import log, table, write_json

NAME = "breakglass"


def ledgers(tmp: Path) -> dict[str, Any]:
    return {"twin in memory": MemoryLedger(), "journalled twin": MemoryLedger(journal=Journal(tmp / "j.jsonl")),
            "SQLite ledger": Ledger.open(f"sqlite:///{tmp}/ledger.db")}


def attempts(ledger: Any, n: int) -> float:
    """Seconds per attempt of ``n`` deliveries (one announcement per delivery)."""
    settings = load_settings({"channels": {"hook": {"kind": "webhook", "url": "https://hooks.example/h"}}}, env={})
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})))
    rt = Runtime(settings, deliveries=ledger, breaker=MemoryBreaker(), limiter=MemoryRateLimiter(), http=http)
    ids = []
    for i in range(n):
        ann, _ = ledger.create_announcement({"kind": "incident", "title": f"t{i}", "body": "b", "channels": ["hook"]},
                                            [{"channel": "hook"}], actor="bench")
        ids.append(ledger.deliveries_of(ann)[0].id)
    started = time.perf_counter()
    for did in ids:
        assert engine.attempt(rt, did, owner="bench", channel="hook") == "delivered"
    elapsed = time.perf_counter() - started
    rt.close()
    http.close()
    return elapsed / n


def marks(ledger: Any, n: int) -> float:
    """Seconds per progress write of a mailing to ``n`` addresses (the previous address's outcome
    and the next one's ``sending``, one transaction, as ``channels/email.py`` folds them)."""
    ann, _ = ledger.create_announcement({"kind": "incident", "title": "t", "body": "b", "channels": ["mail"]},
                                        [{"channel": "mail"}], actor="bench")
    did = ledger.deliveries_of(ann)[0].id
    assert ledger.claim_with_announcement(did, "bench", 600) is not None
    started = time.perf_counter()
    for i in range(n):
        ledger.mark_items_and_extend(did, "bench", [([f"r{i - 1}@example.com"], "done", "250 ok"),
                                                    ([f"r{i}@example.com"], "sending", None)], None)
    return (time.perf_counter() - started) / n


def run(quick: bool = False) -> dict[str, Any]:
    n_attempts, n_marks = (50, 200) if quick else (300, 2000)
    out: dict[str, Any] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bc-bench-bg-") as tmp:
        for label, ledger in ledgers(Path(tmp)).items():
            log(f"{label}: {n_attempts} attempts, {n_marks} progress writes")
            per_attempt = attempts(ledger, n_attempts)
            per_mark = marks(ledger, n_marks)
            if isinstance(ledger, Ledger):
                ledger.close()
            out[label] = {"attempt_ms": round(per_attempt * 1000, 3), "mark_ms": round(per_mark * 1000, 3)}
            rows.append([label, f"{per_attempt * 1000:.2f}", f"{1 / per_attempt:.0f}", f"{per_mark * 1000:.3f}",
                         f"{10_000 * per_mark:.1f}"])
    table("break-glass: one attempt, and a mailing's progress writes",
          ["ledger", "ms/attempt", "attempts/s", "ms/progress write", "s per 10,000 addresses"], rows)
    write_json(NAME, {"attempts": n_attempts, "progress_writes": n_marks, "results": out})
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)
