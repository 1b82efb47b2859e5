"""The alert register in the console (the real app on a real SQLite ledger): the list and an
alert's page as each role gets them (a handler her desks' alerts, another desk's answering 404
as one that does not exist; operators and auditors 403), every view in the access log before
the page, a supervisor's changes by POST with the CSRF token (403 without, nothing stored), and
the message page's link to its alert."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alertkit import exchange, sample
from starlette.testclient import TestClient
from webkit import Console, console, csrf_of, login, write_config

from gateway.access import accesslog

RO_ALERT, RO_KEY = "RO0000000000123456", "R00000000000123456"
NL_ALERT, NL_KEY = "NL00000000000098765", "NL00000000000098765"


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[Console, dict[str, int]]]:
    """The console over a ledger where desk sirene received a G hit on the RO alert and sent
    the M answering it, and desk interpol received a G on the NL alert."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    with console(config) as made:
        services = made.services
        ids = {
            "G": exchange(services, sample("G", "valid-person-arrested")),
            "M": exchange(
                services,
                sample("M", "valid-reply-to-hit", reference="RO-2026-000200"),
                direction="outbound",
            ),
            "NL": exchange(
                services,
                sample("G", "valid-vehicle-seized", reference="NO-2026-000300"),
                desk="interpol",
            ),
        }
        yield made, ids


@pytest.fixture
def client(desk: tuple[Console, dict[str, int]]) -> Iterator[TestClient]:
    with TestClient(desk[0].app, follow_redirects=False) as made:
        yield made


def views(made: Console) -> list[accesslog.AccessEntry]:
    return accesslog.read(made.services.ledger)


def test_a_handler_sees_her_desks_alerts_and_another_desks_is_not_found(
    desk: tuple[Console, dict[str, int]], client: TestClient
) -> None:
    made, ids = desk
    login(client, "ana")
    page = client.get("/alerts")
    assert page.status_code == 200
    assert RO_ALERT in page.text and NL_ALERT not in page.text
    assert 'id="nav-alerts"' in page.text
    one = client.get(f"/alerts/{RO_KEY}")
    assert one.status_code == 200
    assert "SIS art. 26" in one.text and f"/messages/{ids['G']}" in one.text
    assert 'class="what what-hit">hit<' in one.text
    assert 'class="what what-supplementary">supplementary<' in one.text
    assert 'id="set-status"' not in one.text  # a handler does not change the register
    assert client.get("/alerts?kind=art-99").status_code == 400
    assert client.get("/alerts?desk=interpol").text.count('class="open"') == 0
    other = client.get(f"/alerts/{NL_KEY}")
    missing = client.get("/alerts/XX0000000000000000")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
    [listed, shown, by_desk] = views(made)
    assert (listed.user, listed.role, listed.purpose, listed.details) == (
        "ana", "handler", "case-work", {"list": "alerts", "shown": "1"},
    )  # fmt: skip
    assert (shown.reference, shown.details) == (RO_KEY, {"list": "alert", "shown": "2"})
    assert by_desk.details == {"list": "alerts", "shown": "0"}  # the refused filter: no line


@pytest.mark.parametrize("name", ["olaf", "aud"])
def test_operators_and_auditors_do_not_see_the_register(
    desk: tuple[Console, dict[str, int]], client: TestClient, name: str
) -> None:
    made, _ = desk
    _, home = login(client, name)
    assert 'id="nav-alerts"' not in home
    assert client.get("/alerts").status_code == 403
    assert client.get(f"/alerts/{RO_KEY}").status_code == 403
    assert views(made) == []


def test_a_supervisor_records_a_deletion_told_by_a_message(
    desk: tuple[Console, dict[str, int]], client: TestClient
) -> None:
    made, ids = desk
    login(client, "sue")
    page = client.get(f"/alerts/{RO_KEY}")
    token = csrf_of(page.text)
    # Without the CSRF token: refused, nothing stored.
    refused = client.post(
        f"/alerts/{RO_KEY}/status", data={"status": "deleted", "message": str(ids["M"])}
    )
    assert refused.status_code == 403
    # A message that does not refer to the alert: refused with the reason.
    wrong = client.post(
        f"/alerts/{RO_KEY}/status",
        data={"csrf": token, "status": "deleted", "message": str(ids["NL"])},
    )
    assert wrong.status_code == 409 and "does not refer to alert" in wrong.text
    assert not [e for e in made.services.audit.entries() if e.kind.startswith("alert.")]
    done = client.post(
        f"/alerts/{RO_KEY}/status",
        data={"csrf": token, "status": "deleted", "message": str(ids["M"])},
    )
    assert done.status_code == 303 and done.headers["location"] == f"/alerts/{RO_KEY}"
    after = client.get(f"/alerts/{RO_KEY}").text
    assert 'id="alert-status" class="status status-deleted">deleted' in after
    assert 'class="what what-deletion">deletion<' in after
    listed = client.get("/alerts?kind=art-26").text
    assert RO_ALERT in listed and NL_ALERT not in listed


def test_a_handler_cannot_change_the_register(
    desk: tuple[Console, dict[str, int]], client: TestClient
) -> None:
    made, _ = desk
    login(client, "ana")
    token = csrf_of(client.get(f"/alerts/{RO_KEY}").text)
    answer = client.post(f"/alerts/{RO_KEY}/follow", data={"csrf": token, "desk": "interpol"})
    assert answer.status_code == 403
    assert not [e for e in made.services.audit.entries() if e.kind.startswith("alert.")]


def test_the_message_page_links_to_its_alert(
    desk: tuple[Console, dict[str, int]], client: TestClient
) -> None:
    made, ids = desk
    login(client, "ana")
    page = client.get(f"/messages/{ids['G']}")
    assert page.status_code == 200
    assert f'<a href="/alerts/{RO_KEY}" class="alert-link">{RO_ALERT}</a>' in page.text
    with TestClient(made.app, follow_redirects=False) as operator:
        login(operator, "olaf")  # metadata only: no link to what the form says
        shown = operator.get(f"/messages/{ids['G']}")
        assert shown.status_code == 200 and "/alerts/" not in shown.text
