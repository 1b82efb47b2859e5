"""Partners' messages refused before the 250, kept by the ledger for the duty desk's notice."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update

from gateway.store.ledger import as_utc, refusals
from gateway.store.unit import Transaction


@dataclass(frozen=True)
class Refusal:
    id: int
    at: datetime
    partner: str
    raw_sha256: str
    smtp_code: int
    enhanced: str
    kind: str
    reply: str

    @property
    def reason(self) -> str:
        return f"{self.smtp_code} {self.enhanced} {self.kind}"


def pending(tx: Transaction, before: datetime) -> list[Refusal]:
    """The refusals not yet told, recorded before ``before``, by partner, instant and id."""
    rows = tx.connection.execute(
        select(refusals)
        .where(refusals.c.notified.is_(None), refusals.c.at < before)
        .order_by(refusals.c.partner, refusals.c.at, refusals.c.id)
    ).all()
    return [
        Refusal(
            id=row.id,
            at=as_utc(row.at),
            partner=row.partner,
            raw_sha256=row.raw_sha256,
            smtp_code=row.smtp_code,
            enhanced=row.enhanced,
            kind=row.kind,
            reply=row.reply,
        )
        for row in rows
    ]


def told_between(tx: Transaction, partner: str, start: datetime, end: datetime) -> bool:
    """Whether a notice already told refusals of this partner recorded in [start, end)."""
    told = tx.connection.execute(
        select(func.count())
        .select_from(refusals)
        .where(
            refusals.c.partner == partner,
            refusals.c.at >= start,
            refusals.c.at < end,
            refusals.c.notified.is_not(None),
        )
    ).scalar()
    return bool(told)


def mark_told(tx: Transaction, ids: Collection[int], now: datetime) -> None:
    """Mark these refusals told at ``now`` (those told already keep their instant)."""
    tx.connection.execute(
        update(refusals)
        .where(refusals.c.id.in_(list(ids)), refusals.c.notified.is_(None))
        .values(notified=now)
    )


def purge(tx: Transaction, before: datetime) -> int:
    """Delete the refusals recorded before ``before``; how many."""
    return int(tx.connection.execute(delete(refusals).where(refusals.c.at < before)).rowcount)
