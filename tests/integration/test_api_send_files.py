"""Sending a form with files through /api/v1 (multipart/form-data: part ``form``, parts
``attachment``) with real gpg, the built-in XSDs and a real ledger: the files sealed with the form
for the partner, checked against its Attachment list; the Idempotency-Key's stored digest covers
the files (the same key with other files is another body); files over the limits, a missing form
or an unknown part refused with nothing queued and no key stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.apikit import API, ApiDesk, api_desk, error_code
from integration.inboundkit import LISTEN_ANCHOR, World, gateway_config
from integration.submitkit import G_ARRESTED, NOW, open_as, outgoing
from integration.test_api_send import assert_nothing_queued
from starlette.testclient import TestClient
from webkit import listing, png

from gateway.crypto.pgpmime import Attachment
from gateway.service import attaching

MAX_MESSAGE = 64 * 1024  # files up to 32 KiB together
PHOTO = Attachment("face.png", "image/png", png(6, 6))
REPORT = Attachment("Raport ștefan.pdf", "application/pdf", b"%PDF-1.4\n% report\n")


def g_listing(*files: Attachment) -> bytes:
    """The sample G for NO-SIRENE with an Attachment list naming ``files``."""
    form = outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="NO-SIRENE")
    return form.replace(b"</FormG>", listing(files).encode() + b"</FormG>")


@pytest.fixture
def desk(world: World, tmp_path: Path) -> Iterator[ApiDesk]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = gateway_config(world, tmp_path, database_url=url)
    config.write_text(
        config.read_text().replace(LISTEN_ANCHOR, f"max_message_bytes = {MAX_MESSAGE}\n")
    )
    with api_desk(config, "sirene", "duty", start=NOW) as made:
        yield made


@pytest.fixture
def client(desk: ApiDesk) -> Iterator[TestClient]:
    with TestClient(desk.app, follow_redirects=False) as made:
        yield made


def send(
    client: TestClient,
    desk: ApiDesk,
    form: bytes | None,
    files: tuple[Attachment, ...],
    *,
    key: str = "k-1",
    more: list[tuple[str, Any]] | None = None,
) -> Any:
    parts: list[tuple[str, Any]] = [
        ("attachment", (item.filename, item.data, item.media_type)) for item in files
    ]
    if form is not None:
        parts.insert(0, ("form", ("form.xml", form, "application/xml")))
    headers = desk.headers("cms-a", **{"idempotency-key": key})
    return client.post(f"{API}/messages", files=parts + (more or []), headers=headers)


def test_a_form_and_its_files_are_queued_sealed_together(
    world: World, desk: ApiDesk, client: TestClient
) -> None:
    answer = send(client, desk, g_listing(PHOTO, REPORT), (PHOTO, REPORT))
    assert answer.status_code == 201, answer.text
    row = desk.services.ledger.get(answer.json()["id"])
    assert row.spool_key is not None
    opened = open_as(world.no.home, desk.services.outbound.get(row.spool_key).payload())
    assert opened.parts()[1:] == [
        ("face.png", "image/png", PHOTO.data),
        ("Raport ștefan.pdf", "application/pdf", REPORT.data),
    ]


def test_the_form_as_a_text_part_and_without_files_is_the_xml_body_again(
    desk: ApiDesk, client: TestClient
) -> None:
    form = g_listing()
    body = b'--b\r\nContent-Disposition: form-data; name="form"\r\n\r\n' + form + b"\r\n--b--\r\n"
    headers = desk.headers(
        "cms-a", **{"idempotency-key": "same", "content-type": "multipart/form-data; boundary=b"}
    )
    first = client.post(f"{API}/messages", content=body, headers=headers)
    assert first.status_code == 201, first.text
    # The same form as a plain XML body with the same key: the same request, answered again.
    headers = desk.headers(
        "cms-a", **{"idempotency-key": "same", "content-type": "application/xml"}
    )
    again = client.post(f"{API}/messages", content=form, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()


def test_the_key_covers_the_files_another_file_is_another_body(
    desk: ApiDesk, client: TestClient
) -> None:
    form = g_listing(PHOTO)
    first = send(client, desk, form, (PHOTO,), key="files-1")
    again = send(client, desk, form, (PHOTO,), key="files-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    other = Attachment("face.png", "image/png", png(7, 7))
    changed = send(client, desk, g_listing(other), (other,), key="files-1")
    assert changed.status_code == 422 and error_code(changed.json()) == "idempotency_key_reused"
    renamed = Attachment("face-2.png", "image/png", PHOTO.data)
    changed = send(client, desk, form, (renamed,), key="files-1")
    assert changed.status_code == 422 and error_code(changed.json()) == "idempotency_key_reused"


def test_files_that_do_not_match_the_list_are_refused_and_nothing_kept(
    desk: ApiDesk, client: TestClient
) -> None:
    answer = send(client, desk, g_listing(PHOTO), (REPORT,))
    assert answer.status_code == 422 and error_code(answer.json()) == "refused"
    assert "Attachment list" in answer.json()["error"]["message"]
    answer = send(client, desk, g_listing(PHOTO), ())
    assert answer.status_code == 422
    assert_nothing_queued(desk)


@pytest.mark.parametrize(
    ("files", "status", "said"),
    [
        (
            (Attachment("big.bin", "application/octet-stream", b"x" * (MAX_MESSAGE // 2 + 1)),),
            413,
            f"file 'big.bin' is {MAX_MESSAGE // 2 + 1} bytes: at most {MAX_MESSAGE // 2} a file",
        ),
        (
            tuple(
                Attachment(f"{n}.bin", "application/octet-stream", b"y" * (MAX_MESSAGE // 8))
                for n in range(5)
            ),
            413,
            f"the files are {5 * (MAX_MESSAGE // 8)} bytes together: at most {MAX_MESSAGE // 2}",
        ),
        (
            (Attachment("a:b.txt", "text/plain", b"x"),),
            422,
            "file 'a:b.txt': a file name of 1 to 200 characters",
        ),
    ],
)
def test_files_over_the_limits_are_refused_with_each_reason(
    desk: ApiDesk,
    client: TestClient,
    files: tuple[Attachment, ...],
    status: int,
    said: str,
) -> None:
    answer = send(client, desk, g_listing(*files), files)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == "attachments_refused" and said in error["message"]
    assert any(said in detail["reason"] for detail in error["details"])
    assert {detail["part"] for detail in error["details"]} == {"attachment"}
    assert_nothing_queued(desk)


def test_a_body_over_the_upload_cap_is_refused_before_it_is_read(
    desk: ApiDesk, client: TestClient
) -> None:
    cap = attaching.upload_limits(desk.services.config).body
    huge = Attachment("huge.bin", "application/octet-stream", b"z" * cap)
    answer = send(client, desk, g_listing(huge), (huge,))
    assert answer.status_code == 413 and error_code(answer.json()) == "body_too_large"
    assert str(cap) in answer.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'--b\r\nContent-Disposition: form-data; name="attachment"; filename="x"\r\n\r\n'
        for _ in range(cap // 1024 + 2):
            yield b"x" * 1024

    headers = desk.headers(
        "cms-a",
        **{"idempotency-key": "k-2", "content-type": "multipart/form-data; boundary=b"},
    )
    streamed = client.post(f"{API}/messages", content=chunks(), headers=headers)
    assert streamed.status_code == 413 and error_code(streamed.json()) == "body_too_large"
    assert_nothing_queued(desk)


def test_a_missing_form_or_an_unknown_part_is_refused(desk: ApiDesk, client: TestClient) -> None:
    answer = send(client, desk, None, (PHOTO,))
    assert answer.status_code == 400 and error_code(answer.json()) == "bad_part"
    assert "form" in answer.json()["error"]["message"]
    answer = send(
        client, desk, g_listing(PHOTO), (PHOTO,), more=[("photo", ("p.png", b"x", "image/png"))]
    )
    assert answer.status_code == 400 and "photo: unknown part" in answer.text
    assert_nothing_queued(desk)
