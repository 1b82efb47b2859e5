"""The messages kept past their retention and not purged yet, found by the database in batches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, not_, or_, select, true

from gateway.core.config import RetentionRule
from gateway.store.ledger import MessageRow, message_of, messages
from gateway.store.unit import Transaction

PURGED = "purged"  # the event that says a message's originals and copies were shredded


def past_retention(
    tx: Transaction,
    rules: Sequence[RetentionRule],
    now: datetime,
    *,
    after_id: int = 0,
    limit: int,
) -> list[MessageRow]:
    """At most ``limit`` messages with an id above ``after_id`` that the first matching rule says
    have been kept long enough at ``now``, not shredded yet; by id. Empty without a rule
    (nothing is ever due)."""
    kept = _past_retention(rules, now)
    if kept is None:
        return []
    rows = tx.connection.execute(
        select(messages)
        .where(messages.c.id > after_id, kept, messages.c.shredded_at.is_(None))
        .order_by(messages.c.id)
        .limit(limit)
    ).all()
    return [message_of(row._mapping) for row in rows]


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
