"""The messages kept past their retention and not purged yet, found by the database in batches.

A message in no case is due when ``created_at + keep <= now`` (``keep``: the first rule that
matches it). A message in a case is due only once its case is closed, when ``closed_at + keep <=
now`` for every member of the case: the longest rule among its members decides, and a member
that no rule matches (kept for ever) keeps the whole case. An open case's messages are never due.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, exists, not_, or_, select, true

from gateway.core.config import RetentionRule
from gateway.store.case_rows import CLOSED
from gateway.store.ledger import (
    MessageRow,
    case_members,
    cases,
    message_of,
    messages,
)
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
    """SQL for "kept long enough": from its creation in no case, from its closed case's closure
    for every member of that case."""
    alone = _kept_since(rules, now, messages, messages.c.created_at)
    if alone is None:
        return None
    fellow = messages.alias("fellow")
    fellows = case_members.alias("fellows")
    fellow_kept = _kept_since(rules, now, fellow, cases.c.closed_at)
    if fellow_kept is None:  # pragma: no cover - the same rules as ``alone``
        return None
    held_back = exists().where(
        fellows.c.case_id == cases.c.id,
        fellow.c.id == fellows.c.message_id,
        not_(fellow_kept),
    )
    in_case = exists().where(case_members.c.message_id == messages.c.id)
    case_closed_long_enough = exists().where(
        case_members.c.message_id == messages.c.id,
        cases.c.id == case_members.c.case_id,
        cases.c.status == CLOSED,
        not_(held_back),
    )
    return or_(and_(not_(in_case), alone), case_closed_long_enough)


def _kept_since(
    rules: Sequence[RetentionRule], now: datetime, table: Table | Any, since: Any
) -> ColumnElement[bool] | None:
    """SQL for "the first rule matching ``table``'s message says it has been kept long enough
    since ``since``"."""
    chosen: list[ColumnElement[bool]] = []
    earlier: list[ColumnElement[bool]] = []
    for rule in rules:
        conditions: list[ColumnElement[bool]] = []
        if rule.channel is not None:
            conditions.append(table.c.channel == rule.channel)
        if rule.form is not None:
            conditions.append(table.c.form == rule.form)
        matches = and_(true(), *conditions)
        chosen.append(and_(matches, since <= now - rule.keep, *map(not_, earlier)))
        earlier.append(matches)
    return or_(*chosen) if chosen else None
