"""POST /api/v1/search against the real app on a real ledger (SQLite file and PostgreSQL): the
key's desks only, why each result matched, the search recorded (terms apart, the chain line with
their id and digest), and the JSON refusals of bad searches with nothing recorded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbkit import postgres_schema
from integration.apikit import API, ApiDesk, api_desk, error_code
from starlette.testclient import TestClient
from webkit import form_xml, receive, write_config

from gateway.access.accesslog import Access
from gateway.service.searching import rebuild
from gateway.store import search_log

ASK = {"kind": "person", "value": "Exampel Test", "purpose": "case-work", "case_reference": "C-7"}


@pytest.fixture(params=["sqlite", "postgresql"])
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiDesk]:
    """Two received forms G about the same person, one on each desk, indexed."""
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'ledger.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_schema())
        )
        made = stack.enter_context(api_desk(write_config(tmp_path, url), "sirene", "interpol"))
        receive(made.services, "NO-2026-000001", desk="sirene")
        receive(made.services, "NO-2026-000002", desk="interpol", form=form_xml("NO-2026-000002"))
        assert rebuild(made.services).entries == 6
        yield made


@pytest.fixture
def client(desk: ApiDesk) -> Iterator[TestClient]:
    with TestClient(desk.app, follow_redirects=False) as made:
        yield made


def post(client: TestClient, desk: ApiDesk, key: str, body: Any) -> tuple[int, Any]:
    answer = client.post(f"{API}/search", json=body, headers=desk.headers(key))
    return answer.status_code, answer.json()


def searches(desk: ApiDesk) -> list[tuple[str, str]]:
    return [
        (entry.reason, entry.digest)
        for entry in desk.services.audit.entries()
        if entry.kind == Access.SEARCH
    ]


def test_a_key_finds_on_its_desks_and_the_search_is_recorded(
    desk: ApiDesk, client: TestClient
) -> None:
    status, body = post(client, desk, "cms-a", {**ASK, "born": "1980-01-01"})
    assert status == 200, body
    [hit] = body["results"]
    assert (hit["value"], hit["desk"], hit["born"]) == ("Test EXAMPLE", "sirene", "1980-01-01")
    assert any(why.startswith("exampel ~ example: ") for why in hit["why"])  # a typo
    assert "date of birth the same" in hit["why"]
    status, every = post(client, desk, "cms-all", ASK)
    assert status == 200
    assert sorted(hit["desk"] for hit in every["results"]) == ["interpol", "sirene"]

    [(reason, digest), _] = searches(desk)
    assert (
        reason == f"user=key:cms-a role=handler purpose=case-work hits=1 search={body['search_id']}"
    )
    with desk.services.ledger.reading() as tx:
        row = search_log.get(tx, body["search_id"])
    assert row is not None and row.digest == digest and row.terms["value"] == "Exampel Test"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"value": "Test", "case_reference": "C-7"}, 400, "search_refused"),
        ({"value": "Test", "purpose": "case-work"}, 400, "search_refused"),
        ({**ASK, "value": ""}, 400, "search_refused"),
        ({**ASK, "value": "x" * 201}, 400, "search_refused"),
        ({**ASK, "born": "1 Jan 1980"}, 400, "search_refused"),
        ({**ASK, "limit": "ten"}, 400, "search_refused"),
        ({**ASK, "name": "Test"}, 400, "bad_request"),
        (["Test"], 400, "bad_request"),
    ],
)
def test_bad_searches_are_refused_and_nothing_is_recorded(
    desk: ApiDesk, client: TestClient, body: Any, status: int, code: str
) -> None:
    answer, refused = post(client, desk, "cms-a", body)
    assert (answer, error_code(refused)) == (status, code)
    assert searches(desk) == []


def test_roles_without_search_are_refused(desk: ApiDesk, client: TestClient) -> None:
    for key in ("ops", "audit"):
        status, body = post(client, desk, key, ASK)
        assert (status, error_code(body)) == (403, "forbidden")
    answer = client.post(f"{API}/search", content=b"value=Test", headers=desk.headers("cms-a"))
    assert answer.status_code == 415
    assert searches(desk) == []
