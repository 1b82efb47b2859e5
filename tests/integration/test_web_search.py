"""The console's search page and data-subject report against the real app on a real ledger
(SQLite file): terms only in POST bodies, results limited to the user's desks with why each
matched, every search and report recorded (terms apart, the chain line with their id and
digest), bad requests refused with nothing recorded, the roles that may not refused."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from dbkit import RECEIVED
from starlette.testclient import TestClient
from subjectkit import BORN, DOCUMENT, NAME, RETENTION, Filled, fill
from webkit import Console, console, csrf_of, login, write_config

from gateway.access.accesslog import Access
from gateway.access.roles import Principal, Role
from gateway.forms.entities import Entity
from gateway.search import index
from gateway.service import searching, subjects
from gateway.service.cases import Cases
from gateway.store import search_log
from gateway.store.search_rows import Where


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[Console, Filled]]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", extra=RETENTION)
    with console(config) as made:
        yield made, fill(made.services)


@pytest.fixture
def client(desk: tuple[Console, Filled]) -> Iterator[TestClient]:
    with TestClient(desk[0].app, follow_redirects=False) as made:
        yield made


def chain(made: Console, kind: str) -> list[tuple[str, str]]:
    return [(e.reason, e.digest) for e in made.services.audit.entries() if e.kind == kind]


def search(client: TestClient, **fields: str) -> tuple[int, str]:
    token = csrf_of(client.get("/search").text)
    answer = client.post("/search", data={"csrf": token, **fields})
    return answer.status_code, answer.text


WHY = {"purpose": "case-work", "case_reference": "RO-2026-000042"}


def test_a_handler_finds_a_person_on_its_desks_and_the_search_is_recorded(
    desk: tuple[Console, Filled], client: TestClient
) -> None:
    made, filled = desk
    login(client, "ana")
    assert 'id="nav-search"' in client.get("/").text
    status, page = search(client, name="Exampel Test", born=BORN, **WHY)
    assert status == 200, page
    links = re.findall(r'href="/messages/(\d+)"', page)
    assert links == [str(filled.ids["NO-2026-000001"])]  # not interpol's, not the namesake's
    assert "exampel ~ example: " in page and "date of birth the same" in page
    [(reason, digest)] = chain(made, Access.SEARCH)
    search_id = int(reason.rsplit("search=", 1)[1])
    assert reason == f"user=ana role=handler purpose=case-work hits=1 search={search_id}"
    with made.services.ledger.reading() as tx:
        row = search_log.get(tx, search_id)
    assert row is not None and row.digest == digest and row.terms["value"] == "Exampel Test"


def test_each_field_filled_is_a_search_of_its_own(
    desk: tuple[Console, Filled], client: TestClient
) -> None:
    made, filled = desk
    login(client, "sue")  # every desk
    status, page = search(client, name=NAME, document=DOCUMENT, **WHY)
    assert status == 200
    assert len(chain(made, Access.SEARCH)) == 2
    found = set(re.findall(r'href="/messages/(\d+)"', page))
    assert {filled.ids["NO-2026-000002"], filled.ids["RO-2026-000900"]} <= {int(i) for i in found}


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"name": NAME, "case_reference": "C-1"}, "a search needs a purpose"),
        ({"name": NAME, "purpose": "reply"}, "a case reference or a short reason"),
        ({**WHY}, "fill at least one field"),
        ({"born": BORN, **WHY}, "a date of birth goes with a name"),
        ({"name": NAME, "born": "1 Jan 1980", **WHY}, "the date of birth is a date"),
        ({"name": NAME, "within": "-3", **WHY}, "tolerance is 0 to 366"),
        ({"name": "x" * 201, **WHY}, "too long"),
        ({"name": NAME, "document": "--", **WHY}, "no letter or digit"),
    ],
)
def test_bad_searches_are_refused_and_nothing_is_recorded(
    desk: tuple[Console, Filled], client: TestClient, fields: dict[str, str], said: str
) -> None:
    login(client, "ana")
    status, page = search(client, **fields)
    assert status == 400
    assert said in page and 'id="search-error"' in page
    assert 'href="/messages/' not in page
    assert chain(desk[0], Access.SEARCH) == []


def test_terms_never_in_a_url_and_csrf_required(
    desk: tuple[Console, Filled], client: TestClient
) -> None:
    login(client, "ana")
    page = client.get("/search").text
    assert re.search(r'<form method="post" action="/search"', page)
    refused = client.post("/search", data={"name": NAME, **WHY})
    assert refused.status_code == 403
    assert chain(desk[0], Access.SEARCH) == []


@pytest.mark.parametrize("user", ["olaf", "aud"])
def test_roles_that_do_not_search_are_refused(
    desk: tuple[Console, Filled], client: TestClient, user: str
) -> None:
    login(client, user)
    assert client.get("/search").status_code == 403
    home = client.get("/access-log" if user == "aud" else "/").text
    assert 'id="nav-' in home and 'id="nav-search"' not in home
    assert chain(desk[0], Access.SEARCH) == []


# -- the data-subject report -------------------------------------------------------------------


def report(client: TestClient, path: str = "/subject-report", **fields: str) -> tuple[int, bytes]:
    token = csrf_of(client.get("/subject-report").text)
    answer = client.post(path, data={"csrf": token, **fields})
    return answer.status_code, answer.content


ASK = {"name": NAME, "born": BORN, "purpose": "data-subject-request", "reason": "request 17/2026"}


def test_the_report_counts_retention_from_a_case_s_closure(
    desk: tuple[Console, Filled], client: TestClient
) -> None:
    """A message in a case is kept while the case is open, then the longest rule among the
    case's messages from its closure (as the retention purge counts it)."""
    made, filled = desk
    services = made.services
    cases = Cases(services.ledger, services.audit)
    supervisor = Principal("sam", frozenset({Role.SUPERVISOR}))
    case = cases.open_around(
        supervisor, services.ledger.get(filled.ids["NO-2026-000001"]), "request 17/2026"
    )
    login(client, "aud")
    page = report(client, **ASK)[1].decode()
    assert f"kept while case {case.number} is open, then P365D from its closure" in page
    assert page.count("deleted from 2027-12-01 (kept P365D)") == 2  # the two in no case

    made.clock.advance(timedelta(days=40))
    cases.close(supervisor, case.number, "answered")
    login(client, "aud")  # the session has ended meanwhile
    page = report(client, **ASK)[1].decode()
    assert f"deleted from 2028-01-10 (case {case.number} closed; kept P365D)" in page


def test_an_auditor_makes_the_report_in_html_and_pdf(
    desk: tuple[Console, Filled], client: TestClient, tmp_path: Path
) -> None:
    made, filled = desk
    login(client, "aud")
    assert 'id="nav-subject-report"' in client.get("/subject-report").text
    status, body = report(client, **ASK)
    page = body.decode()
    assert status == 200, page
    rows = re.findall(
        r'<tr><td class="code">[^<]*</td><td class="code">(received|sent)</td>'
        r'<td class="code">([^<]+)</td>',
        page,
    )
    assert rows == [("received", "NO-SIRENE"), ("received", "NO-SIRENE"), ("sent", "RS-NCB")]
    assert "NO-2026-000004" not in page and "NO-2026-000003" not in page  # strict: not them
    assert "Hit, action taken" in page and "NCB message" in page
    assert "deleted from 2027-12-01 (kept P365D)" in page
    assert '<td class="code">NO-SIRENE</td><td class="n">2</td><td class="n">0</td>' in page
    assert '<td class="code">RS-NCB</td><td class="n">0</td><td class="n">1</td>' in page
    assert 'action="/subject-report/pdf"' in page
    assert "may be incomplete" not in page

    status, pdf = report(client, "/subject-report/pdf", **ASK)
    assert status == 200 and pdf.startswith(b"%PDF-")
    (tmp_path / "r.pdf").write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", str(tmp_path / "r.pdf"), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for expected in ("NO-2026-000001", "NO-2026-000002", "RO-2026-000900", "RS-NCB"):
        assert expected in text

    lines = chain(made, Access.REPORT)
    assert [reason.split(" search=")[0] for reason, _ in lines] == [
        "user=aud role=auditor purpose=data-subject-request messages=3"
    ] * 2
    assert lines[0][0].endswith("output=html") and lines[1][0].endswith("output=pdf")
    for reason, digest in lines:
        assert "EXAMPLE" not in reason and "1980" not in reason
        search_id = int(reason.split(" search=")[1].split()[0])
        with made.services.ledger.reading() as tx:
            row = search_log.get(tx, search_id)
        assert row is not None and row.digest == digest
        assert (row.terms["name"], row.terms["born"]) == (NAME, BORN)
    assert filled.ids


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({**ASK, "purpose": ""}, "a search needs a purpose"),
        ({**ASK, "reason": ""}, "a case reference or a short reason"),
        ({**ASK, "born": ""}, "a name goes with a date of birth"),
        ({"purpose": "audit", "reason": "annual check"}, "give a name and a date of birth"),
        ({**ASK, "born": "01.01.1980"}, "the date of birth is a date"),
    ],
)
def test_a_bad_report_request_is_refused_and_nothing_is_recorded(
    desk: tuple[Console, Filled], client: TestClient, fields: dict[str, str], said: str
) -> None:
    login(client, "aud")
    for path in ("/subject-report", "/subject-report/pdf"):
        status, body = report(client, path, **fields)
        assert status == 400 and said in body.decode()
    assert chain(desk[0], Access.REPORT) == []


@pytest.mark.parametrize("user", ["ana", "dora", "olaf"])
def test_roles_without_the_report_are_refused(
    desk: tuple[Console, Filled], client: TestClient, user: str
) -> None:
    login(client, user)
    assert client.get("/subject-report").status_code == 403
    assert client.post("/subject-report", data=ASK).status_code == 403
    assert chain(desk[0], Access.REPORT) == []


def test_a_supervisor_finds_by_document(desk: tuple[Console, Filled], client: TestClient) -> None:
    login(client, "sue")
    status, body = report(
        client, document="x000 0000", purpose="supervision", case_reference="DP-2026-7"
    )
    page = body.decode()
    assert status == 200, page
    assert "NO-2026-000001" in page and "NO-2026-000002" in page
    assert "NO-2026-000004" not in page  # X0000001: one digit off is out at the strict threshold
    assert "RO-2026-000900" not in page  # no document in the form we sent


def test_a_report_lists_every_exchange_with_the_same_name_however_many(
    desk: tuple[Console, Filled],
) -> None:
    """More entries than a search's short list (100): every one with the person's very name is
    listed, and the report warns that more alike ones were not all read."""
    made, _ = desk
    services = made.services
    now = services.clock.now()
    many: list[int] = []
    with services.ledger.transaction() as tx:
        for number, name in enumerate(["Test EXAMPLE"] * 130 + ["Tests EXAMPLE"] * 110):
            reference = f"NL-2026-{number:06d}"
            message = services.ledger.record_in(
                tx, dataclasses.replace(RECEIVED, reference=reference, spool_key=None), "spooled"
            )
            where = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
            index.write_in(tx, where, [Entity("person", "name", name, BORN, "RO")], now)
            if name == NAME:
                many.append(message)
    principal = Principal("aud", frozenset({Role.AUDITOR}))
    why = searching.Why.of("data-subject-request", None, "request 17/2026")
    subject = subjects.Subject.of(NAME, date.fromisoformat(BORN), None)
    done = subjects.report(services, made.access.access_log, principal, subject, why, output="html")
    listed = {exchange.ledger_id for exchange in done.exchanges}
    assert set(many) <= listed
    assert "this list may be incomplete" in done.method[0]
    assert all(exchange.reference.startswith(("NL-", "NO-", "RO-")) for exchange in done.exchanges)
