"""Shared fixtures: real services on loopback (Redis, PostgreSQL), private Redis servers for
tests that restart or flush them, and a scriptable HTTP receiver for channel stand-ins.

A test that needs a service which is not running is skipped on a laptop — and fails in CI
(``CI=true``), so a green CI run always means the test really ran.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from tests.support.receiver import Receiver

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("BROADCASTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BROADCASTER_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unavailable(what: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available", pytrace=False)
    pytest.skip(f"{what} not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def shared_redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception:  # noqa: BLE001
        unavailable(f"Redis at {REDIS_URL}")
    return REDIS_URL


class PrivateRedis:
    """A redis-server of our own on a free port: safe to FLUSHALL, kill and restart."""

    def __init__(self, persistent: bool = False):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bc-redis-")
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if not binary:
            unavailable("redis-server binary")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
                "--appendonly", "yes" if self.persistent else "no", "--logfile", os.path.join(self.dir, "log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return self
            except Exception:  # noqa: BLE001
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)


@pytest.fixture
def private_redis():
    r = PrivateRedis().start()
    yield r
    r.stop()
    shutil.rmtree(r.dir, ignore_errors=True)


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg (pip install 'broadcaster[postgres]')")
    name = f"bc_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001
        unavailable(f"PostgreSQL at {PG_ADMIN_URL} ({type(exc).__name__})")
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    yield url
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # noqa: BLE001
        pass


def _reset_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public;"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path):
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url = request.getfixturevalue("pg_database")
    _reset_pg(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/ledger.db"


# ---------------------------------------------------------------- HTTP stand-in


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()
