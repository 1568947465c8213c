"""The drain's per-delivery statements, compiled once and run straight on the driver's cursor.

A drain writes, for every delivery it sends, a start mark and an outcome with its event: three
small statements. Through SQLAlchemy's execution path each cost about 80 µs of CPU on the
benchmark machine (cache-key and parameter processing, the execution context, the result
wrapper) — for a SQLite statement that itself runs in a few microseconds. A :class:`Prepared`
statement is the same SQLAlchemy Core statement, compiled by SQLAlchemy for the connection's
dialect once per set of columns, with SQLAlchemy's own bind processors (JSON, booleans)
applied to the values; only the per-call machinery is skipped. It runs on the caller's
connection, inside the caller's transaction, and returns the row count.

Only for statements whose values are plain data (no SQL expressions among them): anything
else stays on ``Connection.execute``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql.dml import UpdateBase


@dataclass(frozen=True)
class _Form:
    sql: str
    #: the order of the values (positional paramstyles such as SQLite's), else None (named)
    order: tuple[str, ...] | None
    #: values the statement itself binds (a literal in its WHERE clause)
    fixed: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]


class Prepared:
    """One Core statement (an ``INSERT``/``UPDATE`` whose values come with each call)."""

    def __init__(self, statement: UpdateBase):
        self.statement = statement
        self._forms: dict[tuple[str, frozenset[str]], _Form] = {}
        self._lock = threading.Lock()

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute with ``params`` on ``conn`` (in its transaction); the number of rows hit."""
        form = self._form(conn, params)
        values = {**form.fixed, **params}
        for name, process in form.processors.items():
            values[name] = process(values[name])
        cursor = conn.connection.cursor()
        try:
            cursor.execute(form.sql, values if form.order is None else [values[n] for n in form.order])
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row (every row with the same keys) in one ``executemany``."""
        if not rows:
            return
        form = self._form(conn, rows[0])
        batch: list[Any] = []
        for params in rows:
            values = {**form.fixed, **params}
            for name, process in form.processors.items():
                values[name] = process(values[name])
            batch.append(values if form.order is None else [values[n] for n in form.order])
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(form.sql, batch)
        finally:
            cursor.close()

    def _form(self, conn: Connection, params: Mapping[str, Any]) -> _Form:
        key = (conn.dialect.name, frozenset(params))
        form = self._forms.get(key)
        if form is not None:
            return form
        dialect = conn.dialect
        compiled = self.statement.compile(dialect=dialect, column_keys=list(params))
        bound = compiled.construct_params(dict(params))
        fixed = {name: value for name, value in bound.items() if name not in params}
        processors: dict[str, Callable[[Any], Any]] = {
            name: fn for name, fn in compiled._bind_processors.items() if name in bound and callable(fn)}
        order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        form = _Form(compiled.string, order, fixed, processors)
        with self._lock:
            self._forms[key] = form
        return form
