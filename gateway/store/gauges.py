"""The ledger's figures for the metrics, read at scrape time: deadlines open, due within an hour
and overdue by kind and by who owes them, and the audit chain's length. Aggregates only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, func, select

from gateway.store.ledger import audit, deadlines
from gateway.store.states import DeadlineState
from gateway.store.unit import reading

SOON = timedelta(hours=1)


@dataclass(frozen=True)
class DeadlineCounts:
    open: int = 0
    due_soon: int = 0  # open and due within SOON (not yet overdue)
    overdue: int = 0  # open and past due


@dataclass(frozen=True)
class LedgerFigures:
    """Deadlines by (kind, owed_by), and the audit chain's length (its last sequence number)."""

    deadlines: dict[tuple[str, str], DeadlineCounts] = field(default_factory=dict)
    audit_length: int = 0


def read(engine: Engine, now: datetime) -> LedgerFigures:
    """The figures at ``now``: two aggregate queries in one read transaction."""
    overdue = case((deadlines.c.due <= now, 1), else_=0)
    soon = case(((deadlines.c.due > now) & (deadlines.c.due <= now + SOON), 1), else_=0)
    query = (
        select(
            deadlines.c.kind,
            deadlines.c.owed_by,
            func.count(),
            func.coalesce(func.sum(soon), 0),
            func.coalesce(func.sum(overdue), 0),
        )
        .where(deadlines.c.state == DeadlineState.OPEN.value)
        .group_by(deadlines.c.kind, deadlines.c.owed_by)
    )
    with reading(engine) as tx:
        connection = tx.connection
        counts = {
            (str(kind), str(owed_by)): DeadlineCounts(int(total), int(due_soon), int(late))
            for kind, owed_by, total, due_soon, late in connection.execute(query)
        }
        length = connection.execute(select(func.coalesce(func.max(audit.c.seq), 0))).scalar()
    return LedgerFigures(counts, int(length or 0))
