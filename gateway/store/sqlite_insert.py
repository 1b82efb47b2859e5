"""Hot INSERTs said to SQLite's own connection, their values bound as SQLAlchemy binds them.

SQLAlchemy's execution path (its context, events, cursor and result) cost more than SQLite's
work for a small INSERT; in every group commit there are several. Here the statement is compiled
once for the table and the rows' keys, each column's value goes through the bind processor
SQLAlchemy itself would apply (an instant stored as its text), and a column's scalar Python
default fills a key the rows do not name, as SQLAlchemy's insert does. A column with a callable
default that the rows do not name is refused: it is SQLAlchemy's to compute. ``inserted_ids``
writes rows and reads back their ids: on SQLite one ``INSERT ... RETURNING id`` a row, in the
rows' order (SQLite runs no RETURNING statement for several rows at once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Dialect, Table, insert
from sqlalchemy.dialects import sqlite

from gateway.store.unit import Transaction, say_to_sqlite

_Plan = tuple[str, dict[str, Any], dict[str, Callable[[Any], Any]]]
_NAMED = sqlite.dialect(paramstyle="named")  # SQLite's :name parameters, bound from dicts
_plans: dict[tuple[str, tuple[str, ...], int, bool], _Plan] = {}


def insert_rows(tx: Transaction, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT INTO table`` of ``rows`` (each with the same keys) in ``tx`` on SQLite; on any
    other database through SQLAlchemy."""
    if not rows:
        return
    connection = tx.connection
    if tx.dialect != "sqlite":
        connection.execute(insert(table), list(rows) if len(rows) > 1 else rows[0])
        return
    say_to_sqlite(connection, *_bound(table, rows, connection.dialect, returning=False))


def inserted_ids(tx: Transaction, table: Table, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """``INSERT INTO table`` of ``rows`` (each with the same keys) in ``tx``: the new rows' ids
    (``table.c.id``), in the rows' order. On SQLite an ``INSERT ... RETURNING id`` for each row
    said to the driver; on any other database one statement through SQLAlchemy."""
    if not rows:
        return []
    connection = tx.connection
    if tx.dialect != "sqlite":
        returning = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return [int(found) for found in connection.execute(returning, list(rows)).scalars()]
    sql, bound = _bound(table, rows, connection.dialect, returning=True)
    ids = []
    for values in bound:
        found = say_to_sqlite(connection, sql, values).fetchall()
        if len(found) != 1 or not found[0][0]:
            raise RuntimeError(f"the database returned no id for a new row of {table.name}")
        ids.append(int(found[0][0]))
    return ids


def _bound(
    table: Table, rows: Sequence[Mapping[str, Any]], dialect: Dialect, *, returning: bool
) -> tuple[str, list[dict[str, Any]]]:
    """The INSERT for ``rows``' keys and each row's values as SQLAlchemy would bind them."""
    keys = tuple(rows[0])
    sql, defaults, processors = _plan(table, keys, dialect, returning)
    bound: list[dict[str, Any]] = []
    for row in rows:
        if len(row) != len(keys) or any(key not in row for key in keys):
            raise ValueError(f"rows for {table.name} must all have the same keys")
        values = {**defaults, **row}
        for name, process in processors.items():
            values[name] = process(values[name])
        bound.append(values)
    return sql, bound


def _plan(table: Table, keys: tuple[str, ...], dialect: Dialect, returning: bool) -> _Plan:
    cache_key = (table.name, keys, id(dialect), returning)
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
    statement = insert(table).returning(table.c.id) if returning else insert(table)
    sql = str(statement.compile(dialect=_NAMED, column_keys=list(names)))
    processors: dict[str, Callable[[Any], Any]] = {}
    for name in names:
        column = table.c[name]
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[name] = process
    plan: _Plan = (sql, defaults, processors)
    _plans[cache_key] = plan
    return plan
