"""The figures of a statistics report over a period, counted by the database (gateway.reports).

Every figure is a GROUP BY in SQL; the percentiles of the times come from window functions
(ROW_NUMBER and COUNT over the group, nearest rank), which SQLite (3.25+) and PostgreSQL both run,
so memory does not grow with the ledger. Only codes, counts, seconds, ledger ids and references
come out: never a name or any content of a form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, func, literal, select

from gateway.core.vocabulary import RECEIPT_FORM
from gateway.store.ledger import as_utc, deadlines, events, messages, refusals
from gateway.store.states import DeadlineState, OutboundState
from gateway.store.unit import Transaction

WORST_SHOWN = 10  # the worst overdue cases listed


@dataclass(frozen=True)
class Scope:
    """What a report covers: [start, end) in UTC, optionally one partner and one desk. ``as_of``
    is the instant the report is made: a deadline not due by then is not yet late."""

    start: datetime
    end: datetime
    as_of: datetime
    partner: str | None = None
    desk: str | None = None


@dataclass(frozen=True)
class Compliance:
    owed_by: str  # desk (our replies) | partner (theirs)
    form: str
    priority: str
    partner: str
    in_time: int
    late: int

    @property
    def share(self) -> float | None:
        """The share answered in time, 0..1; None when nothing fell due."""
        total = self.in_time + self.late
        return self.in_time / total if total else None


@dataclass(frozen=True)
class Overdue:
    """A reply deadline answered late or not at all: ids and references only."""

    message_id: int
    reference: str
    form: str
    partner: str
    owed_by: str
    due: datetime
    overdue_seconds: int
    answered: bool


@dataclass(frozen=True)
class Times:
    """Seconds from the deadline's opening to the receipt or reply that met it."""

    measure: str  # receipt (partners' receipts) | reply-desk | reply-partner
    count: int
    median: int
    p90: int
    max: int


@dataclass(frozen=True)
class Outbound:
    partner: str
    sent: int  # forms of ours recorded in the period
    retries: int  # deferred attempts (4xx, connection failures)
    failed: int  # failed, rejected or unacknowledged
    resends: int  # re-sent for want of a receipt


@dataclass(frozen=True)
class Figures:
    scope: Scope
    forms: list[tuple[str, str, str, str, int]]  # (month, direction, partner, form, count)
    # G forms (a hit, action taken) by direction: inbound, a partner's hit on an alert of ours;
    # outbound, ours on a partner's alert. (direction, SIS article or "none", count)
    hits: list[tuple[str, str, int]]
    compliance: list[Compliance]
    worst: list[Overdue]
    times: list[Times]
    refusals: list[tuple[str, str, int]]  # (partner, reason, count)
    outbound: list[Outbound]
    trend: list[tuple[str, int, int]]  # (day, received, sent)


def gather(tx: Transaction, scope: Scope) -> Figures:
    """Every figure of the report over ``scope``, each counted by one statement."""
    return Figures(
        scope=scope,
        forms=_forms(tx, scope),
        hits=_hits(tx, scope),
        compliance=_compliance(tx, scope),
        worst=_worst(tx, scope),
        times=_times(tx, scope),
        refusals=_refusals(tx, scope),
        outbound=_outbound(tx, scope),
        trend=_trend(tx, scope),
    )


def _utc_text(tx: Transaction, column: Any, fmt: str) -> ColumnElement[str]:
    """A UTC instant as text, ``fmt`` being %Y-%m or %Y-%m-%d."""
    if tx.dialect == "sqlite":
        return func.strftime(fmt, column)
    pg = fmt.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")
    return func.to_char(func.timezone("UTC", column), pg)


def _seconds(tx: Transaction, later: Any, earlier: Any) -> ColumnElement[Any]:
    """``later - earlier`` in seconds."""
    if tx.dialect == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


def _messages_in(scope: Scope) -> list[ColumnElement[bool]]:
    found = [messages.c.created_at >= scope.start, messages.c.created_at < scope.end]
    return found + _who(scope)


def _who(scope: Scope) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if scope.partner is not None:
        found.append(messages.c.partner == scope.partner)
    if scope.desk is not None:
        found.append(messages.c.desk == scope.desk)
    return found


def _forms(tx: Transaction, scope: Scope) -> list[tuple[str, str, str, str, int]]:
    month = _utc_text(tx, messages.c.created_at, "%Y-%m").label("month")
    rows = tx.connection.execute(
        select(month, messages.c.direction, messages.c.partner, messages.c.form, func.count())
        .where(*_messages_in(scope), messages.c.form != RECEIPT_FORM)
        .group_by(month, messages.c.direction, messages.c.partner, messages.c.form)
        .order_by(month, messages.c.direction, messages.c.partner, messages.c.form)
    ).all()
    return [(str(m), str(d), str(p), str(f), int(n)) for m, d, p, f, n in rows]


def _hits(tx: Transaction, scope: Scope) -> list[tuple[str, str, int]]:
    article = func.coalesce(messages.c.alert_article, literal("none")).label("article")
    rows = tx.connection.execute(
        select(messages.c.direction, article, func.count())
        .where(*_messages_in(scope), messages.c.form == "G")
        .group_by(messages.c.direction, article)
        .order_by(messages.c.direction, article)
    ).all()
    return [(str(d), str(a), int(n)) for d, a, n in rows]


def _fell_due(scope: Scope) -> list[ColumnElement[bool]]:
    """Reply deadlines that fell due in the period, by the time of the report (a paused one is
    not due: its due instant moves on when it resumes)."""
    return [
        deadlines.c.kind == "reply",
        deadlines.c.due >= scope.start,
        deadlines.c.due < scope.end,
        deadlines.c.due <= scope.as_of,
        deadlines.c.state != DeadlineState.PAUSED,
        *_who(scope),
    ]


def _in_time() -> ColumnElement[bool]:
    return and_(
        deadlines.c.state.in_([DeadlineState.MET, DeadlineState.CLOSED]),
        deadlines.c.closed_at <= deadlines.c.due,
    )


_JOINED = deadlines.join(messages, deadlines.c.message_id == messages.c.id)


def _compliance(tx: Transaction, scope: Scope) -> list[Compliance]:
    in_time = func.sum(case((_in_time(), 1), else_=0))
    group = (deadlines.c.owed_by, messages.c.form, messages.c.priority, messages.c.partner)
    rows = tx.connection.execute(
        select(*group, in_time, func.count())
        .select_from(_JOINED)
        .where(*_fell_due(scope))
        .group_by(*group)
        .order_by(*group)
    ).all()
    return [
        Compliance(str(o), str(f), str(p), str(pa), int(t or 0), int(n) - int(t or 0))
        for o, f, p, pa, t, n in rows
    ]


def _worst(tx: Transaction, scope: Scope) -> list[Overdue]:
    ended = func.coalesce(deadlines.c.closed_at, literal(scope.as_of, deadlines.c.due.type))
    late_by = _seconds(tx, ended, deadlines.c.due).label("late_by")
    rows = tx.connection.execute(
        select(
            messages.c.id,
            messages.c.reference,
            messages.c.form,
            messages.c.partner,
            deadlines.c.owed_by,
            deadlines.c.due,
            late_by,
            deadlines.c.closed_at.is_not(None),
        )
        .select_from(_JOINED)
        .where(*_fell_due(scope), ~_in_time())
        .order_by(late_by.desc(), messages.c.id)
        .limit(WORST_SHOWN)
    ).all()
    return [
        Overdue(int(i), str(r), str(f), str(p), str(o), as_utc(d), round(s), bool(a))
        for i, r, f, p, o, d, s, a in rows
    ]


def _times(tx: Transaction, scope: Scope) -> list[Times]:
    measure = case(
        (deadlines.c.kind == "receipt", literal("receipt")),
        else_=literal("reply-") + deadlines.c.owed_by,
    ).label("measure")
    took = _seconds(tx, deadlines.c.closed_at, deadlines.c.opened_at).label("took")
    ranked = (
        select(
            measure,
            took,
            func.row_number().over(partition_by=measure, order_by=took).label("rank"),
            func.count().over(partition_by=measure).label("n"),
        )
        .select_from(_JOINED)
        .where(
            deadlines.c.kind.in_(
                ("receipt", "reply")
            ),  # every kind: lets ix_deadlines_opened serve
            deadlines.c.state == DeadlineState.MET,
            deadlines.c.opened_at >= scope.start,
            deadlines.c.opened_at < scope.end,
            *_who(scope),
        )
        .subquery()
    )

    def at_rank(percent: int) -> Any:
        # nearest rank: the ceil(percent * n / 100)-th value, in integer arithmetic
        rank = (ranked.c.n * percent + 99) // 100
        return func.max(case((ranked.c.rank == rank, ranked.c.took)))

    rows = tx.connection.execute(
        select(ranked.c.measure, func.count(), at_rank(50), at_rank(90), func.max(ranked.c.took))
        .group_by(ranked.c.measure)
        .order_by(ranked.c.measure)
    ).all()
    return [
        Times(str(m), int(n), round(p50), round(p90), round(top)) for m, n, p50, p90, top in rows
    ]


def _refusals(tx: Transaction, scope: Scope) -> list[tuple[str, str, int]]:
    if scope.desk is not None:  # a refused message never reached a desk
        return []
    reason = (
        cast(refusals.c.smtp_code, String)
        + literal(" ")
        + refusals.c.enhanced
        + literal(" ")
        + refusals.c.kind
    ).label("reason")
    where = [refusals.c.at >= scope.start, refusals.c.at < scope.end]
    if scope.partner is not None:
        where.append(refusals.c.partner == scope.partner)
    rows = tx.connection.execute(
        select(refusals.c.partner, reason, func.count())
        .where(*where)
        .group_by(refusals.c.partner, reason)
        .order_by(refusals.c.partner, reason)
    ).all()
    return [(str(p), str(r), int(n)) for p, r, n in rows]


FAILED = (OutboundState.FAILED, OutboundState.REJECTED, OutboundState.UNACKNOWLEDGED)


def _outbound(tx: Transaction, scope: Scope) -> list[Outbound]:
    forms = (
        select(
            messages.c.partner.label("partner"),
            func.count().label("sent"),
            func.sum(case((messages.c.state.in_(FAILED), 1), else_=0)).label("failed"),
        )
        .where(
            *_messages_in(scope),
            messages.c.direction == "outbound",
            messages.c.form != RECEIPT_FORM,
        )
        .group_by(messages.c.partner)
        .subquery()
    )
    retries = (
        select(messages.c.partner.label("partner"), func.count().label("retries"))
        .select_from(events.join(messages, events.c.message_id == messages.c.id))
        .where(
            events.c.kind == "deferred",
            events.c.at >= scope.start,
            events.c.at < scope.end,
            messages.c.direction == "outbound",
            *_who(scope),
        )
        .group_by(messages.c.partner)
        .subquery()
    )
    resends = (
        select(messages.c.partner.label("partner"), func.sum(deadlines.c.resends).label("n"))
        .select_from(_JOINED)
        .where(
            deadlines.c.kind == "receipt",
            deadlines.c.opened_at >= scope.start,
            deadlines.c.opened_at < scope.end,
            *_who(scope),
        )
        .group_by(messages.c.partner)
        .subquery()
    )
    rows = tx.connection.execute(
        select(
            forms.c.partner,
            forms.c.sent,
            func.coalesce(retries.c.retries, 0),
            func.coalesce(forms.c.failed, 0),
            func.coalesce(resends.c.n, 0),
        )
        .select_from(
            forms.outerjoin(retries, retries.c.partner == forms.c.partner).outerjoin(
                resends, resends.c.partner == forms.c.partner
            )
        )
        .order_by(forms.c.partner)
    ).all()
    return [Outbound(str(p), int(s), int(r), int(f), int(x)) for p, s, r, f, x in rows]


def _trend(tx: Transaction, scope: Scope) -> list[tuple[str, int, int]]:
    day = _utc_text(tx, messages.c.created_at, "%Y-%m-%d").label("day")
    inbound = func.sum(case((messages.c.direction == "inbound", 1), else_=0))
    rows = tx.connection.execute(
        select(day, inbound, func.count())
        .where(*_messages_in(scope), messages.c.form != RECEIPT_FORM)
        .group_by(day)
        .order_by(day)
    ).all()
    return [(str(d), int(i or 0), int(n) - int(i or 0)) for d, i, n in rows]
