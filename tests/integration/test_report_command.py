"""`gateway report` as an operator runs it, on a ledger with known contents (tests/reportkit.py):
the figures written in each format to --out or standard output; a bad period, a bad day or a PDF
without a file refused with exit 2, a clear line and nothing written."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from reportkit import FIRST, FORMS, HITS, LAST, fill_known
from webkit import write_config

from gateway.cli.main import main
from gateway.core.clock import FakeClock
from gateway.reports.tables import CSV_COLUMNS
from gateway.store.ledger import Ledger, make_engine


@pytest.fixture
def config(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    path = write_config(tmp_path, url)
    engine = make_engine(url)
    clock = FakeClock()
    fill_known(Ledger(engine, clock), clock)
    engine.dispose()
    return path


def test_json_to_a_file_and_csv_to_standard_output(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "year.json"
    period = ["--from", FIRST, "--to", LAST]
    assert main(["-c", str(config), "report", *period, "--format", "json", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert [tuple(row.values()) for row in document["forms"]] == FORMS
    assert [tuple(row.values()) for row in document["hits"]] == HITS
    capsys.readouterr()
    assert (
        main(["-c", str(config), "report", *period, "--format", "csv", "--partner", "RS-NCB"]) == 0
    )
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == list(CSV_COLUMNS)
    assert {row[3] for row in table[1:] if row[0] in ("forms", "outbound")} == {"RS-NCB"}


def test_html_and_pdf_files(config: Path, tmp_path: Path) -> None:
    period = ["--from", FIRST, "--to", LAST]
    page, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    assert main(["-c", str(config), "report", *period, "--out", str(page)]) == 0  # html: default
    assert page.read_text().count("<svg") == 2
    assert main(["-c", str(config), "report", *period, "--format", "pdf", "--out", str(pdf)]) == 0
    assert pdf.read_bytes().startswith(b"%PDF-")


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--from", "2026-02-01", "--to", "2026-01-31"], "the period ends (2026-01-31) before"),
        (["--from", "2026-02-30", "--to", "2026-03-01"], "'2026-02-30' is not a day"),
        (["--from", FIRST, "--to", "9999-12-31"], "the period must end before 9999-12-31"),
        (["--from", FIRST, "--to", LAST, "--format", "pdf"], "a PDF needs --out FILE"),
        (["--from", FIRST, "--to", LAST, "--format", "xls"], "invalid choice: 'xls'"),
    ],
)
def test_a_bad_request_is_refused_and_nothing_is_written(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    said: str,
) -> None:
    out = tmp_path / "never.out"
    written = [*arguments, "--out", str(out)] if "pdf" not in arguments else arguments
    try:
        code = main(["-c", str(config), "report", *written])
    except SystemExit as stop:  # argparse's own refusals
        code = int(str(stop.code))
    assert code == 2
    captured = capsys.readouterr()
    assert said in captured.err
    assert captured.out == ""
    assert not out.exists()


def test_an_unwritable_file_is_a_clear_refusal(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["-c", str(config), "report", "--from", FIRST, "--to", LAST, "--out", str(tmp_path)]
    )
    assert code == 2
    assert f"gateway report: cannot write {tmp_path}: Is a directory" in capsys.readouterr().err
    assert not tmp_path.with_name(tmp_path.name + ".part").exists()  # nothing left behind
