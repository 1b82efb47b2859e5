"""Which appearances of spool items in quarantine the duty desk was told of (quarantine_notices)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import insert, select, update

from gateway.store.ledger import quarantine_notices
from gateway.store.unit import Transaction


def told(tx: Transaction, direction: str, keys: Collection[str]) -> set[tuple[str, int]]:
    """The (key, releases) of these items whose notice was posted."""
    rows = tx.connection.execute(
        select(quarantine_notices.c.spool_key, quarantine_notices.c.releases).where(
            quarantine_notices.c.direction == direction,
            quarantine_notices.c.spool_key.in_(list(keys)),
            quarantine_notices.c.notified.is_not(None),
        )
    ).all()
    return {(str(key), int(releases)) for key, releases in rows}


def seen(tx: Transaction, direction: str, key: str, releases: int, now: datetime) -> None:
    """Record an appearance before its notice. LedgerConflict when it was recorded before (by a
    run that crashed before marking it, or by another gateway): give it a transaction of its
    own, since on PostgreSQL the conflict ends the transaction."""
    tx.connection.execute(
        insert(quarantine_notices).values(
            direction=direction, spool_key=key, releases=releases, seen_at=now
        )
    )


def mark_told(tx: Transaction, direction: str, key: str, releases: int, now: datetime) -> None:
    """The appearance's notice was posted at ``now``."""
    tx.connection.execute(
        update(quarantine_notices)
        .where(
            quarantine_notices.c.direction == direction,
            quarantine_notices.c.spool_key == key,
            quarantine_notices.c.releases == releases,
        )
        .values(notified=now)
    )
