"""Throw-away ledgers for the in-process benchmarks: a SQLite file in a temporary directory, or a
fresh PostgreSQL database dropped afterwards."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_ADMIN = os.environ.get("BROADCASTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bc-bench-") as tmp:
        yield f"sqlite:///{tmp}/ledger.db"


@contextmanager
def postgres_url() -> Iterator[str]:
    import psycopg

    name = f"bc_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
