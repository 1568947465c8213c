"""PostgreSQL goes down mid-run: the API answers 503 with a clear JSON error while it is down,
nothing it accepted is lost, and workers and scheduler resume by themselves when it returns.

Runs a private PostgreSQL cluster (initdb as the ``postgres`` user) so stopping it disturbs
nothing else.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time

import pytest
from fastapi.testclient import TestClient

from tests.conftest import free_port, unavailable
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow


class PrivatePostgres:
    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins or not shutil.which("runuser"):
            unavailable("PostgreSQL server binaries (initdb) and runuser")
        self.bin = os.path.dirname(bins[-1])
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bc-pg-")
        os.chmod(self.dir, 0o777)
        self.data = os.path.join(self.dir, "data")

    def _as_postgres(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=check, capture_output=True, text=True,
                              timeout=60)

    def init(self) -> PrivatePostgres:
        try:
            self._as_postgres(f"{self.bin}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        except (subprocess.CalledProcessError, OSError) as exc:
            unavailable(f"a private PostgreSQL cluster ({exc})")
        return self.start()

    def start(self) -> PrivatePostgres:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(f"{self.bin}/pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w",
                          "start")
        return self

    def stop(self) -> None:
        self._as_postgres(f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_pg():
    pg = PrivatePostgres().init()
    yield pg
    pg.destroy()


def test_postgres_restart(private_pg, private_redis, receiver):
    from broadcaster.asgi import create_app
    from broadcaster.tokens import TokenStore

    channels = {"hook": {"kind": "webhook", "format": "generic", "url": receiver.url + "/hook"}}
    system = System(settings_for(private_pg.url, private_redis.url, channels))
    token, _ = TokenStore(system.runtime.ledger, system.settings).create("ops", admin=True, actor="test")
    api = TestClient(create_app(system.settings, system.runtime))
    auth = {"Authorization": f"Bearer {token}"}

    def post(i: int):
        return api.post("/api/v1/announcements", headers={**auth, "Idempotency-Key": f"pg-{i}"},
                        json={"kind": "incident", "title": f"pg restart #{i}", "body": "x"})

    accepted = []
    try:
        with system.worker():
            system.start_scheduler()
            for i in range(5):
                r = post(i)
                assert r.status_code == 202, r.text
                accepted.append(r.json()["id"])
            private_pg.stop()
            during = post(100)
            assert during.status_code == 503, during.text
            body = during.json()
            assert body["error"]["code"] == "ledger_unavailable" and "retry" in body["error"]["message"]
            assert "Traceback" not in during.text
            ready = api.get("/readyz")
            assert ready.status_code == 503
            time.sleep(2)  # workers and scheduler see the outage
            private_pg.start()
            for i in range(5, 10):
                r = None
                for _ in range(20):  # the pool reconnects on its own; allow a moment
                    r = post(i)
                    if r.status_code == 202:
                        break
                    time.sleep(0.5)
                assert r is not None and r.status_code == 202, r.text
                accepted.append(r.json()["id"])
            for ann in accepted:
                [d] = system.wait_settled(ann, timeout=60)
                assert str(d.state) == "delivered"
        assert len(receiver.unique_ids()) == 10
    finally:
        api.close()
        system.stop()
