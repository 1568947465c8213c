"""The ledger's own cost per operation, in one process with no other service: what the intake and
the worker pay the database for each thing they do.

- accept: an announcement with three deliveries (one transaction: rows, events, audit);
- attempt: one claim and one outcome, as ``engine.attempt`` writes them;
- batch: a claim of 20 deliveries and their 20 outcomes (two transactions), per delivery;
- drain: the same batch as a drain writes it — the claim, a start mark before each send (which
  records the outcome of the send before it, ``start_send``), the last outcome — per delivery;
- progress: ten item marks with the lease renewal, as a mailing writes them.

On SQLite (a file in a temporary directory) and, when it answers, PostgreSQL
(``BROADCASTER_TEST_PG``, default ``postgresql://postgres@127.0.0.1:5432/postgres``; a fresh
database is made and dropped). Each figure is the best of ``--rounds`` runs (the machine is
shared; the best run is the least disturbed one).

    python -m tests.benchmarks.bench_ledger [--quick] [--rounds N] [--no-postgres]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from broadcaster.ledger import Ledger
from broadcaster.models import DeliveryState as S, Receipt
from tests.benchmarks.scratch_ledgers import postgres_url, sqlite_url

CHANNELS = ("x", "y", "z")  # accept's own: the other operations each drain a channel of their own


def _new(ledger: Ledger, n: int, channels: tuple[str, ...] = CHANNELS) -> list[str]:
    ids = []
    for i in range(n):
        res = ledger.accept({"kind": "incident", "title": f"t{i}", "body": "b", "channels": list(channels)},
                            [{"channel": c} for c in channels], actor="bench")
        ids += [d.id for d in res.deliveries]
    return ids


def accept(ledger: Ledger, n: int) -> float:
    started = time.perf_counter()
    _new(ledger, n)
    return (time.perf_counter() - started) / n


def attempt(ledger: Ledger, n: int) -> float:
    ids = _new(ledger, n, ("a",))
    started = time.perf_counter()
    for did in ids:
        got = ledger.claim_with_announcement(did, "bench", 30)
        assert got is not None
        assert ledger.transition(got[0], S.DELIVERED, "delivered", owner="bench", attempted=True,
                                 receipt=Receipt(remote_id=did))
    return (time.perf_counter() - started) / n


def batch(ledger: Ledger, n: int, size: int = 20) -> float:
    _new(ledger, n, ("b",))
    started = time.perf_counter()
    done = 0
    while claimed := ledger.claim_batch("b", "bench", 30, size):
        oks = ledger.transition_many([(d, S.DELIVERED, "delivered", {"attempted": True, "receipt": Receipt(d.id)})
                                      for d, _ in claimed], owner="bench")
        assert all(oks)
        done += len(claimed)
    assert done == n
    return (time.perf_counter() - started) / n


def drain(ledger: Ledger, n: int, size: int = 20) -> float:
    _new(ledger, n, ("d",))
    started = time.perf_counter()
    done = 0
    while claimed := ledger.claim_batch("d", "bench", 30, size):
        waiting: list[Any] = []
        for d, _ in claimed:
            ok, oks = ledger.start_send(d.id, "bench", waiting)
            assert ok and all(oks)
            waiting = [(d, S.DELIVERED, "delivered", {"attempted": True, "receipt": Receipt(d.id)})]
        assert all(ledger.transition_many(waiting, owner="bench"))
        done += len(claimed)
    assert done == n
    return (time.perf_counter() - started) / n


def progress(ledger: Ledger, n: int) -> float:
    [did] = _new(ledger, 1, ("c",))
    assert ledger.claim_with_announcement(did, "bench", 30)
    started = time.perf_counter()
    for i in range(n):
        marks = [([f"r{i}-{k}@example.test" for k in range(10)], "done", "250 ok")]
        assert ledger.mark_items_and_extend(did, "bench", marks, 30)
    return (time.perf_counter() - started) / n


OPERATIONS: dict[str, Callable[[Ledger, int], float]] = {
    "accept (3 channels)": accept, "attempt (claim + outcome)": attempt, "batch of 20, per delivery": batch,
    "drain's batch of 20 + start marks": drain,
    "progress (10 items + lease)": progress}


def measure(make_url: Callable[[], Any], n: int, rounds: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(rounds):
        with make_url() as url:
            ledger = Ledger.open(url)
            for name, op in OPERATIONS.items():
                op(ledger, max(2, n // 10))  # warm the statement caches and the connection pool
                ms = op(ledger, n) * 1000
                best[name] = min(best.get(name, ms), ms)
            ledger.close()
    return {k: round(v, 3) for k, v in best.items()}


def run(quick: bool = False, *, rounds: int = 3, postgres: bool = True) -> dict[str, dict[str, float]]:
    n = 100 if quick else 400
    out = {"SQLite": measure(sqlite_url, n, rounds)}
    if postgres:
        try:
            out["PostgreSQL"] = measure(postgres_url, n, rounds)
        except Exception as exc:  # noqa: BLE001 - a laptop without PostgreSQL still gets the SQLite figures
            print(f"PostgreSQL skipped: {type(exc).__name__}: {exc}")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-postgres", action="store_true")
    a = p.parse_args(argv)
    res = run(a.quick, rounds=a.rounds, postgres=not a.no_postgres)
    print(f"{'ms per operation (best of ' + str(a.rounds) + ')':40}" + "".join(f"{db:>12}" for db in res))
    for name in OPERATIONS:
        print(f"{name:40}" + "".join(f"{res[db][name]:>12.3f}" for db in res))


if __name__ == "__main__":
    main()
