"""The data-subject report's HTML: every value from a form or a request escaped, the page
self-contained (its own style, nothing fetched), an empty report saying so."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from webkit import XSS

from gateway.reports.subject import WIDTHS, Exchange, Informed, SubjectReport, fragment, page

AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def made(
    exchanges: tuple[Exchange, ...] = (), partners: tuple[Informed, ...] = ()
) -> SubjectReport:
    return SubjectReport(
        made_at=AT,
        made_by="aud",
        role="auditor",
        purpose="data-subject-request",
        case_reference=None,
        reason=XSS,
        search_id=7,
        asked=(f"Name {XSS}, born 1980-01-01",),
        method=("how",),
        exchanges=exchanges,
        partners=partners,
        zone=ZoneInfo("Europe/Oslo"),
    )


def test_every_value_is_escaped() -> None:
    exchange = Exchange(
        ledger_id=1,
        at=AT,
        direction="inbound",
        partner="NO-SIRENE",
        form="G",
        purpose="Hit, action taken",
        reference="NO-2026-000001",
        desk="sirene",
        retention="deleted from 2027-12-01 (kept P365D)",
        score=100.0,
        matched=(f"person name {XSS!r}",),
        why=(XSS,),
    )
    html = page(made((exchange,), (Informed("NO-SIRENE", 1, 0),)))
    assert "<script>" not in html and "<img" not in html
    assert html.count("&lt;script&gt;") == 4  # the reason, the name asked, matched, why
    assert "<style>" in html and "<link" not in html and "href=" not in html
    assert '<td class="code">2026-12-01 09:00</td>' in html  # in the bureau's zone
    assert '<td class="code">NO-SIRENE</td><td class="n">1</td><td class="n">0</td>' in html


def test_an_empty_report_says_so() -> None:
    html = fragment(made())
    assert '<p class="empty" id="subject-table">None.</p>' in html
    assert '<p class="empty" id="subject-partners-table">None.</p>' in html
    assert "recorded as search 7 in the access log" in html


def test_the_exchanges_table_has_a_width_for_each_column() -> None:
    """Fixed widths (the PDF lays the table out once): one per column, by position."""
    exchange = Exchange(
        1, AT, "outbound", "RS-NCB", "IP-MSG", "NCB message", "RO-2026-000900", None, "kept",
        100.0, ("m",), ("w",),
    )  # fmt: skip
    html = page(made((exchange,)))
    table = html.split('<table id="subject-table">', 1)[1].split("</table>", 1)[0]
    assert table.count('<th scope="col">') == len(WIDTHS) == table.count("<td")
    assert "#subject-table { table-layout: fixed; width: 100%; }" in html
    for column, width in enumerate(WIDTHS, 1):
        assert f"#subject-table th:nth-child({column}) {{ width: {width}; }}" in html
