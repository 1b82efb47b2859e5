"""/api/v1 reads against the real app on a real ledger (SQLite file; PostgreSQL where marked):
API keys (missing, wrong, revoked, throttled), desk isolation (404 as for no message), the list's
pages and filters, a message with its timeline and deadlines, the form's XML for the roles that
read content with every read in the access log, the open deadlines, the JSON refusals."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dbkit import postgres_schema
from integration.apikit import API, ApiDesk, api_desk, error_code, get_json
from starlette.testclient import TestClient
from webkit import form_xml, receive, write_config

from gateway.access import accesslog
from gateway.access.roles import Role
from gateway.web.api.openapi import document
from gateway.web.headers import CSP

PURPOSE = {"x-purpose": "case-work"}


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[ApiDesk]:
    with api_desk(
        write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}"), "sirene", "interpol"
    ) as made:
        yield made


@pytest.fixture
def client(desk: ApiDesk) -> Iterator[TestClient]:
    with TestClient(desk.app, follow_redirects=False) as made:
        yield made


def audit_kinds(desk: ApiDesk, prefix: str) -> list[str]:
    return [entry.kind for entry in desk.services.audit.entries() if entry.kind.startswith(prefix)]


# -- keys ---------------------------------------------------------------------------------------


def test_without_a_key_or_with_a_wrong_one_every_route_is_401(
    desk: ApiDesk, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    urls = [
        "/messages",
        f"/messages/{ledger_id}",
        f"/messages/{ledger_id}/status",
        f"/messages/{ledger_id}/form",
        "/deadlines",
    ]
    for url in urls:
        for headers in (
            {},
            {"authorization": "Bearer gwk_not-a-key"},
            {"authorization": f"Basic {desk.keys['cms-a']}"},
        ):
            status, body = get_json(client, API + url, headers)
            assert status == 401 and error_code(body) == "unauthorized", (url, headers)
    answer = client.get(f"{API}/messages", headers={"authorization": "Bearer gwk_wrong"})
    assert answer.headers["www-authenticate"] == (
        'Bearer realm="ipc-gateway-api", error="invalid_token"'
    )
    assert client.get(f"{API}/messages").headers["www-authenticate"] == (
        'Bearer realm="ipc-gateway-api"'
    )
    assert answer.headers["content-security-policy"] == CSP  # the console's headers wrap it
    assert answer.headers["cache-control"] == "no-store"
    # The POST too, before anything of its body is looked at.
    sent = client.post(f"{API}/messages", content=b"<x/>", headers={"content-type": "text/plain"})
    assert sent.status_code == 401
    assert accesslog.read(desk.services.ledger) == []


def test_a_revoked_key_is_401_at_once(desk: ApiDesk, client: TestClient) -> None:
    assert client.get(f"{API}/messages", headers=desk.headers("cms-a")).status_code == 200
    desk.access.api_keys.revoke("cms-a")
    status, body = get_json(client, f"{API}/messages", desk.headers("cms-a"))
    assert status == 401 and error_code(body) == "unauthorized"
    assert "revoked" in body["error"]["message"]


def test_a_console_session_does_not_open_the_api(desk: ApiDesk, client: TestClient) -> None:
    """No cookie is read: a browser signed in to the console cannot be made to call the API."""
    desk.access.accounts.add("ana", *_handler_of("sirene"), "correct horse battery")
    login = client.get("/login")
    token = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    signed = client.post(
        "/login", data={"csrf": token, "name": "ana", "password": "correct horse battery"}
    )
    assert signed.status_code == 303 and client.get("/").status_code == 200
    status, body = get_json(client, f"{API}/messages", {})
    assert status == 401 and error_code(body) == "unauthorized"


def _handler_of(desk: str) -> tuple[frozenset[Role], frozenset[str]]:
    return frozenset({Role.HANDLER}), frozenset({desk})


def test_wrong_keys_are_limited_per_address_and_the_first_refusal_audited(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", per_minute=3)
    with api_desk(config, "sirene", "interpol") as desk:
        wrong = {"authorization": "Bearer gwk_guess"}
        with TestClient(desk.app, client=("192.0.2.7", 5000)) as guesser:
            codes = [guesser.get(f"{API}/messages", headers=wrong).status_code for _ in range(5)]
            assert codes == [401, 401, 401, 429, 429]
            held = guesser.get(f"{API}/messages", headers=desk.headers("cms-a"))
            assert held.status_code == 429  # even a good key, while the address is held back
            assert 1 <= int(held.headers["retry-after"]) <= 20
            assert error_code(held.json()) == "too_many_requests"
            # Good keys never count: another address calls as often as it likes.
            with TestClient(desk.app, client=("192.0.2.8", 5000)) as other:
                for _ in range(10):
                    answer = other.get(f"{API}/messages", headers=desk.headers("cms-a"))
                    assert answer.status_code == 200
            assert audit_kinds(desk, "apikey.throttled") == ["apikey.throttled"]
            desk.clock.advance(timedelta(seconds=20))  # one attempt's worth refilled
            answer = guesser.get(f"{API}/messages", headers=desk.headers("cms-a"))
            assert answer.status_code == 200


# -- desk isolation -----------------------------------------------------------------------------


def test_a_key_of_another_desk_gets_404_exactly_as_for_no_message(
    desk: ApiDesk, client: TestClient
) -> None:
    mine = receive(desk.services, "NO-2026-000001")
    for suffix, headers in (("", {}), ("/status", {}), ("/form", PURPOSE)):
        theirs = client.get(
            f"{API}/messages/{mine}{suffix}", headers=desk.headers("cms-b", **headers)
        )
        none = client.get(
            f"{API}/messages/424242{suffix}", headers=desk.headers("cms-b", **headers)
        )
        huge = client.get(
            f"{API}/messages/{10**30}{suffix}", headers=desk.headers("cms-b", **headers)
        )
        assert theirs.status_code == none.status_code == huge.status_code == 404
        assert theirs.content == none.content == huge.content
        assert error_code(theirs.json()) == "not_found"
        assert (
            client.get(
                f"{API}/messages/{mine}{suffix}", headers=desk.headers("cms-a", **headers)
            ).status_code
            == 200
        )
    listed = client.get(f"{API}/messages", headers=desk.headers("cms-b")).json()
    assert listed == {"messages": [], "next_cursor": None}
    asked = client.get(f"{API}/messages?desk=sirene", headers=desk.headers("cms-b")).json()
    assert asked["messages"] == []
    deadlines = client.get(f"{API}/deadlines", headers=desk.headers("cms-b")).json()
    assert deadlines == {"deadlines": []}
    # Only the read by the key of the right desk is in the access log.
    assert [(entry.user, entry.reference) for entry in accesslog.read(desk.services.ledger)] == [
        ("key:cms-a", "NO-2026-000001")
    ]


def test_operator_keys_get_metadata_but_no_form_and_auditor_keys_nothing(
    desk: ApiDesk, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    status, listed = get_json(client, f"{API}/messages", desk.headers("ops"))
    assert status == 200 and [item["id"] for item in listed["messages"]] == [ledger_id]
    assert client.get(f"{API}/messages/{ledger_id}", headers=desk.headers("ops")).status_code == 200
    form = client.get(f"{API}/messages/{ledger_id}/form", headers=desk.headers("ops", **PURPOSE))
    assert form.status_code == 403 and error_code(form.json()) == "forbidden"
    assert b"EXAMPLE" not in form.content
    for url in ("/messages", f"/messages/{ledger_id}", f"/messages/{ledger_id}/form", "/deadlines"):
        answer = client.get(API + url, headers=desk.headers("audit", **PURPOSE))
        assert answer.status_code == 403 and error_code(answer.json()) == "forbidden"
        assert b"NO-2026-000001" not in answer.content
    assert accesslog.read(desk.services.ledger) == []


# -- the list, a message, its status ------------------------------------------------------------


def test_the_list_pages_by_cursor_newest_first_and_filters(
    desk: ApiDesk, client: TestClient
) -> None:
    ids = [receive(desk.services, f"NO-2026-{n:06d}") for n in range(1, 8)]
    other = receive(desk.services, "NO-2026-000100", desk="interpol")
    seen: list[int] = []
    url: str | None = f"{API}/messages?limit=3"
    while url is not None:
        status, page = get_json(client, url, desk.headers("cms-a"))
        assert status == 200 and len(page["messages"]) <= 3
        seen += [item["id"] for item in page["messages"]]
        cursor = page["next_cursor"]
        url = None if cursor is None else f"{API}/messages?limit=3&cursor={cursor}"
    assert seen == list(reversed(ids))
    first = client.get(f"{API}/messages?limit=1", headers=desk.headers("cms-a")).json()
    assert first["messages"][0] == {
        "id": ids[-1],
        "direction": "inbound",
        "created_at": "2026-12-01T08:00:00Z",
        "partner": "NO-SIRENE",
        "form": "G",
        "reference": "NO-2026-000007",
        "priority": "urgent",
        "state": "received",
        "desk": "sirene",
        "reply_deadline": {"due": "2026-12-01T20:00:00Z", "state": "open", "seconds_left": 43200},
    }
    every = client.get(f"{API}/messages", headers=desk.headers("cms-all")).json()
    assert [item["id"] for item in every["messages"]] == [other, *reversed(ids)]

    def ids_of(query: str, key: str = "cms-all") -> list[int]:
        status, page = get_json(client, f"{API}/messages?{query}", desk.headers(key))
        assert status == 200, page
        return [item["id"] for item in page["messages"]]

    assert ids_of("desk=interpol") == [other]
    assert ids_of("direction=outbound") == []
    assert ids_of("direction=inbound&form=G&partner=NO-SIRENE&state=received")[:2] == [
        other,
        ids[-1],
    ]
    assert ids_of("form=A") == ids_of("partner=RS-NCB") == ids_of("state=sent") == []
    for query, name in (
        ("direction=sideways", "direction"),
        ("form=<x>", "form"),
        ("state=lost", "state"),
        ("cursor=-1", "cursor"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("desk=Not%20a%20desk", "desk"),
        ("colour=red", "colour"),
        ("form=G&form=M", "form"),
    ):
        status, body = get_json(client, f"{API}/messages?{query}", desk.headers("cms-all"))
        assert status == 400 and error_code(body) == "bad_parameter", query
        assert body["error"]["message"].startswith(f"{name}: ")


def test_a_message_shows_its_timeline_and_deadlines_and_its_status(
    desk: ApiDesk, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    desk.clock.advance(timedelta(hours=13))
    status, body = get_json(client, f"{API}/messages/{ledger_id}", desk.headers("cms-a"))
    assert status == 200
    assert body["reference"] == "NO-2026-000001" and body["state"] == "received"
    assert body["message_id"] == "<NO-2026-000001@no.example>" and body["channel"] == "sirene"
    assert [event["kind"] for event in body["timeline"]] == ["received", "delivered"]
    assert body["timeline"][1]["detail"] == "desk sirene"
    assert body["deadlines"] == [
        {
            "kind": "reply",
            "owed_by": "desk",
            "due": "2026-12-01T20:00:00Z",
            "state": "open",
            "seconds_left": -3600,
        }
    ]
    assert (
        b"EXAMPLE"
        not in client.get(f"{API}/messages/{ledger_id}", headers=desk.headers("cms-a")).content
    )  # metadata only
    status, state = get_json(client, f"{API}/messages/{ledger_id}/status", desk.headers("cms-a"))
    assert status == 200
    assert state == {
        "id": ledger_id,
        "direction": "inbound",
        "reference": "NO-2026-000001",
        "state": "received",
        "updated_at": "2026-12-01T08:00:00Z",
        "deadlines": body["deadlines"],
    }
    assert accesslog.read(desk.services.ledger) == []  # nothing of content was consulted


# -- the form and the access log ----------------------------------------------------------------


def test_a_form_is_given_to_a_handler_key_with_a_purpose_and_logged(
    desk: ApiDesk, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    answer = client.get(
        f"{API}/messages/{ledger_id}/form", headers=desk.headers("cms-a", **PURPOSE)
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    assert answer.content == form_xml("NO-2026-000001")
    supervisor = client.get(
        f"{API}/messages/{ledger_id}/form",
        headers=desk.headers("cms-all", **{"x-purpose": "supervision"}),
    )
    assert supervisor.status_code == 200
    entries = accesslog.read(desk.services.ledger)
    assert [(e.kind, e.user, e.role, e.purpose, e.reference, e.details) for e in entries] == [
        (
            "access.download",
            "key:cms-a",
            "handler",
            "case-work",
            "NO-2026-000001",
            {"ledger": str(ledger_id), "part": "form"},
        ),
        (
            "access.download",
            "key:cms-all",
            "supervisor",
            "supervision",
            "NO-2026-000001",
            {"ledger": str(ledger_id), "part": "form"},
        ),
    ]


def test_a_form_without_a_known_purpose_is_refused_and_nothing_logged(
    desk: ApiDesk, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    for purpose in ({}, {"x-purpose": "curiosity"}, {"x-purpose": ""}):
        answer = client.get(
            f"{API}/messages/{ledger_id}/form", headers=desk.headers("cms-a", **purpose)
        )
        assert answer.status_code == 400 and error_code(answer.json()) == "purpose_required"
        assert "case-work" in answer.json()["error"]["message"]
    assert accesslog.read(desk.services.ledger) == []


def test_a_form_no_longer_kept_or_unreadable_is_said_so_and_not_logged(
    desk: ApiDesk, client: TestClient
) -> None:
    gone = receive(desk.services, "NO-2026-000001")
    desk.services.inbound.delete("in-NO-2026-000001", "queued")
    broken = receive(desk.services, "NO-2026-000002", form=b"<FormG>not the form</FormG>")
    answer = client.get(f"{API}/messages/{gone}/form", headers=desk.headers("cms-a", **PURPOSE))
    assert answer.status_code == 410 and error_code(answer.json()) == "form_not_kept"
    answer = client.get(f"{API}/messages/{broken}/form", headers=desk.headers("cms-a", **PURPOSE))
    assert answer.status_code == 409 and error_code(answer.json()) == "form_unreadable"
    assert b"not the form" not in answer.content
    assert accesslog.read(desk.services.ledger) == []


# -- deadlines, refusals ------------------------------------------------------------------------


def test_the_open_deadlines_of_the_keys_desks_by_time_left(
    desk: ApiDesk, client: TestClient
) -> None:
    later = receive(desk.services, "NO-2026-000001", reply_in=timedelta(hours=12))
    sooner = receive(desk.services, "NO-2026-000002", reply_in=timedelta(hours=3))
    receive(desk.services, "NO-2026-000003", reply_in=None)
    theirs = receive(desk.services, "NO-2026-000004", desk="interpol", reply_in=timedelta(hours=1))
    desk.clock.advance(timedelta(hours=4))
    status, body = get_json(client, f"{API}/deadlines", desk.headers("cms-a"))
    assert status == 200
    assert [(d["message_id"], d["seconds_left"]) for d in body["deadlines"]] == [
        (sooner, -3600),
        (later, 8 * 3600),
    ]
    assert body["deadlines"][0]["kind"] == "reply" and body["deadlines"][0]["owed_by"] == "desk"
    overdue = client.get(f"{API}/deadlines?overdue=true", headers=desk.headers("cms-a")).json()
    assert [d["message_id"] for d in overdue["deadlines"]] == [sooner]
    every = client.get(f"{API}/deadlines", headers=desk.headers("cms-all")).json()
    assert [d["message_id"] for d in every["deadlines"]] == [theirs, sooner, later]
    assert (
        client.get(f"{API}/deadlines?overdue=maybe", headers=desk.headers("cms-a")).status_code
        == 400
    )


def test_the_openapi_document_is_served_without_a_key(client: TestClient) -> None:
    answer = client.get(f"{API}/openapi.json")
    assert answer.status_code == 200 and answer.json() == document()


def test_unknown_routes_and_methods_are_json_refusals(desk: ApiDesk, client: TestClient) -> None:
    status, body = get_json(client, f"{API}/nothing-here", desk.headers("cms-a"))
    assert status == 404 and error_code(body) == "not_found"
    answer = client.delete(f"{API}/messages", headers=desk.headers("cms-a"))
    assert answer.status_code == 405 and error_code(answer.json()) == "method_not_allowed"
    # The console's pages stay pages.
    assert client.get("/nothing-here").headers["content-type"].startswith("text/html")


@pytest.mark.postgres
def test_the_api_reads_on_postgresql(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_schema())
        desk = stack.enter_context(api_desk(write_config(tmp_path, url), "sirene", "interpol"))
        client = stack.enter_context(TestClient(desk.app))
        mine = receive(desk.services, "NO-2026-000001")
        theirs = receive(desk.services, "NO-2026-000002", desk="interpol")
        listed = client.get(f"{API}/messages", headers=desk.headers("cms-a")).json()
        assert [item["id"] for item in listed["messages"]] == [mine]
        assert (
            client.get(f"{API}/messages/{theirs}", headers=desk.headers("cms-a")).status_code == 404
        )
        form = client.get(f"{API}/messages/{mine}/form", headers=desk.headers("cms-a", **PURPOSE))
        assert form.content == form_xml("NO-2026-000001")
        assert len(accesslog.read(desk.services.ledger)) == 1
        deadlines = client.get(f"{API}/deadlines", headers=desk.headers("cms-a")).json()
        assert [d["message_id"] for d in deadlines["deadlines"]] == [mine]
