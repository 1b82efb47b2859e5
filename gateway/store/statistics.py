"""The ledger's counts of one UTC day, for the daily statistics report (gateway.tracking.reports).

Counting is done by the database (GROUP BY), so it costs the same in memory whatever the ledger
holds. Only codes and counts come out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, case, func, or_, select

from gateway.core.vocabulary import RECEIPT_FORM
from gateway.store.ledger import deadlines, messages
from gateway.store.states import DeadlineState
from gateway.store.unit import Transaction


@dataclass(frozen=True)
class DailyFigures:
    day: date
    # (direction, partner, form) -> count; direction inbound = received, outbound = sent
    forms: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    receipts: Mapping[str, int] = field(default_factory=dict)  # direction -> count
    # partner -> (receipt deadlines opened, late: re-sent or missed)
    late_receipts: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # (owed_by, outcome) -> count, for reply deadlines that fell due that day
    replies: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def total(self, direction: str) -> int:
        return sum(n for (way, _, _), n in self.forms.items() if way == direction)

    @property
    def late(self) -> int:
        return sum(late for _, late in self.late_receipts.values())

    @property
    def missed(self) -> int:
        return sum(n for (_, outcome), n in self.replies.items() if outcome == DeadlineState.MISSED)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0, 0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def gather(tx: Transaction, day: date) -> DailyFigures:
    """The figures of ``day`` (UTC), counted by the database."""
    start, end = day_bounds(day)
    in_day = and_(messages.c.created_at >= start, messages.c.created_at < end)
    forms: dict[tuple[str, str, str], int] = {}
    receipts: dict[str, int] = {}
    rows = tx.connection.execute(
        select(messages.c.direction, messages.c.partner, messages.c.form, func.count())
        .where(in_day)
        .group_by(messages.c.direction, messages.c.partner, messages.c.form)
    ).all()
    for direction, partner, form, count in rows:
        if form == RECEIPT_FORM:
            receipts[direction] = receipts.get(direction, 0) + int(count)
        else:
            forms[(direction, partner, form)] = int(count)
    late = case(
        (or_(deadlines.c.resends > 0, deadlines.c.state == DeadlineState.MISSED), 1), else_=0
    )
    late_receipts = {
        partner: (int(opened), int(late_count or 0))
        for partner, opened, late_count in tx.connection.execute(
            select(messages.c.partner, func.count(), func.sum(late))
            .select_from(deadlines.join(messages, deadlines.c.message_id == messages.c.id))
            .where(
                deadlines.c.kind == "receipt",
                deadlines.c.opened_at >= start,
                deadlines.c.opened_at < end,
            )
            .group_by(messages.c.partner)
        ).all()
    }
    on_time = deadlines.c.closed_at <= deadlines.c.due
    outcome = case(
        (and_(deadlines.c.state == DeadlineState.MET, on_time), DeadlineState.MET),
        (and_(deadlines.c.state == DeadlineState.CLOSED, on_time), DeadlineState.CLOSED),
        else_=DeadlineState.MISSED,
    )
    replies = {
        (owed_by, str(result)): int(count)
        for owed_by, result, count in tx.connection.execute(
            select(deadlines.c.owed_by, outcome, func.count())
            .where(
                deadlines.c.kind == "reply",
                deadlines.c.due >= start,
                deadlines.c.due < end,
                # a paused one is not due yet: its due instant moves on when it resumes
                deadlines.c.state != DeadlineState.PAUSED,
            )
            .group_by(deadlines.c.owed_by, outcome)
        ).all()
    }
    return DailyFigures(day, forms, receipts, late_receipts, replies)
