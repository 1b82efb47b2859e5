"""The PDF of a data-subject report in the console against the real app on a real ledger
(SQLite file) and real WeasyPrint: read back with pdftotext, refused past `[web]
subject_pdf_rows` (the refusal recorded: it tells how many exchanges there are) and while every
slot is taken (503, Retry-After, nothing recorded), made
off the event loop (another page is answered meanwhile), for auditors and supervisors only."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from subjectkit import BORN, NAME, RETENTION, Filled, fill
from webkit import Console, console, csrf_of, login, write_config

from gateway.access.accesslog import Access
from gateway.web.console import Console as AppConsole

ASK = {"name": NAME, "born": BORN, "purpose": "data-subject-request", "reason": "request 17/2026"}


def made_console(tmp_path: Path, rows: int) -> Iterator[tuple[Console, Filled]]:
    extra = f"subject_pdf_rows = {rows}\n{RETENTION}"
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", extra=extra)
    with console(config) as made:
        yield made, fill(made.services)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[Console, Filled]]:
    yield from made_console(tmp_path, 3)  # the person's report lists 3 exchanges


@pytest.fixture
def client(desk: tuple[Console, Filled]) -> Iterator[TestClient]:
    with TestClient(desk[0].app, follow_redirects=False) as made:
        yield made


def app_console(made: Console) -> AppConsole:
    found: AppConsole = made.app.state.console
    return found


def reports(made: Console) -> list[str]:
    return [e.reason for e in made.services.audit.entries() if e.kind == Access.REPORT]


def ask_pdf(client: TestClient, **fields: str) -> Any:
    token = csrf_of(client.get("/subject-report").text)
    return client.post("/subject-report/pdf", data={"csrf": token, **fields})


def pdf_text(pdf: bytes, folder: Path) -> str:
    (folder / "r.pdf").write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", "-layout", str(folder / "r.pdf"), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_pdf_reads_back_and_is_recorded(
    desk: tuple[Console, Filled], client: TestClient, tmp_path: Path
) -> None:
    made, _ = desk
    login(client, "aud")
    answer = ask_pdf(client, **ASK)
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF-")
    assert answer.headers["content-type"] == "application/pdf"
    text = pdf_text(answer.content, tmp_path)
    for expected in (
        "NO-2026-000001",
        "NO-2026-000002",
        "RO-2026-000900",
        "RS-NCB",
        "NO-SIRENE",
        "2027-12-01",
        "2026-12-01 10:00",
        "Partners to inform",
    ):
        assert expected in text, expected
    assert "NO-2026-000003" not in text and "NO-2026-000004" not in text
    [line] = reports(made)
    assert line.startswith("user=aud role=auditor purpose=data-subject-request messages=3 ")
    assert line.endswith(" output=pdf") and "EXAMPLE" not in line
    assert app_console(made).pdfs.slots.busy == 0


def test_past_the_row_cap_the_pdf_is_refused_and_the_refusal_is_recorded(
    tmp_path: Path,
) -> None:
    for made, _ in made_console(tmp_path, 2):
        with TestClient(made.app, follow_redirects=False) as client:
            login(client, "aud")
            answer = ask_pdf(client, **ASK)
            assert answer.status_code == 400
            assert "more than 2 exchanges" in answer.text
            assert "gateway subject-report" in answer.text
            assert f'value="{NAME}"' in answer.text  # the form kept to narrow it
            # The refusal says the subject has more than two exchanges: a consultation.
            assert [r.rsplit(" ", 1)[1] for r in reports(made)] == ["output=pdf-refused"]
            assert app_console(made).pdfs.slots.busy == 0
            # The page itself is not capped: it lists the three and is recorded.
            token = csrf_of(client.get("/subject-report").text)
            page = client.post("/subject-report", data={"csrf": token, **ASK})
            assert page.status_code == 200 and "RO-2026-000900" in page.text
            assert [r.rsplit(" ", 1)[1] for r in reports(made)] == [
                "output=pdf-refused",
                "output=html",
            ]


def test_while_every_slot_is_taken_a_pdf_gets_503_and_nothing_is_recorded(
    desk: tuple[Console, Filled], client: TestClient
) -> None:
    made, _ = desk
    login(client, "sue")
    slots = app_console(made).pdfs.slots
    assert slots.size == 1
    with slots.held() as taken:
        assert taken
        answer = ask_pdf(client, **ASK)
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "30"
        assert "being made" in answer.text and f'value="{NAME}"' in answer.text
        assert reports(made) == []
    assert slots.busy == 0
    answer = ask_pdf(client, **ASK)
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF-")
    assert len(reports(made)) == 1


@pytest.mark.parametrize("user", ["ana", "dora", "olaf"])
def test_roles_without_the_report_get_no_pdf_even_when_busy(
    desk: tuple[Console, Filled], client: TestClient, user: str
) -> None:
    made, _ = desk
    login(client, user)
    with app_console(made).pdfs.slots.held():
        assert client.post("/subject-report/pdf", data=ASK).status_code == 403
    assert client.post("/subject-report/pdf", data=ASK).status_code == 403
    assert reports(made) == []


def test_the_pdf_is_made_off_the_event_loop(
    desk: tuple[Console, Filled], client: TestClient
) -> None:
    """While one PDF is being made, the app's event loop (the test client runs every request
    on one) answers another page: the PDF was still not done when that page came back."""
    made, _ = desk
    slots = app_console(made).pdfs.slots
    login(client, "aud")
    token = csrf_of(client.get("/subject-report").text)
    answers: list[Any] = []
    done = threading.Event()

    def make() -> None:
        answers.append(client.post("/subject-report/pdf", data={"csrf": token, **ASK}))
        done.set()

    maker = threading.Thread(target=make)
    maker.start()
    try:
        while slots.busy == 0 and not done.is_set():
            done.wait(0.001)  # polls a state, no deadline
        other = client.get("/subject-report")
        still_making = not done.is_set()
    finally:
        maker.join()
    assert other.status_code == 200
    [answer] = answers
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF-")
    assert still_making
