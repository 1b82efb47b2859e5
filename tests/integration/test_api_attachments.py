"""/api/v1 attachments against the real app on a real ledger: the list in a message's JSON for
keys whose role reads content (recorded when not empty), a file by its number always as a
download with the purpose given in X-Purpose recorded first, desk isolation (404 as for no
message), operator and auditor keys refused with nothing recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.apikit import API, ApiDesk, api_desk, error_code, get_json
from starlette.testclient import TestClient
from webkit import png, receive, write_config

from gateway.access import accesslog
from gateway.crypto.pgpmime import Attachment

PURPOSE = {"x-purpose": "case-work"}
PHOTO = Attachment("face.png", "image/png", png())
DISGUISED = Attachment("face2.png", "image/png", b"<svg onload=alert(1)></svg>")
PDF = Attachment("Mandat ștefan.pdf", "application/pdf", b"%PDF-1.4\n")


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


def logged(desk: ApiDesk) -> list[tuple[str, str, str, str]]:
    return [
        (e.kind, e.user, e.purpose, e.details.get("part", ""))
        for e in accesslog.read(desk.services.ledger)
    ]


def test_a_message_lists_its_attachments_for_a_key_that_reads_content(
    desk: ApiDesk, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001", attachments=(PHOTO, PDF))
    plain = receive(desk.services, "NO-2026-000002")
    status, body = get_json(client, f"{API}/messages/{ledger_id}", desk.headers("cms-a"))
    assert status == 200
    assert body["attachments"] == [
        {
            "number": 1,
            "filename": "face.png",
            "media_type": "image/png",
            "size": len(PHOTO.data),
            "sha256": PHOTO.sha256,
        },
        {
            "number": 2,
            "filename": "Mandat ștefan.pdf",
            "media_type": "application/pdf",
            "size": len(PDF.data),
            "sha256": PDF.sha256,
        },
    ]
    status, body = get_json(
        client,
        f"{API}/messages/{ledger_id}",
        desk.headers("cms-all", **{"x-purpose": "data-subject-request"}),
    )
    assert status == 200 and len(body["attachments"]) == 2
    status, none = get_json(client, f"{API}/messages/{plain}", desk.headers("cms-a"))
    assert status == 200 and none["attachments"] == []
    status, ops = get_json(client, f"{API}/messages/{ledger_id}", desk.headers("ops"))
    assert status == 200 and ops["attachments"] is None
    assert "face.png" not in str(ops)
    assert logged(desk) == [  # a listing with names is a view; an empty one, an operator's: not
        ("access.view", "key:cms-a", "case-work", "attachments"),
        ("access.view", "key:cms-all", "data-subject-request", "attachments"),
    ]


def test_a_file_is_always_a_download_recorded_with_its_purpose(
    desk: ApiDesk, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001", attachments=(PHOTO, DISGUISED, PDF))
    url = f"{API}/messages/{ledger_id}/attachments"
    photo = client.get(f"{url}/1", headers=desk.headers("cms-a", **PURPOSE))
    assert photo.status_code == 200 and photo.content == PHOTO.data
    assert photo.headers["content-type"] == "image/png"
    assert photo.headers["content-disposition"] == 'attachment; filename="face.png"'
    assert photo.headers["x-content-type-options"] == "nosniff"
    assert photo.headers["cache-control"] == "no-store"
    disguised = client.get(f"{url}/2", headers=desk.headers("cms-a", **PURPOSE))
    assert disguised.content == DISGUISED.data
    assert disguised.headers["content-type"] == "application/octet-stream"
    pdf = client.get(f"{url}/3", headers=desk.headers("cms-all", **{"x-purpose": "supervision"}))
    assert pdf.content == PDF.data
    assert pdf.headers["content-type"] == "application/octet-stream"
    assert pdf.headers["content-disposition"] == (
        "attachment; filename=\"Mandat _tefan.pdf\"; filename*=UTF-8''Mandat%20%C8%99tefan.pdf"
    )
    assert logged(desk) == [
        ("access.download", "key:cms-a", "case-work", "attachment-1"),
        ("access.download", "key:cms-a", "case-work", "attachment-2"),
        ("access.download", "key:cms-all", "supervision", "attachment-3"),
    ]


def test_without_a_purpose_another_desk_or_no_such_file_nothing_is_given_or_recorded(
    desk: ApiDesk, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001", attachments=(PDF,))
    gone = receive(desk.services, "NO-2026-000002", attachments=(PDF,))
    desk.services.inbound.delete("in-NO-2026-000002", "queued")
    url = f"{API}/messages/{ledger_id}/attachments/1"
    for purpose in ({}, {"x-purpose": "curiosity"}):
        answer = client.get(url, headers=desk.headers("cms-a", **purpose))
        assert answer.status_code == 400 and error_code(answer.json()) == "purpose_required"
    theirs = client.get(url, headers=desk.headers("cms-b", **PURPOSE))
    none = client.get(
        f"{API}/messages/424242/attachments/1", headers=desk.headers("cms-b", **PURPOSE)
    )
    assert theirs.status_code == none.status_code == 404
    assert theirs.content == none.content and error_code(theirs.json()) == "not_found"
    for number in (0, 2):
        answer = client.get(
            f"{API}/messages/{ledger_id}/attachments/{number}",
            headers=desk.headers("cms-a", **PURPOSE),
        )
        assert answer.status_code == 404 and error_code(answer.json()) == "not_found"
    answer = client.get(
        f"{API}/messages/{gone}/attachments/1", headers=desk.headers("cms-a", **PURPOSE)
    )
    assert answer.status_code == 410 and error_code(answer.json()) == "form_not_kept"
    status, body = get_json(client, f"{API}/messages/{gone}", desk.headers("cms-a"))
    assert status == 200 and body["attachments"] is None
    for key in ("ops", "audit"):
        answer = client.get(url, headers=desk.headers(key, **PURPOSE))
        assert answer.status_code == 403 and error_code(answer.json()) == "forbidden"
        assert PDF.data not in answer.content
    answer = client.get(url, headers=PURPOSE)
    assert answer.status_code == 401
    answer = client.head(url, headers=desk.headers("cms-a", **PURPOSE))
    assert answer.status_code == 405 and answer.headers["allow"] == "GET"
    assert accesslog.read(desk.services.ledger) == []
