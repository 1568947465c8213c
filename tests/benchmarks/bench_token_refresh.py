"""Token renewal: what it costs a send, a renewal, and many processes due at once.

- ``Credential.token()`` when nothing is due — what every request of a renewable channel pays;
- one renewal end to end against the sandbox's X token endpoint on loopback: the Redis lock
  (a private redis-server), the store read, the token request, the fsynced atomic file write;
- N credentials (N worker processes' views: each its own memory, one store, one Redis lock) due
  at the same moment: how many token requests reach X (must be 1) and how long until every one
  holds the new token.

    python -m tests.benchmarks.bench_token_refresh [--quick]
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import redis as redis_lib

from broadcaster.channels.x import XSettings
from broadcaster.config import Secret
from broadcaster.oauth.credential import Credential
from broadcaster.oauth.lock import RedisRefreshLock
from broadcaster.oauth.providers import PROVIDERS
from broadcaster.oauth.store import FileTokenStore
from broadcaster.oauth.tokens import TokenSet, fingerprint
from broadcaster.sandbox import Sandbox

from .common import Bench, pct, table, write_json

NAME = "token_refresh"
REFRESH = "bench-refresh-token"


def settings(sandbox: Sandbox, folder: str) -> XSettings:
    return XSettings(base_url=sandbox.url("x"), access_token="bench-access-token",
                     refresh={"client_id": "bench", "refresh_token": REFRESH,
                              "store": {"file": f"{folder}/{{channel}}.json"}})


def due_set(expires_in: float) -> TokenSet:
    now = time.time()
    return TokenSet(access=Secret(f"stored-{now}"), refresh=Secret(REFRESH), expires_at=now + expires_in,
                    obtained_at=now - 7200 + expires_in, checked_at=now - 7200 + expires_in,
                    seed=fingerprint(Secret(REFRESH)))


def credential(cfg: XSettings, store: FileTokenStore, client: Any) -> Credential:
    return Credential("x-main", cfg, provider=PROVIDERS["x"], store=store, lock=RedisRefreshLock(client))


def run(quick: bool = False) -> dict[str, Any]:
    calls, renewals, procs = (20_000, 20, 4) if quick else (200_000, 100, 8)
    with Bench(NAME) as bench, Sandbox(port=0, smtp_port=None, rate_limits=False) as sandbox:
        sandbox.configure("x", refresh_tokens=[])  # every refresh token it issued, once each
        client = redis_lib.Redis.from_url(bench.start_redis())
        cfg = settings(sandbox, str(bench.dir))
        store = FileTokenStore(bench.dir / "x-main.json", "x-main")

        store.save(due_set(3600))
        cred = credential(cfg, store, client)
        cred.token()
        started = time.perf_counter()
        for _ in range(calls):
            cred.token()
        hot_us = (time.perf_counter() - started) / calls * 1e6

        took = []
        for _ in range(renewals):
            store.save(due_set(60))  # due again, with a refresh token X honours once more
            sandbox.app.provider("x").grants.spent.discard(REFRESH)
            fresh = credential(cfg, store, client)  # as a process that starts: reads the store, finds it due
            t0 = time.perf_counter()
            assert fresh.renew_if_due()
            took.append(time.perf_counter() - t0)

        store.save(due_set(60))
        sandbox.app.provider("x").grants.spent.discard(REFRESH)
        sandbox.state.clear_requests("x")
        views = [credential(cfg, store, redis_lib.Redis.from_url(bench.redis_url)) for _ in range(procs)]
        go = threading.Barrier(procs)
        done: list[float] = []

        def renew(c: Credential) -> None:
            go.wait()
            t0 = time.perf_counter()
            c.renew_if_due()
            done.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=renew, args=(v,)) for v in views]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        token_calls = len([r for r in sandbox.requests("x") if r["path"].endswith("/oauth2/token")])
        same = len({v.token() for v in views}) == 1
        out = {"hot_path_us": round(hot_us, 2), "renewal_ms_p50": round((pct(took, 50) or 0) * 1000, 2),
               "renewal_ms_p95": round((pct(took, 95) or 0) * 1000, 2), "processes": procs,
               "token_requests_when_all_due": token_calls, "all_hold_the_new_token": same,
               "slowest_process_ms": round(max(done) * 1000, 1)}
        out["failures"] = [] if token_calls == 1 and same else [f"{token_calls} token requests; same token: {same}"]
    table("token renewal", ["measure", "value"], [
        ["token() when not due", f"{out['hot_path_us']} µs"],
        [f"renewal (Redis lock, store, loopback X, fsync), p50 / p95 of {renewals}",
         f"{out['renewal_ms_p50']} / {out['renewal_ms_p95']} ms"],
        [f"{procs} processes due at once: token requests", out["token_requests_when_all_due"]],
        [f"{procs} processes due at once: slowest until it holds the new token", f"{out['slowest_process_ms']} ms"],
    ])
    write_json(NAME, {"quick": quick, **out})
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    raise SystemExit(1 if run(parser.parse_args().quick)["failures"] else 0)
