"""The statistics report on a ledger with known contents (tests/reportkit.py), on SQLite and
PostgreSQL: every figure checked exactly, in JSON, CSV, HTML (with SVG charts) and PDF (read back
with pdftotext, its chart an image); the scope's filters; the command's refusals."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dbkit import postgres_schema
from reportkit import (
    AS_OF,
    COMPLIANCE,
    FIRST,
    FORMS,
    HITS,
    LAST,
    OUTBOUND,
    REFUSALS,
    TIMES,
    TREND,
    WORST,
    fill_known,
)

from gateway.cli import report as cli_report
from gateway.core.clock import FakeClock
from gateway.reports.figures import Report, make_report, scope_of
from gateway.reports.tables import CSV_COLUMNS
from gateway.store.ledger import Ledger, create_schema, make_engine

ZONE = ZoneInfo("Europe/Bucharest")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def known(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('reports')}/ledger.db"
        with _ledger(url) as ledger:
            yield ledger
        return
    with postgres_schema() as url, _ledger(url) as ledger:
        yield ledger


class _ledger:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def __enter__(self) -> Ledger:
        create_schema(self.engine)
        clock = FakeClock(AS_OF)
        ledger = Ledger(self.engine, clock)
        fill_known(ledger, clock)
        return ledger

    def __exit__(self, *_: object) -> None:
        self.engine.dispose()


def report_of(ledger: Ledger, partner: str | None = None, desk: str | None = None) -> Report:
    scope = scope_of(date.fromisoformat(FIRST), date.fromisoformat(LAST), AS_OF, partner, desk)
    return make_report(ledger, scope, ZONE)


def test_every_figure_of_the_known_ledger(known: Ledger) -> None:
    f = report_of(known).figures
    assert f.forms == FORMS
    assert f.hits == HITS
    assert [
        (c.owed_by, c.form, c.priority, c.partner, c.in_time, c.late) for c in f.compliance
    ] == COMPLIANCE
    assert [(o.reference, o.overdue_seconds, o.answered) for o in f.worst] == WORST
    assert [(t.measure, t.count, t.median, t.p90, t.max) for t in f.times] == TIMES
    assert f.refusals == REFUSALS
    assert [(b.partner, b.sent, b.retries, b.failed, b.resends) for b in f.outbound] == OUTBOUND
    assert f.trend == TREND


def test_a_partner_or_a_desk_narrows_every_figure(known: Ledger) -> None:
    rs = report_of(known, partner="RS-NCB").figures
    assert rs.forms == [row for row in FORMS if row[2] == "RS-NCB"]
    assert rs.refusals == [row for row in REFUSALS if row[0] == "RS-NCB"]
    assert [b.partner for b in rs.outbound] == ["RS-NCB"]
    assert rs.hits == []
    sirene = report_of(known, desk="sirene").figures
    assert sirene.forms == [row for row in FORMS if row[3] == "G"]
    assert sirene.refusals == []  # a refused message reached no desk
    assert [t.measure for t in sirene.times] == ["reply-desk"]


def test_json_carries_the_same_figures_and_the_period_in_utc(known: Ledger) -> None:
    document = json.loads(cli_report.rendered(report_of(known), "json"))
    assert document["period"]["start_utc"] == "2026-01-01T00:00:00Z"
    assert document["period"]["end_utc"] == "2026-03-01T00:00:00Z"
    assert document["period"]["time_zone"] == "Europe/Bucharest"
    assert [tuple(row.values()) for row in document["forms"]] == FORMS
    assert [tuple(row.values()) for row in document["hits"]] == HITS
    assert [
        (r["owed_by"], r["form"], r["priority"], r["partner"], r["in_time"], r["late"])
        for r in document["compliance"]
    ] == COMPLIANCE
    assert document["compliance"][1]["share_in_time"] == 0.5
    assert [
        (r["reference"], r["overdue_seconds"], r["answered"]) for r in document["worst_overdue"]
    ] == WORST
    assert document["worst_overdue"][0]["due"] == "2026-02-05T22:00:00Z"
    assert [tuple(r.values()) for r in document["times"]] == TIMES
    assert [tuple(r.values()) for r in document["refusals"]] == REFUSALS
    assert [tuple(r.values()) for r in document["outbound"]] == OUTBOUND
    assert [tuple(r.values()) for r in document["trend"]] == TREND


def test_csv_is_one_table_with_one_header_row(known: Ledger) -> None:
    text = cli_report.rendered(report_of(known), "csv").decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(CSV_COLUMNS)
    assert all(len(row) == len(rows[0]) for row in rows)
    assert rows[0] not in rows[1:]
    table = list(csv.DictReader(io.StringIO(text)))
    forms = [
        (r["period"], r["direction"], r["partner"], r["form"], int(r["value"]))
        for r in table
        if r["section"] == "forms"
    ]
    assert forms == FORMS
    shares = {
        (r["owed_by"], r["form"], r["priority"], r["partner"]): r["value"]
        for r in table
        if r["section"] == "compliance" and r["metric"] == "share_in_time"
    }
    assert shares[("desk", "G", "urgent", "NO-SIRENE")] == "0.5000"
    assert shares[("desk", "G", "normal", "NO-SIRENE")] == "0.0000"
    times = {
        (r["category"], r["metric"]): int(r["value"]) for r in table if r["section"] == "times"
    }
    assert times[("reply-desk", "p90_seconds")] == 64800
    assert times[("receipt", "median_seconds")] == 300
    refused = [
        (r["partner"], r["category"], int(r["value"])) for r in table if r["section"] == "refusals"
    ]
    assert refused == REFUSALS
    trend = [(r["period"], r["metric"], int(r["value"])) for r in table if r["section"] == "trend"]
    assert trend[:2] == [("2026-01-10", "received", 1), ("2026-01-10", "sent", 0)]


def test_html_shows_the_figures_and_svg_charts(known: Ledger) -> None:
    html = cli_report.rendered(report_of(known), "html").decode()
    assert "Period 2026-01-01 00:00 UTC to 2026-03-01 00:00 UTC" in html
    assert html.count("<svg") == 2  # forms by type (bars), the trend (lines)
    assert "<script" not in html
    svg = html[html.index("<svg") :]
    assert 'style="' not in svg[: svg.index("</svg>")]
    assert "<td>NO-2026-000003</td>" in html
    # g3's due instant in the bureau's zone (UTC+2 in February)
    assert "2026-02-06 00:00 EET" in html
    assert "50.0%" in html and "32 d 02 h" in html
    assert '<td>550 5.6.0 InvalidForm</td><td class="n">2</td>' in html


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) missing")
def test_the_pdf_opens_with_the_figures_and_a_chart_image(known: Ledger, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(cli_report.rendered(report_of(known), "pdf"))
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert "Period 2026-01-01 00:00 UTC to 2026-03-01 00:00 UTC" in text
    assert "NO-2026-000003" in text and "550 5.6.0 InvalidForm" in text
    assert "32 d 02 h" in text and "50.0%" in text
    images = subprocess.run(
        ["pdfimages", "-list", str(pdf)], check=True, capture_output=True, text=True
    ).stdout.splitlines()[2:]
    assert [line.split()[2] for line in images].count("image") == 2  # (and their alpha masks)
