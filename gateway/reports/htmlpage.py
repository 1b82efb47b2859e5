"""A report as HTML: tables of the figures and their charts, a whole page or the fragment the
console's dashboard shows. Every value is escaped; the charts are inline SVG (or PNG data: URLs
for the PDF). Instants are shown in the bureau's time zone, the period's bounds in UTC."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from gateway.reports import charts
from gateway.reports.figures import Report

MEASURES = {
    "receipt": "time to receipt (partners' receipts of our forms)",
    "reply-desk": "time to reply (our desks)",
    "reply-partner": "time to reply (partners)",
}

STYLE = """
body { font-family: sans-serif; font-size: 10pt; margin: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #999; padding: 2px 6px; text-align: left; }
td.n { text-align: right; }
figure.chart { margin: 0.5em 0; }
figure.chart img, figure.chart svg { max-width: 100%; height: auto; }
"""


def page(report: Report, charts_as: str = "svg") -> str:
    """A self-contained HTML page (inline style and charts: it fetches nothing)."""
    title = escape(report.title)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f"<h1>{title}</h1>{fragment(report, charts_as)}</body></html>\n"
    )


def duration(seconds: int) -> str:
    """``3 h 20 min``, ``2 d 04 h``, ``45 s``."""
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours:02d} h"
    return f"{hours} h {mins:02d} min" if hours else f"{mins} min"


def fragment(report: Report, charts_as: str = "svg") -> str:
    """The report's sections, without <html> or <body>."""
    f, scope, zone = report.figures, report.scope, report.zone
    who = [f"partner {scope.partner}"] if scope.partner else []
    who += [f"desk {scope.desk}"] if scope.desk else []
    made = scope.as_of.astimezone(zone)
    parts = [
        '<p class="period" id="period">Period '
        f"{scope.start:%Y-%m-%d %H:%M} UTC to {scope.end:%Y-%m-%d %H:%M} UTC"
        f"{escape(' (' + ', '.join(who) + ')') if who else ''}; made "
        f"{made:%Y-%m-%d %H:%M} {escape(made.tzname() or zone.key)}; times shown in "
        f"{escape(zone.key)}.</p>"
    ]
    parts.append(_section("forms", "Forms per type, partner, direction and month"))
    parts.append(
        _table(
            "forms-table",
            ("Month (UTC)", "Direction", "Partner", "Form", "Count"),
            ((m, d, p, fo, n) for m, d, p, fo, n in f.forms),
        )
    )
    by_form: dict[str, int] = {}
    for _, direction, _, form, count in f.forms:
        by_form[f"{form} {'in' if direction == 'inbound' else 'out'}"] = (
            by_form.get(f"{form} {'in' if direction == 'inbound' else 'out'}", 0) + count
        )
    if by_form:
        labels = sorted(by_form)
        parts.append(
            _chart(
                charts.bar_chart("Forms by type", labels, [by_form[k] for k in labels], charts_as)
            )
        )
    parts.append(_section("hits", "Hits (G forms) per alert category"))
    parts.append(
        _table(
            "hits-table",
            ("Hit", "SIS article", "Hits"),
            (("by a partner" if d == "inbound" else "by us", a, n) for d, a, n in f.hits),
        )
    )
    parts.append(_section("compliance", "Deadline compliance (reply deadlines due in the period)"))
    parts.append(
        _table(
            "compliance-table",
            ("Owed by", "Form", "Priority", "Partner", "In time", "Late", "Share in time"),
            (
                (
                    "our desks" if c.owed_by == "desk" else "partner",
                    c.form,
                    c.priority,
                    c.partner,
                    c.in_time,
                    c.late,
                    "-" if c.share is None else f"{c.share:.1%}",
                )
                for c in f.compliance
            ),
        )
    )
    parts.append(_section("overdue", "Worst overdue cases"))
    parts.append(
        _table(
            "overdue-table",
            (
                "Ledger id",
                "Reference",
                "Form",
                "Partner",
                "Owed by",
                "Due",
                "Overdue by",
                "Answered",
            ),
            (
                (
                    o.message_id,
                    o.reference,
                    o.form,
                    o.partner,
                    "our desks" if o.owed_by == "desk" else "partner",
                    f"{o.due.astimezone(zone):%Y-%m-%d %H:%M %Z}",
                    duration(o.overdue_seconds),
                    "late" if o.answered else "not yet",
                )
                for o in f.worst
            ),
        )
    )
    parts.append(_section("times", "Time to receipt and time to reply"))
    parts.append(
        _table(
            "times-table",
            ("Measure", "Count", "Median", "90th percentile", "Maximum"),
            (
                (
                    MEASURES.get(t.measure, t.measure),
                    t.count,
                    duration(t.median),
                    duration(t.p90),
                    duration(t.max),
                )
                for t in f.times
            ),
        )
    )
    parts.append(_section("refusals", "Refusals by reason and partner"))
    parts.append(
        _table(
            "refusals-table", ("Partner", "Reason", "Count"), ((p, r, n) for p, r, n in f.refusals)
        )
    )
    parts.append(_section("outbound", "Outbound retries and failures"))
    parts.append(
        _table(
            "outbound-table",
            ("Partner", "Sent", "Retries", "Failed", "Re-sent for want of a receipt"),
            ((b.partner, b.sent, b.retries, b.failed, b.resends) for b in f.outbound),
        )
    )
    parts.append(_section("trend", "Volume trend (per UTC day)"))
    if f.trend:
        days = [d for d, _, _ in f.trend]
        parts.append(
            _chart(
                charts.line_chart(
                    "Forms per day",
                    days,
                    [
                        ("received", [i for _, i, _ in f.trend]),
                        ("sent", [o for _, _, o in f.trend]),
                    ],
                    charts_as,
                )
            )
        )
    parts.append(
        f'<p id="trend-total">{sum(i for _, i, _ in f.trend)} received, '
        f"{sum(o for _, _, o in f.trend)} sent over {len(f.trend)} day(s) with traffic.</p>"
    )
    return "\n".join(parts)


def _section(ident: str, title: str) -> str:
    return f'<h2 id="{ident}">{escape(title)}</h2>'


def _chart(drawn: str) -> str:
    if drawn.startswith("data:"):
        return f'<figure class="chart"><img alt="chart" src="{drawn}"></figure>'
    return f'<figure class="chart">{drawn}</figure>'


def _table(ident: str, head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    body = [
        "<tr>"
        + "".join(
            f'<td class="n">{value}</td>'
            if isinstance(value, int)
            else f"<td>{escape(str(value))}</td>"
            for value in row
        )
        + "</tr>"
        for row in rows
    ]
    if not body:
        return f'<p class="empty" id="{ident}">None.</p>'
    header = "".join(f'<th scope="col">{escape(name)}</th>' for name in head)
    return (
        f'<table id="{ident}"><thead><tr>{header}</tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table>"
    )
