"""Hot INSERTs said to SQLite's own connection, their values bound as SQLAlchemy binds them.

SQLAlchemy's execution path (its context, events, cursor and result) cost more than SQLite's
work for a small INSERT; in every group commit there are several. Here the statement is compiled
once for the table and the rows' keys, each column's value goes through the bind processor
SQLAlchemy itself would apply (an instant stored as its text), and a column's scalar Python
default fills a key the rows do not name, as SQLAlchemy's insert does. A column with a callable
default that the rows do not name is refused: it is SQLAlchemy's to compute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Dialect, Table, insert
from sqlalchemy.dialects import sqlite

from gateway.store.unit import Transaction, say_to_sqlite

_Plan = tuple[str, dict[str, Any], dict[str, Callable[[Any], Any]]]
_NAMED = sqlite.dialect(paramstyle="named")  # SQLite's :name parameters, bound from dicts
_plans: dict[tuple[str, tuple[str, ...], int], _Plan] = {}


def insert_rows(tx: Transaction, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT INTO table`` of ``rows`` (each with the same keys) in ``tx`` on SQLite; on any
    other database through SQLAlchemy."""
    if not rows:
        return
    connection = tx.connection
    if tx.dialect != "sqlite":
        connection.execute(insert(table), list(rows) if len(rows) > 1 else rows[0])
        return
    keys = tuple(rows[0])
    sql, defaults, processors = _plan(table, keys, connection.dialect)
    bound: list[dict[str, Any]] = []
    for row in rows:
        if len(row) != len(keys) or any(key not in row for key in keys):
            raise ValueError(f"rows for {table.name} must all have the same keys")
        values = {**defaults, **row}
        for name, process in processors.items():
            values[name] = process(values[name])
        bound.append(values)
    say_to_sqlite(connection, sql, bound)


def _plan(table: Table, keys: tuple[str, ...], dialect: Dialect) -> _Plan:
    cache_key = (table.name, keys, id(dialect))
    found = _plans.get(cache_key)
    if found is not None:
        return found
    unknown = [key for key in keys if key not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column {unknown[0]}")
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.key in keys or column.default is None:
            continue
        if not column.default.is_scalar:
            raise ValueError(f"{table.name}.{column.key} has a computed default: name it")
        defaults[column.key] = column.default.arg  # type: ignore[attr-defined]
    names = (*keys, *defaults)
    sql = str(insert(table).compile(dialect=_NAMED, column_keys=list(names)))
    processors: dict[str, Callable[[Any], Any]] = {}
    for name in names:
        column = table.c[name]
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[name] = process
    plan: _Plan = (sql, defaults, processors)
    _plans[cache_key] = plan
    return plan
