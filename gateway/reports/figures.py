"""A report's period and scope from the command's dates, and its figures from the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.store import reportfigures
from gateway.store.ledger import Ledger
from gateway.store.reportfigures import Figures, Scope


@dataclass(frozen=True)
class Report:
    """The figures and how to show them: instants in the bureau's ``zone``."""

    figures: Figures
    zone: ZoneInfo
    title: str = "Statistics report"

    @property
    def scope(self) -> Scope:
        return self.figures.scope


def scope_of(
    first: date,
    last: date,
    as_of: datetime,
    partner: str | None = None,
    desk: str | None = None,
) -> Scope:
    """The UTC days ``first`` to ``last``, both included: [first 00:00 UTC, last + 1 00:00 UTC)."""
    if last < first:
        raise ValueError(f"the period ends ({last}) before it begins ({first})")
    if last >= date.max:
        raise ValueError(f"the period must end before {date.max}")
    start = datetime.combine(first, time(0, 0), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(0, 0), tzinfo=UTC)
    return Scope(start=start, end=end, as_of=as_of.astimezone(UTC), partner=partner, desk=desk)


def make_report(ledger: Ledger, scope: Scope, zone: ZoneInfo, title: str = "") -> Report:
    """The report over ``scope``: every figure counted by the database in one read."""
    with ledger.reading() as tx:
        figures = reportfigures.gather(tx, scope)
    return Report(figures, zone, title or "Statistics report")
