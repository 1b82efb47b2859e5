"""The daily statistics report to the supervisor desk, for one UTC day (the day before it runs).

- forms received and sent, per partner and form (by the instant the ledger recorded them;
  receipts are counted apart);
- late receipts: receipt deadlines opened that day (forms we sent) that needed a re-send or
  were missed, per partner, beside how many were opened;
- reply deadlines that fell due that day, owed by our desks and by partners: met (closed by the
  reply at or before due), closed by a handler at or before due, missed (the rest: still open,
  answered late, or missed).

Counting is done by the database (GROUP BY), so the report costs the same whatever the ledger
holds in memory terms. Only codes and counts are written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, and_, case, func, or_, select

from gateway.desks.notices import Notice
from gateway.store.ledger import deadlines, messages
from gateway.store.states import DeadlineState

RECEIPT_FORM = "ACK"
OUTCOMES = (DeadlineState.MET, DeadlineState.CLOSED, DeadlineState.MISSED)


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


def gather(connection: Connection, day: date) -> DailyFigures:
    """The figures of ``day`` (UTC), counted by the database."""
    start, end = day_bounds(day)
    in_day = and_(messages.c.created_at >= start, messages.c.created_at < end)
    forms: dict[tuple[str, str, str], int] = {}
    receipts: dict[str, int] = {}
    rows = connection.execute(
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
        for partner, opened, late_count in connection.execute(
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
        for owed_by, result, count in connection.execute(
            select(deadlines.c.owed_by, outcome, func.count())
            .where(deadlines.c.kind == "reply", deadlines.c.due >= start, deadlines.c.due < end)
            .group_by(deadlines.c.owed_by, outcome)
        ).all()
    }
    return DailyFigures(day, forms, receipts, late_receipts, replies)


def report_notice(figures: DailyFigures) -> Notice:
    """The report as a notice for the supervisor desk, keyed by its day."""
    day = figures.day.isoformat()
    received, sent = figures.total("inbound"), figures.total("outbound")
    subject = (
        f"Daily report {day}: {received} received, {sent} sent, "
        f"{figures.late} late receipt(s), {figures.missed} reply deadline(s) missed"
    )
    lines = [f"Daily report for {day} (00:00 to 24:00 UTC)", ""]
    lines += ["Forms              received      sent"]
    pairs = sorted({(partner, form) for _, partner, form in figures.forms})
    lines += [
        f"  {partner:<12} {form:<10} {figures.forms.get(('inbound', partner, form), 0):>4}"
        f"{figures.forms.get(('outbound', partner, form), 0):>10}"
        for partner, form in pairs
    ] or ["  (none)"]
    lines += [
        f"  total{'':<18}{received:>5}{sent:>10}",
        "",
        f"Receipts: {figures.receipts.get('inbound', 0)} received, "
        f"{figures.receipts.get('outbound', 0)} sent",
        "",
        "Late receipts (forms sent that day: re-sent or unacknowledged)",
    ]
    lines += [
        f"  {partner:<12} {late} of {opened}"
        for partner, (opened, late) in sorted(figures.late_receipts.items())
        if late
    ] or ["  (none)"]
    lines += ["", "Reply deadlines that fell due that day      met    closed    missed"]
    for owed_by, label in (("desk", "owed by our desks"), ("partner", "owed by partners")):
        counts = [figures.replies.get((owed_by, outcome), 0) for outcome in OUTCOMES]
        lines.append(f"  {label:<40}{counts[0]:>5}{counts[1]:>10}{counts[2]:>10}")
    return Notice(kind="report", key=f"report.{day}", subject=subject, body="\n".join(lines) + "\n")


def report_day(now: datetime, report_at: str) -> date:
    """The day the last report due by ``now`` covers: the report that falls due at
    ``report_at`` (HH:MM UTC) on day D covers day D - 1."""
    hours, minutes = (int(part) for part in report_at.split(":"))
    now = now.astimezone(UTC)
    due_today = datetime.combine(now.date(), time(hours, minutes), tzinfo=UTC)
    last_due = due_today if now >= due_today else due_today - timedelta(days=1)
    return last_due.date() - timedelta(days=1)
