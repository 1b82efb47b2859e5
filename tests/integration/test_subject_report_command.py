"""`gateway subject-report` on a real ledger (SQLite file and PostgreSQL): the report written
as HTML and as a PDF read back with pdftotext, recorded in the access log (terms apart, no
personal data in the chain); bad requests, unknown users and roles without the report refused
with nothing recorded and nothing written (to standard output)."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbkit import postgres_schema
from subjectkit import BORN, NAME, RETENTION, fill
from webkit import console, write_config

from gateway.access.accesslog import Access
from gateway.cli.main import main
from gateway.core import config as configuration
from gateway.core.clock import SystemClock
from gateway.store.audit import AuditLog
from gateway.store.ledger import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'ledger.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_schema())
        )
        path = write_config(tmp_path, url, extra=RETENTION)
        with console(path) as made:
            fill(made.services)
        yield path


def reports(config: Path) -> list[str]:
    engine = make_engine(configuration.load(config).database_url)
    try:
        return [
            e.reason for e in AuditLog(engine, SystemClock()).entries() if e.kind == Access.REPORT
        ]
    finally:
        engine.dispose()


def run(config: Path, *args: str) -> int:
    return main(["-c", str(config), "subject-report", *args])


WHY = ("--purpose", "data-subject-request", "--reason", "request 17/2026")


def test_a_pdf_lists_every_exchange_and_the_partners_to_inform(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "subject.pdf"
    code = run(
        config, "--user", "aud", "--name", "example test", "--birth-date", BORN, *WHY,
        "--format", "pdf", "--out", str(out),
    )  # fmt: skip
    told = capsys.readouterr().err
    assert code == 0, told
    assert "3 exchange(s)" in told
    for said in (told, caplog.text):  # no personal data in what is printed or logged
        assert "xample" not in said.lower() and BORN not in said and "X0000000" not in said
    text = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True, check=True
    ).stdout
    lines = [" ".join(line.split()) for line in text.splitlines()]
    rows = [line.split() for line in lines if line.startswith("2026-12-01 10:00 ")]
    assert [(row[2], row[3], row[4]) for row in rows] == [
        ("received", "NO-SIRENE", "G"),
        ("received", "NO-SIRENE", "G"),
        ("sent", "RS-NCB", "IP-MSG"),
    ]
    references = ["NO-2026-000001", "NO-2026-000002", "RO-2026-000900"]
    assert [next(word for word in row if "-2026-" in word) for row in rows] == references
    assert "NO-2026-000003" not in text and "NO-2026-000004" not in text
    assert any(line.startswith("NO-SIRENE 2 0") for line in lines)
    assert any(line.startswith("RS-NCB 0 1") for line in lines)
    assert "at least 90 of 100" in " ".join(lines)
    [reason] = reports(config)
    assert reason.startswith("user=aud role=auditor purpose=data-subject-request messages=3 ")
    assert reason.endswith(" output=pdf") and "xample" not in reason.lower()


def test_html_to_standard_output(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(config, "--user", "sue", "--document", "X0000000", "--purpose", "supervision",
               "--case", "DP-7")  # fmt: skip
    page = capsys.readouterr().out
    assert code == 0
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert page.count("NO-2026-00000") == 2 and "Document number X0000000" in page
    assert len(reports(config)) == 1


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (("--user", "aud", "--name", NAME, "--birth-date", BORN, "--case", "C-1"), 2,
         "a search needs a purpose"),
        (("--user", "aud", "--name", NAME, "--purpose", "audit", "--case", "C-1"), 2,
         "a name goes with a date of birth"),
        (("--user", "aud", "--purpose", "audit", "--case", "C-1"), 2, "give a name"),
        (("--user", "aud", "--document", "//", "--purpose", "audit", "--case", "C-1"), 2,
         "no letter or digit"),
        (("--user", "aud", "--document", "X0000000", *WHY, "--format", "pdf"), 2,
         "a PDF needs --out"),
        (("--user", "nobody", "--document", "X0000000", *WHY), 2, "no user 'nobody'"),
        (("--user", "ana", "--document", "X0000000", *WHY), 1,
         "ana has no role that makes data-subject reports"),
        (("--user", "olaf", "--document", "X0000000", *WHY), 1, "no role that makes"),
    ],
)  # fmt: skip
def test_refused_with_nothing_recorded_or_written(
    config: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    code: int,
    said: str,
) -> None:
    assert run(config, *args) == code
    captured = capsys.readouterr()
    assert said in captured.err and captured.out == ""
    assert reports(config) == []


def test_a_bad_date_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        run(config, "--user", "aud", "--name", NAME, "--birth-date", "1/1/1980", *WHY)
    assert stop.value.code == 2
    assert "is not a day" in capsys.readouterr().err
    assert reports(config) == []
