"""Sending a form through /api/v1: the Submitter's checks with real gpg (the world's throwaway
homes), the built-in XSDs and a real ledger (SQLite file, and PostgreSQL where marked). An
Idempotency-Key makes a retry safe: replayed, refused with another body, and taken by one of
several concurrent requests; every refusal leaves nothing queued and no key stored."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbkit import postgres_schema
from integration.apikit import API, ApiDesk, api_desk, error_code
from integration.inboundkit import World, gateway_config
from integration.submitkit import (
    ACK,
    G_ARRESTED,
    NOW,
    count_rows,
    outgoing,
    sequence_values,
    spool_files,
)
from starlette.testclient import TestClient

from gateway.store.ledger import idempotency_keys, messages
from gateway.web.bodylimit import MAX_BODY

THIS_YEAR = f"RO-{NOW.year}"
XML = {"content-type": "application/xml"}


def g_for_norway(**fields: str) -> bytes:
    return outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="NO-SIRENE", **fields)


@contextlib.contextmanager
def sending_desk(world: World, folder: Path, database_url: str) -> Iterator[ApiDesk]:
    config = gateway_config(world, folder, database_url=database_url)
    with api_desk(config, "sirene", "duty", start=NOW) as desk:
        yield desk


@pytest.fixture
def desk(world: World, tmp_path: Path) -> Iterator[ApiDesk]:
    with sending_desk(world, tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}") as made:
        yield made


@pytest.fixture(params=["sqlite", "postgresql"])
def any_desk(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ApiDesk]:
    if request.param == "sqlite":
        with sending_desk(world, tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}") as made:
            yield made
        return
    with postgres_schema() as url, sending_desk(world, tmp_path, url) as made:
        yield made


@pytest.fixture
def client(desk: ApiDesk) -> Iterator[TestClient]:
    with TestClient(desk.app, follow_redirects=False) as made:
        yield made


def send(
    client: TestClient, desk: ApiDesk, body: bytes, key: str | None = "k-1", who: str = "cms-a"
) -> Any:
    headers = desk.headers(who, **XML)
    if key is not None:
        headers["idempotency-key"] = key
    return client.post(f"{API}/messages", content=body, headers=headers)


def assert_nothing_queued(desk: ApiDesk) -> None:
    """No spool file, no message, no key stored, no number taken, no audit line of a queueing."""
    engine = desk.services.ledger.engine
    assert spool_files(desk.services.outbound) == []
    assert count_rows(engine, messages) == 0
    assert count_rows(engine, idempotency_keys) == 0
    assert sequence_values(engine) == {}
    assert [e.kind for e in desk.services.audit.entries() if e.kind == "queued"] == []


# -- sent, and sent again -----------------------------------------------------------------------


def test_a_form_is_queued_with_201_and_its_location(any_desk: ApiDesk) -> None:
    desk = any_desk
    with TestClient(desk.app) as client:
        answer = send(client, desk, g_for_norway())
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["reference"] == f"{THIS_YEAR}-000001"
        assert (body["partner"], body["form"], body["state"]) == ("NO-SIRENE", "G", "queued")
        assert answer.headers["location"] == f"{API}/messages/{body['id']}"
        row = desk.services.ledger.get(body["id"])
        assert (row.direction, row.state, row.desk) == ("outbound", "queued", "sirene")
        assert row.message_id == body["message_id"]
        events = [(kind, detail) for _, kind, detail in desk.services.ledger.events_of(row.id)]
        assert events == [("queued", "queued for NO-SIRENE api key:cms-a")]
        assert spool_files(desk.services.outbound) == [f"new/form.{body['reference']}.msg"]
        # Its status and place in the list, for the key that sent it.
        status = client.get(f"{API}/messages/{body['id']}/status", headers=desk.headers("cms-a"))
        assert status.json()["state"] == "queued"
        assert [d["kind"] for d in status.json()["deadlines"]] == ["reply"]
        listed = client.get(f"{API}/messages?direction=outbound", headers=desk.headers("cms-a"))
        assert [item["id"] for item in listed.json()["messages"]] == [body["id"]]
        # Its form is not given back: what we keep is sealed for the partner.
        form = client.get(
            f"{API}/messages/{body['id']}/form",
            headers=desk.headers("cms-a", **{"x-purpose": "case-work"}),
        )
        assert form.status_code == 410 and error_code(form.json()) == "form_not_kept"


def test_the_same_key_and_body_again_gives_the_first_answer(any_desk: ApiDesk) -> None:
    desk = any_desk
    with TestClient(desk.app) as client:
        first = send(client, desk, g_for_norway(), key="retry-1")
        again = send(client, desk, g_for_norway(), key="retry-1")
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["idempotent-replayed"] == "true"
        engine = desk.services.ledger.engine
        assert count_rows(engine, messages) == 1
        assert len(spool_files(desk.services.outbound)) == 1
        assert sequence_values(engine) == {THIS_YEAR: 1}
        # Keys belong to the API key that gave them: another system's "retry-1" is its own.
        other = send(client, desk, g_for_norway(), key="retry-1", who="cms-all")
        assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


def test_the_same_key_with_another_body_is_refused(desk: ApiDesk, client: TestClient) -> None:
    first = send(client, desk, g_for_norway(), key="once")
    other = send(client, desk, g_for_norway(created="2027-02-01T09:00:00Z"), key="once")
    assert first.status_code == 201
    assert other.status_code == 422 and error_code(other.json()) == "idempotency_key_reused"
    assert other.json()["error"]["details"] == [
        {"header": "Idempotency-Key", "message_id": first.json()["id"]}
    ]
    assert count_rows(desk.services.ledger.engine, messages) == 1


def test_concurrent_requests_with_one_key_queue_one_form(any_desk: ApiDesk) -> None:
    desk = any_desk
    body = g_for_norway()
    start = threading.Barrier(4)
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def one() -> None:
        client = TestClient(desk.app)
        start.wait()
        answer = send(client, desk, body, key="together")
        with lock:
            answers.append((answer.status_code, answer.json()))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in answers) == [200, 200, 200, 201]
    assert len({answer["id"] for _, answer in answers}) == 1
    engine = desk.services.ledger.engine
    assert count_rows(engine, messages) == 1
    assert count_rows(engine, idempotency_keys) == 1
    assert len(spool_files(desk.services.outbound)) == 1
    # The numbers the losers took were given back with their transactions: no gap.
    assert sequence_values(engine) == {THIS_YEAR: 1}
    assert desk.services.audit.verify() == []


# -- refused, nothing queued --------------------------------------------------------------------


def test_an_invalid_form_is_refused_with_each_error_and_no_key_is_kept(
    desk: ApiDesk, client: TestClient
) -> None:
    invalid = g_for_norway(created="2027-02-01T09:00:00")  # Created without its offset
    invalid = invalid.replace(b"<Priority>", b"<Priority><Nonsense/>", 1)
    answer = send(client, desk, invalid, key="fix-me")
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert error_code(body) == "invalid_form"
    details = body["error"]["details"]
    assert len(details) >= 2 and all(set(d) == {"line", "path", "reason"} for d in details)
    created = next(d for d in details if d["path"].endswith("/Created"))
    assert isinstance(created["line"], int)
    assert "offset" in created["reason"] or "time zone" in created["reason"], created
    assert "regex" not in created["reason"] and "pattern" not in created["reason"]
    assert_nothing_queued(desk)
    # The key was not spent: the corrected form goes with it.
    assert send(client, desk, g_for_norway(), key="fix-me").status_code == 201


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        (b"this is not XML", "invalid_form", ""),
        (b"", "invalid_form", ""),
        (b'<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>', "invalid_form", "DOCTYPE"),
        (b"<Unknown xmlns='urn:nothing'/>", "invalid_form", ""),
    ],
)
def test_what_is_not_a_form_is_refused(
    desk: ApiDesk, client: TestClient, body: bytes, code: str, says: str
) -> None:
    answer = send(client, desk, body)
    assert answer.status_code == 422 and error_code(answer.json()) == code, answer.text
    assert says in answer.text
    assert answer.json()["error"]["details"], "each error listed"
    assert_nothing_queued(desk)


def test_a_form_the_gateway_may_not_send_is_refused(desk: ApiDesk, client: TestClient) -> None:
    receipt = (Path(__file__).resolve().parents[2] / "forms" / "samples" / ACK).read_bytes()
    answer = send(client, desk, receipt)
    assert answer.status_code == 422 and error_code(answer.json()) == "refused"
    assert "made by the gateway" in answer.json()["error"]["message"]
    unknown = outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="XX-SIRENE")
    answer = send(client, desk, unknown)
    assert answer.status_code == 422 and "unknown partner XX-SIRENE" in answer.text
    assert_nothing_queued(desk)


def test_an_oversized_body_is_refused_before_it_is_read(desk: ApiDesk, client: TestClient) -> None:
    huge = g_for_norway().replace(b"</ActionTaken>", b"x" * MAX_BODY + b"</ActionTaken>")
    answer = send(client, desk, huge)
    assert answer.status_code == 413 and error_code(answer.json()) == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(70):
            yield b"<" + b"x" * 1023

    headers = desk.headers("cms-a", **XML, **{"idempotency-key": "k-2"})
    streamed = client.post(f"{API}/messages", content=chunks(), headers=headers)
    assert streamed.status_code == 413 and error_code(streamed.json()) == "body_too_large"
    assert_nothing_queued(desk)


def test_requests_without_key_or_xml_or_permission_are_refused(
    desk: ApiDesk, client: TestClient
) -> None:
    form = g_for_norway()
    for key in (None, "", "has space", "x" * 65, "a/b"):
        answer = send(client, desk, form, key=key)
        assert answer.status_code == 400, key
        assert error_code(answer.json()) == "idempotency_key_required"
    headers = desk.headers("cms-a", **{"content-type": "text/plain", "idempotency-key": "k"})
    answer = client.post(f"{API}/messages", content=form, headers=headers)
    assert answer.status_code == 415 and error_code(answer.json()) == "unsupported_media_type"
    for who in ("ops", "audit"):
        answer = send(client, desk, form, who=who)
        assert answer.status_code == 403 and error_code(answer.json()) == "forbidden"
    answer = client.post(
        f"{API}/messages?desk=duty",
        content=form,
        headers=desk.headers("cms-a", **XML, **{"idempotency-key": "k"}),
    )
    assert answer.status_code == 403 and "desk duty" in answer.text
    answer = client.post(
        f"{API}/messages?desk=nowhere",
        content=form,
        headers=desk.headers("cms-all", **XML, **{"idempotency-key": "k"}),
    )
    assert answer.status_code == 400 and error_code(answer.json()) == "bad_parameter"
    assert_nothing_queued(desk)
    # A key of every desk sends for the desk it names, or the route's.
    named = client.post(
        f"{API}/messages?desk=duty",
        content=form,
        headers=desk.headers("cms-all", **XML, **{"idempotency-key": "k"}),
    )
    assert named.status_code == 201
    assert desk.services.ledger.get(named.json()["id"]).desk == "duty"
