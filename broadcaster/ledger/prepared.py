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
else stays on ``Connection.execute``. A column with a Python-side default must be given a value
(the default is applied by the execution context this skips). The driver's errors are raised as
SQLAlchemy's (``IntegrityError``, ``OperationalError`` …), as ``Connection.execute`` raises them,
so a unique key's refusal and an unavailable database are told apart the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
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

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute with ``params`` on ``conn`` (in its transaction); the number of rows hit."""
        form = self._form(conn, params)
        return self._execute(conn, form, [self._values(form, params)], many=False)

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row (every row with the same keys) in one ``executemany``."""
        if not rows:
            return
        form = self._form(conn, rows[0])
        self._execute(conn, form, [self._values(form, r) for r in rows], many=True)

    @staticmethod
    def _values(form: _Form, params: Mapping[str, Any]) -> Any:
        values = {**form.fixed, **params}
        for name, process in form.processors.items():
            values[name] = process(values[name])
        return values if form.order is None else [values[n] for n in form.order]

    @staticmethod
    def _execute(conn: Connection, form: _Form, values: list[Any], *, many: bool) -> int:
        cursor = conn.connection.cursor()
        try:
            if many:
                cursor.executemany(form.sql, values)
            else:
                cursor.execute(form.sql, values[0])
            return int(cursor.rowcount)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(form.sql, values if many else values[0], exc,
                                      conn.dialect.loaded_dbapi.Error, dialect=conn.dialect) from exc
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
        # two threads may build the same form at once: the same value, and one dict store each
        form = self._forms[key] = _Form(compiled.string, order, fixed, processors)
        return form
