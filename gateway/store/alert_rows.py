"""The alert register's rows: the exchanges about each SIS alert and Interpol notice, read from the
search index's reference entries (written at acceptance) and their messages; and the register's own
state (the desk that follows an alert, its status), kept in alert_register."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from gateway.store.ledger import (
    ALERT_ENTRIES,
    alert_register,
    as_utc,
    messages,
    search_entries,
)
from gateway.store.unit import Transaction

REFERENCE = "reference"  # the index's kind of the entries read here
SIS_ALERT = "sis-alert"  # the index's role of an AlertRef (gateway.forms.entities)
INTERPOL_NOTICE = "interpol-notice"  # of a NoticeReference
REGISTERS = (SIS_ALERT, INTERPOL_NOTICE)
ACTIVE, DELETED = "active", "deleted"
STATUSES = (ACTIVE, DELETED)
LIMIT = 5000  # exchanges read for one listing at most; the listing says when there were more


@dataclass(frozen=True)
class Exchange:
    """A message that refers to an alert: the alert as the index holds it, and the message's
    metadata (never its content)."""

    alert: str  # the index key (the id folded)
    register: str  # sis-alert | interpol-notice
    shown: str  # the id as the form wrote it
    message_id: int
    direction: str
    partner: str
    form: str
    reference: str
    desk: str | None
    state: str
    at: datetime
    article: str | None  # the SIS article of the form's AlertRef


@dataclass(frozen=True)
class Mark:
    """What the register keeps of an alert besides its exchanges."""

    alert: str
    register: str
    desk: str | None
    status: str
    told_by: int | None
    changed_by: str
    changed_at: datetime


_COLUMNS = (
    search_entries.c.key,
    search_entries.c.role,
    search_entries.c.shown,
    messages.c.id,
    messages.c.direction,
    messages.c.partner,
    messages.c.form,
    messages.c.reference,
    messages.c.desk,
    messages.c.state,
    messages.c.created_at,
    messages.c.alert_article,
)
# Written as literals (the partial index's predicate, ledger.ALERT_ENTRIES): with bound
# parameters the planner could not prove that index applies. The kind is needed: the index's
# predicate names the role alone, which an Object's free-text Type may also carry.
_IS_ALERT = text(ALERT_ENTRIES)


def _select() -> Select[Any]:
    return (
        select(*_COLUMNS)
        .join(messages, messages.c.id == search_entries.c.message_id)
        .where(_IS_ALERT)
    )


def exchanges(
    tx: Transaction,
    *,
    alert: str | None = None,
    desks: Collection[str] | None = None,
    limit: int = LIMIT,
) -> list[Exchange]:
    """The exchanges about one alert (``alert``, a key) or about every alert, the newest
    ``limit`` of them, oldest first; with
    ``desks``, only the alerts that a message of those desks refers to or that one of them
    follows (and of those, every exchange: the caller decides what it shows)."""
    query = _select()
    if desks is not None:
        query = query.where(_on_desks(sorted(desks)))
    # The newest ``limit``, handed back oldest first: entries are written in the transaction
    # that records their message, so their ids follow the messages' order (but for writers
    # side by side on PostgreSQL, or a rebuild beside the intake), and walking an index
    # backwards stops after ``limit`` (a sort by time would read them all). Every alert: the
    # partial index, by id. One alert: its own range of (kind, key, born, message_id), in
    # message order (a reference's entry has no date of birth); by id alone SQLite would walk
    # every alert's entries instead.
    if alert is None:
        query = query.order_by(search_entries.c.id.desc())
    else:
        query = query.where(search_entries.c.key == alert, search_entries.c.born.is_(None))
        query = query.order_by(search_entries.c.message_id.desc(), search_entries.c.id.desc())
    query = query.limit(limit)
    return [_exchange(row) for row in tx.connection.execute(query)][::-1]


def _on_desks(desks: Sequence[str]) -> ColumnElement[bool]:
    reached = select(search_entries.c.key).where(_IS_ALERT, search_entries.c.desk.in_(desks))
    followed = select(alert_register.c.alert).where(alert_register.c.desk.in_(desks))
    return or_(search_entries.c.key.in_(reached), search_entries.c.key.in_(followed))


def of_message(tx: Transaction, message_id: int) -> list[tuple[str, str, str]]:
    """The alerts a message refers to: (key, register, id as written)."""
    found = tx.connection.execute(
        select(search_entries.c.key, search_entries.c.role, search_entries.c.shown)
        .where(_IS_ALERT, search_entries.c.message_id == message_id)
        .order_by(search_entries.c.id)
    )
    return [(row[0], row[1], row[2]) for row in found]


def marks(tx: Transaction, alerts: Collection[str] | None = None) -> dict[str, Mark]:
    """The register's own state of ``alerts`` (keys), or of every alert that has one."""
    query = select(alert_register)
    if alerts is not None:
        query = query.where(alert_register.c.alert.in_(sorted(alerts)))
    return {
        row.alert: Mark(
            row.alert,
            row.register,
            row.desk,
            row.status,
            row.told_by,
            row.changed_by,
            as_utc(row.changed_at),
        )
        for row in tx.connection.execute(query)
    }


def set_desk_in(
    tx: Transaction, alert: str, register: str, *, desk: str | None, by: str, at: datetime
) -> None:
    """Record the desk that follows ``alert`` (None: the desk its messages reach, again)."""
    _upsert(tx, {"alert": alert, "register": register, "desk": desk}, by, at)


def set_status_in(
    tx: Transaction,
    alert: str,
    register: str,
    *,
    status: str,
    told_by: int | None,
    by: str,
    at: datetime,
) -> None:
    """Record the alert's status and the message that told it (ValueError for another
    status than STATUSES)."""
    if status not in STATUSES:
        raise ValueError(f"{status!r} is not a status of an alert: one of {', '.join(STATUSES)}")
    _upsert(
        tx,
        {"alert": alert, "register": register, "status": status, "told_by": told_by},
        by,
        at,
    )


def _upsert(tx: Transaction, values: dict[str, Any], by: str, at: datetime) -> None:
    dialect = pg_dialect if tx.dialect == "postgresql" else sqlite_dialect
    changed = {**values, "changed_by": by, "changed_at": at}
    statement = dialect.insert(alert_register).values(changed)
    updated = {name: value for name, value in changed.items() if name != "alert"}
    tx.connection.execute(statement.on_conflict_do_update(index_elements=["alert"], set_=updated))


def _exchange(row: Any) -> Exchange:
    return Exchange(
        alert=row[0],
        register=row[1],
        shown=row[2],
        message_id=row[3],
        direction=row[4],
        partner=row[5],
        form=row[6],
        reference=row[7],
        desk=row[8],
        state=row[9],
        at=as_utc(row[10]),
        article=row[11],
    )
