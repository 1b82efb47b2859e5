"""A data-subject report as HTML: who asked, why and for whom, how the exchanges were found (the
matching and its threshold), every exchange about the person (date, direction, partner, form and
what it is for, retention, score and why it matched), and the partners to inform of a
rectification or an erasure. Every value is escaped; the page is self-contained (inline style,
for the PDF and a file); the console shows the fragment under its own style sheet."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

# The exchanges' table has fixed column widths (table-layout: fixed): WeasyPrint then lays out
# its cells once, without first measuring every cell's widest and narrowest content (a tenth to
# a fifth of a PDF's time; bench/subject_pdf.py). Its codes break anywhere rather than overflow.
# By column, Date to Matched, in percent of the page: a date and time and a reference stay on
# one line (9pt DejaVu Sans), and what matched, the longest, has the most room. Fewer lines a row
# is fewer pages and less time: the codes' widths in em with their padding left what matched
# too narrow, three times the pages.
WIDTHS = ("12%", "6%", "7%", "5%", "11%", "11.5%", "6%", "14%", "5%", "22.5%")
STYLE = """
@page { size: A4 landscape; margin: 1.2cm; }
body { font-family: sans-serif; font-size: 9pt; margin: 1.5em; }
td.code { white-space: nowrap; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #999; padding: 2px 6px; text-align: left; vertical-align: top; }
td.n { text-align: right; }
#subject-table { table-layout: fixed; width: 100%; }
#subject-table td.code { white-space: normal; overflow-wrap: anywhere; }
""" + "".join(
    f"#subject-table th:nth-child({n}) {{ width: {width}; }}\n" for n, width in enumerate(WIDTHS, 1)
)


@dataclass(frozen=True)
class Exchange:
    """One message that concerns the person."""

    ledger_id: int
    at: datetime  # when it was received or queued
    direction: str  # inbound, outbound
    partner: str
    form: str
    purpose: str  # what the form is for (its title in the catalogue)
    reference: str
    desk: str | None
    retention: str  # when its copies are deleted, or were, or that no rule deletes them
    score: float
    matched: tuple[str, ...]  # what matched: "person name 'Test EXAMPLE' born 1980-01-01"
    why: tuple[str, ...]


@dataclass(frozen=True)
class Informed:
    """A partner that sent or received data about the person."""

    partner: str
    sent_us: int
    we_sent: int


@dataclass(frozen=True)
class SubjectReport:
    made_at: datetime
    made_by: str
    role: str
    purpose: str
    case_reference: str | None
    reason: str | None
    search_id: int
    asked: tuple[str, ...]  # what identifies the person, as asked
    method: tuple[str, ...]  # how the exchanges were found
    exchanges: tuple[Exchange, ...]
    partners: tuple[Informed, ...]
    zone: ZoneInfo

    @property
    def title(self) -> str:
        return f"Data-subject report {self.search_id}"


def page(report: SubjectReport) -> str:
    """A self-contained HTML page (inline style: it fetches nothing)."""
    title = escape(report.title)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f"<h1>{title}</h1>{fragment(report)}</body></html>\n"
    )


def pdf(report: SubjectReport) -> bytes:
    """The page as a PDF (WeasyPrint, imported only here and only then). A function of a
    picklable report, so that a worker process can make it."""
    from gateway.reports import pdf as weasy  # noqa: PLC0415 (WeasyPrint only for a PDF)

    return weasy.to_pdf(page(report))


def fragment(report: SubjectReport) -> str:
    """The report's sections, without <html> or <body>."""
    zone = report.zone
    made = report.made_at.astimezone(zone)
    why = f"case {report.case_reference}" if report.case_reference else report.reason or ""
    parts = [
        '<p id="subject-made">Made '
        f"{made:%Y-%m-%d %H:%M} {escape(made.tzname() or zone.key)} by {escape(report.made_by)} "
        f"({escape(report.role)}), purpose {escape(report.purpose)}: {escape(why)}; recorded "
        f"as search {report.search_id} in the access log. Times in {escape(zone.key)}.</p>",
        '<h2 id="subject-asked">The person</h2>',
        _list("subject-terms", report.asked),
        '<h2 id="subject-method">How the exchanges were found</h2>',
        _list("subject-how", report.method),
        '<h2 id="subject-exchanges">Exchanges that concern the person</h2>',
        _table(
            "subject-table",
            (
                "Date",
                "Direction",
                "Partner",
                "Form",
                "Purpose of the exchange",
                "Reference",
                "Desk",
                "Retention",
                "Score",
                "Matched",
            ),
            (
                (
                    Code(f"{exchange.at.astimezone(zone):%Y-%m-%d %H:%M}"),
                    Code("received" if exchange.direction == "inbound" else "sent"),
                    Code(exchange.partner),
                    Code(exchange.form),
                    exchange.purpose,
                    Code(exchange.reference),
                    Code(exchange.desk or "-"),
                    exchange.retention,
                    Code(f"{exchange.score:.1f}"),
                    (*exchange.matched, *exchange.why),
                )
                for exchange in report.exchanges
            ),
        ),
        '<h2 id="subject-partners">Partners to inform of a rectification or an erasure</h2>',
        _table(
            "subject-partners-table",
            ("Partner", "Forms it sent us", "Forms we sent it"),
            ((Code(p.partner), p.sent_us, p.we_sent) for p in report.partners),
        ),
    ]
    return "\n".join(parts)


def _list(ident: str, items: Sequence[str]) -> str:
    return f'<ul id="{ident}">' + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def _cell(value: object) -> str:
    if isinstance(value, int):
        return f'<td class="n">{value}</td>'
    if isinstance(value, tuple):
        return "<td>" + "<br>".join(escape(str(line)) for line in value) + "</td>"
    if isinstance(value, Code):
        return f'<td class="code">{escape(value)}</td>'
    return f"<td>{escape(str(value))}</td>"


class Code(str):
    """A cell's value kept on one line (a date, a reference, a partner's code)."""

    __slots__ = ()


def _table(ident: str, head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    body = ["<tr>" + "".join(_cell(value) for value in row) + "</tr>" for row in rows]
    if not body:
        return f'<p class="empty" id="{ident}">None.</p>'
    header = "".join(f'<th scope="col">{escape(name)}</th>' for name in head)
    return (
        f'<table id="{ident}"><thead><tr>{header}</tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table>"
    )
