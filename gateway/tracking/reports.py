"""The daily statistics report to the supervisor desk, for one UTC day (the day before it runs).

- forms received and sent, per partner and form (by the instant the ledger recorded them;
  receipts are counted apart);
- late receipts: receipt deadlines opened that day (forms we sent) that needed a re-send or
  were missed, per partner, beside how many were opened;
- reply deadlines that fell due that day, owed by our desks and by partners: met (closed by the
  reply at or before due), closed by a handler at or before due, missed (the rest: still open,
  answered late, or missed).

and, from the statistics report's daily cut (gateway.reports: the same figures as
`gateway report --from D --to D`), times to receipt and to reply, refusals, outbound retries and
failures, and the worst overdue replies by reference.

The counts come from gateway.store.statistics and gateway.store.reportfigures; only codes,
counts and references are written.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from gateway.desks.notices import Notice
from gateway.reports.figures import Report
from gateway.store.states import DeadlineState
from gateway.store.statistics import DailyFigures

OUTCOMES = (DeadlineState.MET, DeadlineState.CLOSED, DeadlineState.MISSED)


def report_notice(figures: DailyFigures, cut: Report | None = None) -> Notice:
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
    if cut is not None:
        lines += ["", *cut_lines(cut)]
    return Notice(kind="report", key=f"report.{day}", subject=subject, body="\n".join(lines) + "\n")


def report_day(now: datetime, report_at: str) -> date:
    """The day the last report due by ``now`` covers: the report that falls due at
    ``report_at`` (HH:MM UTC) on day D covers day D - 1."""
    hours, minutes = (int(part) for part in report_at.split(":"))
    now = now.astimezone(UTC)
    due_today = datetime.combine(now.date(), time(hours, minutes), tzinfo=UTC)
    last_due = due_today if now >= due_today else due_today - timedelta(days=1)
    return last_due.date() - timedelta(days=1)


def cut_lines(cut: Report) -> list[str]:
    """The daily cut of the statistics report: the figures the counts above do not give."""
    f = cut.figures
    lines = ["Times (seconds: count, median, 90th percentile, maximum)"]
    lines += [
        f"  {t.measure:<16}{t.count:>6}{t.median:>10}{t.p90:>10}{t.max:>10}" for t in f.times
    ] or ["  (none)"]
    lines += ["", "Refusals"]
    lines += [f"  {partner:<12} {reason:<32}{n:>5}" for partner, reason, n in f.refusals] or [
        "  (none)"
    ]
    lines += ["", "Outbound          sent   retries    failed"]
    lines += [f"  {b.partner:<12}{b.sent:>8}{b.retries:>10}{b.failed:>10}" for b in f.outbound] or [
        "  (none)"
    ]
    lines += ["", "Worst overdue replies (ledger id, reference, overdue seconds)"]
    lines += [
        f"  {o.message_id:<8} {o.reference:<20} {o.overdue_seconds:>10}"
        + ("" if o.answered else "  not answered")
        for o in f.worst
    ] or ["  (none)"]
    return lines
