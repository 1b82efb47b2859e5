"""The console's cases pages against the real app and ledger: who sees which case (another desk's
is 404, operators 403, auditors read without actions), the view of a case's messages in the
access log, the actions as POSTs with CSRF and a required reason (refused with nothing changed),
the owner desk changed by a supervisor only, and the message page's link to its case."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.apikit import API, api_desk, error_code, get_json
from starlette.testclient import TestClient
from webkit import Console, console, csrf_of, login, receive, write_config

from gateway.access.roles import Principal, Role
from gateway.service.cases import Cases

ANA = Principal("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}))


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Console]:
    """Three received forms on the sirene desk, the first two in a case opened by hand."""
    with console(write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")) as made:
        services = made.services
        ids = [receive(services, f"NO-2026-00000{n}") for n in (1, 2, 3)]
        cases = Cases(services.ledger, services.audit)
        case = cases.open_around(ANA, services.ledger.get(ids[0]), "a hit and its follow-up")
        cases.link(ANA, case.number, services.ledger.get(ids[1]), "same person")
        yield made


def signed_in(desk: Console, name: str) -> TestClient:
    client = TestClient(desk.app, follow_redirects=False)
    assert login(client, name)[0] == 303
    return client


def views(desk: Console) -> list[str]:
    return [
        entry.reason
        for entry in desk.services.audit.entries()
        if entry.kind == "access.view" and "part=case" in entry.reason
    ]


def test_a_handler_lists_and_opens_a_case_of_its_desk_and_the_view_is_logged(
    desk: Console,
) -> None:
    with signed_in(desk, "ana") as client:
        listing = client.get("/cases")
        assert listing.status_code == 200
        assert 'id="case-1"' in listing.text and "C2026-000001" in listing.text
        assert 'id="case-1"' in client.get("/cases?status=open&desk=sirene").text
        assert 'id="case-1"' not in client.get("/cases?status=closed").text
        assert client.get("/cases?status=maybe").status_code == 400
        assert views(desk) == []  # a list shows no message
        page = client.get("/cases/1").text
        assert re.findall(r'id="member-(\d+)"', page) == ["1", "2"]
        assert "same person" in page and 'id="form-close"' in page
        assert 'id="form-desk"' not in page  # a handler does not move cases
        assert views(desk) == [
            f"user=ana role=handler purpose=case-work ledger={n} part=case" for n in (1, 2)
        ]
        message = client.get("/messages/1").text
        assert 'id="message-case"' in message and "C2026-000001" in message
        assert 'id="message-case"' not in client.get("/messages/3").text
        assert client.get("/cases/99").status_code == 404
        assert client.get(f"/cases/{2**70}").status_code == 404  # never sent to the database


def test_other_desks_operators_and_auditors(desk: Console) -> None:
    with signed_in(desk, "ben") as other:
        assert 'id="case-1"' not in other.get("/cases").text
        assert other.get("/cases/1").status_code == 404
        csrf = csrf_of(other.get("/cases").text)
        answer = other.post("/cases/1/close", data={"csrf": csrf, "reason": "mine now"})
        assert answer.status_code == 404
    with signed_in(desk, "olaf") as operator:
        assert operator.get("/cases").status_code == 403
        assert operator.get("/cases/1").status_code == 403
        assert 'id="nav-cases"' not in operator.get("/outbound").text
    with signed_in(desk, "aud") as auditor:
        page = auditor.get("/cases/1")
        assert page.status_code == 200
        assert 'id="form-close"' not in page.text and "unlink-1" not in page.text
        csrf = csrf_of(page.text)
        answer = auditor.post("/cases/1/close", data={"csrf": csrf, "reason": "audit"})
        assert answer.status_code == 409
    assert views(desk)[-2:] == [
        f"user=aud role=auditor purpose=audit ledger={n} part=case" for n in (1, 2)
    ]
    cases = Cases(desk.services.ledger, desk.services.audit)
    assert cases.find(None, "1").status == "open"


def test_actions_need_csrf_and_a_reason_and_go_to_the_timeline(desk: Console) -> None:
    with signed_in(desk, "ana") as client:
        csrf = csrf_of(client.get("/cases/1").text)
        assert client.post("/cases/1/close", data={"reason": "done"}).status_code == 403
        refused = client.post("/cases/1/close", data={"csrf": csrf, "reason": " "})
        assert refused.status_code == 409 and "reason is required" in refused.text
        assert client.post("/cases/1/explode", data={"csrf": csrf}).status_code == 404
        linked = client.post(
            "/cases/1/link", data={"csrf": csrf, "message": "NO-2026-000003", "reason": "also"}
        )
        assert (linked.status_code, linked.headers["location"]) == (303, "/cases/1")
        moved = client.post(
            "/cases/1/desk", data={"csrf": csrf, "desk": "interpol", "reason": "theirs"}
        )
        assert moved.status_code == 409 and "supervisor" in moved.text
        closed = client.post("/cases/1/close", data={"csrf": csrf, "reason": "answered"})
        assert closed.status_code == 303
        page = client.get("/cases/1").text
        assert 'id="case-status">closed' in page and 'id="form-reopen"' in page
        assert re.findall(r'id="member-(\d+)"', page) == ["1", "2", "3"]
    with signed_in(desk, "sue") as supervisor:
        csrf = csrf_of(supervisor.get("/cases/1").text)
        moved = supervisor.post(
            "/cases/1/desk", data={"csrf": csrf, "desk": "interpol", "reason": "theirs"}
        )
        assert moved.status_code == 303
        assert 'id="case-desk">interpol' in supervisor.get("/cases/1").text
    kinds = [e.kind for e in desk.services.audit.entries() if e.kind.startswith("case.")]
    assert kinds == ["case.opened", "case.linked", "case.linked", "case.closed", "case.desk"]


def test_the_api_reads_a_case_with_the_console_s_rules(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'api.db'}")
    with api_desk(config, "sirene", "interpol") as desk:
        services = desk.services
        first = services.ledger.get(receive(services, "NO-2026-000001"))
        Cases(services.ledger, services.audit).open_around(ANA, first, "a hit")
        with TestClient(desk.app) as client:
            status, body = get_json(client, f"{API}/cases/1", desk.headers("cms-a"))
            assert status == 200
            assert (body["number"], body["status"], body["desk"]) == (
                "C2026-000001",
                "open",
                "sirene",
            )
            assert [m["reference"] for m in body["members"]] == ["NO-2026-000001"]
            assert [e["kind"] for e in body["timeline"]] == ["opened", "linked"]
            status, body = get_json(client, f"{API}/cases/1", desk.headers("cms-b"))
            assert (status, error_code(body)) == (404, "not_found")
            status, body = get_json(client, f"{API}/cases/2", desk.headers("cms-all"))
            assert (status, error_code(body)) == (404, "not_found")
            status, body = get_json(client, f"{API}/cases/1", desk.headers("ops"))
            assert (status, error_code(body)) == (403, "forbidden")
            assert get_json(client, f"{API}/cases/1", desk.headers("audit"))[0] == 200
        seen = [
            entry.reason
            for entry in services.audit.entries()
            if entry.kind == "access.view" and "part=case" in entry.reason
        ]
        assert seen == [
            f"user=key:cms-a role=handler purpose=case-work ledger={first.id} part=case",
            f"user=key:audit role=auditor purpose=audit ledger={first.id} part=case",
        ]
