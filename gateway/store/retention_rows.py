"""The messages kept past their retention and not purged yet, found by the database in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select, true

from gateway.core.config import RetentionRule
from gateway.store.ledger import as_utc, events, messages
from gateway.store.unit import Transaction

PURGED = "purged"  # the event that says a message's originals and copies were deleted


@dataclass(frozen=True)
class KeptMessage:
    """What the purge needs of a message (created_at in UTC)."""

    id: int
    direction: str
    partner: str
    channel: str
    form: str
    reference: str
    raw_sha256: str
    spool_key: str | None
    desk: str | None
    created_at: datetime


def past_retention(
    tx: Transaction,
    rules: Sequence[RetentionRule],
    now: datetime,
    *,
    after_id: int = 0,
    limit: int,
) -> list[KeptMessage]:
    """At most ``limit`` messages with an id above ``after_id`` that the first matching rule says
    have been kept long enough at ``now``, with no ``purged`` event yet; by id. Empty without a
    rule (nothing is ever due)."""
    kept = _past_retention(rules, now)
    if kept is None:
        return []
    purged = exists().where(events.c.message_id == messages.c.id, events.c.kind == PURGED)
    rows = tx.connection.execute(
        select(
            messages.c.id,
            messages.c.direction,
            messages.c.partner,
            messages.c.channel,
            messages.c.form,
            messages.c.reference,
            messages.c.raw_sha256,
            messages.c.spool_key,
            messages.c.desk,
            messages.c.created_at,
        )
        .where(messages.c.id > after_id, kept, not_(purged))
        .order_by(messages.c.id)
        .limit(limit)
    ).all()
    found = []
    for row in rows:
        values = dict(row._mapping)
        values["created_at"] = as_utc(values["created_at"])
        found.append(KeptMessage(**values))
    return found


def _past_retention(rules: Sequence[RetentionRule], now: datetime) -> ColumnElement[bool] | None:
    """SQL for "the first matching rule says it has been kept long enough"."""
    chosen: list[ColumnElement[bool]] = []
    earlier: list[ColumnElement[bool]] = []
    for rule in rules:
        conditions: list[ColumnElement[bool]] = []
        if rule.channel is not None:
            conditions.append(messages.c.channel == rule.channel)
        if rule.form is not None:
            conditions.append(messages.c.form == rule.form)
        matches = and_(true(), *conditions)
        chosen.append(and_(matches, messages.c.created_at <= now - rule.keep, *map(not_, earlier)))
        earlier.append(matches)
    return or_(*chosen) if chosen else None
