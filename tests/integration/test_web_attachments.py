"""A received message's attachments in the console, against the real app on a real ledger: the
list on the message view, a photo shown inline and any other file downloaded (a file disguised as
a photo, or an SVG, only ever a download), each recorded in the access log before it is sent,
desk isolation (404), operators and auditors refused (403) with nothing recorded, hostile file
names escaped and never in a URL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from webkit import Console, console, login, png, receive, sent, write_config

from gateway.access import accesslog
from gateway.crypto.pgpmime import Attachment
from gateway.web.headers import CSP

PHOTO = Attachment("face.png", "image/png", png(4, 3))
PDF = Attachment("warrant.pdf", "application/pdf", b"%PDF-1.4\n% a warrant\n")
DISGUISED = Attachment("photo.png", "image/png", b"<html><script>alert(1)</script></html>")
SVG = Attachment("drawing.svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"/>')
HOSTILE = '<img src=x onerror=alert(1)> "Ștefan".jpg'


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Console]:
    with console(write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")) as made:
        yield made


@pytest.fixture
def client(desk: Console) -> Iterator[TestClient]:
    with TestClient(desk.app, follow_redirects=False) as made:
        yield made


def parts(desk: Console) -> list[tuple[str, str, str, str, str]]:
    """The access log as (kind, user, role, purpose, part)."""
    return [
        (e.kind, e.user, e.role, e.purpose, e.details.get("part", ""))
        for e in accesslog.read(desk.services.ledger)
    ]


def test_the_message_view_lists_every_attachment_and_shows_the_photo_inline(
    desk: Console, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001", attachments=(PHOTO, PDF))
    login(client, "ana")
    page = client.get(f"/messages/{ledger_id}").text
    listed = page[page.index('id="attachments"') :]
    assert f'<img src="/messages/{ledger_id}/attachments/1" alt="Photo 1: face.png">' in listed
    assert f'<a href="/messages/{ledger_id}/attachments/2" download>warrant.pdf</a>' in listed
    assert f"image/png, {len(PHOTO.data):,} bytes" in listed
    assert f"application/pdf, {len(PDF.data):,} bytes, download" in listed
    assert PHOTO.sha256 in listed and PDF.sha256 in listed
    assert parts(desk) == [("access.view", "ana", "handler", "case-work", "form")]

    photo = client.get(f"/messages/{ledger_id}/attachments/1")
    assert photo.status_code == 200 and photo.content == PHOTO.data
    assert photo.headers["content-type"] == "image/png"
    assert photo.headers["content-disposition"] == 'inline; filename="face.png"'
    assert photo.headers["x-content-type-options"] == "nosniff"
    assert photo.headers["cache-control"] == "no-store"
    assert photo.headers["content-security-policy"] == CSP  # not loosened for the file

    pdf = client.get(f"/messages/{ledger_id}/attachments/2")
    assert pdf.status_code == 200 and pdf.content == PDF.data
    assert pdf.headers["content-type"] == "application/octet-stream"
    assert pdf.headers["content-disposition"] == 'attachment; filename="warrant.pdf"'
    assert parts(desk)[1:] == [
        ("access.view", "ana", "handler", "case-work", "attachment-1"),
        ("access.download", "ana", "handler", "case-work", "attachment-2"),
    ]
    entry = accesslog.read(desk.services.ledger)[-1]
    assert (entry.reference, entry.details["ledger"]) == ("NO-2026-000001", str(ledger_id))


def test_html_or_svg_sent_as_an_image_is_never_inline_only_a_download(
    desk: Console, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001", attachments=(DISGUISED, SVG))
    login(client, "ana")
    page = client.get(f"/messages/{ledger_id}").text
    assert "<img" not in page
    assert f'<a href="/messages/{ledger_id}/attachments/1" download>photo.png</a>' in page
    for number, item in ((1, DISGUISED), (2, SVG)):
        answer = client.get(f"/messages/{ledger_id}/attachments/{number}")
        assert answer.status_code == 200 and answer.content == item.data
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-disposition"].startswith("attachment;")
    assert [p[0] for p in parts(desk)] == ["access.view", "access.download", "access.download"]


def test_a_hostile_file_name_is_escaped_on_the_page_and_never_in_a_url(
    desk: Console, client: TestClient
) -> None:
    hostile = Attachment(HOSTILE, "image/png", png())
    ledger_id = receive(desk.services, "NO-2026-000001", attachments=(hostile,))
    login(client, "ana")
    page = client.get(f"/messages/{ledger_id}").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    hrefs = re.findall(r'(?:href|src)="([^"]*attachments[^"]*)"', page)
    assert hrefs and set(hrefs) == {f"/messages/{ledger_id}/attachments/1"}
    answer = client.get(hrefs[0])
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith('inline; filename="_img src_x onerror_alert(1)_ __tefan_.jpg"')
    assert "filename*=UTF-8''%3Cimg%20src%3Dx" in disposition


def test_a_handler_of_another_desk_gets_404_and_nothing_is_recorded(
    desk: Console, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001", attachments=(PHOTO,))
    login(client, "ben")
    theirs = client.get(f"/messages/{ledger_id}/attachments/1")
    none = client.get("/messages/424242/attachments/1")
    assert theirs.status_code == none.status_code == 404
    assert theirs.text == none.text and PHOTO.data not in theirs.content
    assert accesslog.read(desk.services.ledger) == []


def test_operators_and_auditors_never_get_the_bytes(desk: Console, client: TestClient) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001", attachments=(PHOTO, PDF))
    login(client, "olaf")
    page = client.get(f"/messages/{ledger_id}").text
    assert "face.png" not in page and "attachments/" not in page
    for number in (1, 2):
        answer = client.get(f"/messages/{ledger_id}/attachments/{number}")
        assert answer.status_code == 403
        assert PHOTO.data not in answer.content and PDF.data not in answer.content
    with TestClient(desk.app, follow_redirects=False) as auditor:
        login(auditor, "aud")
        answer = auditor.get(f"/messages/{ledger_id}/attachments/1")
        assert answer.status_code == 403 and PHOTO.data not in answer.content
    assert accesslog.read(desk.services.ledger) == []


def test_supervisors_and_duty_officers_read_with_their_purpose(
    desk: Console, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001", attachments=(PDF,))
    for name in ("sue", "dora"):
        with TestClient(desk.app, follow_redirects=False) as other:
            login(other, name)
            assert other.get(f"/messages/{ledger_id}/attachments/1").content == PDF.data
    assert parts(desk) == [
        ("access.download", "sue", "supervisor", "supervision", "attachment-1"),
        ("access.download", "dora", "duty_officer", "escalation", "attachment-1"),
    ]


def test_no_such_attachment_a_copy_gone_or_a_form_of_ours_is_refused_unrecorded(
    desk: Console, client: TestClient
) -> None:
    kept = receive(desk.services, "NO-2026-000001", attachments=(PDF,))
    gone = receive(desk.services, "NO-2026-000002", attachments=(PDF,))
    desk.services.inbound.delete("in-NO-2026-000002", "queued")
    ours = sent(desk.services, "RO-2026-000003")
    login(client, "ana")
    for url, status in (
        (f"/messages/{kept}/attachments/2", 404),
        (f"/messages/{kept}/attachments/0", 404),
        (f"/messages/{kept}/attachments/{10**30}", 404),
        (f"/messages/{gone}/attachments/1", 410),
        (f"/messages/{ours}/attachments/1", 404),
    ):
        answer = client.get(url)
        assert answer.status_code == status, url
        assert PDF.data not in answer.content
    assert client.head(f"/messages/{kept}/attachments/1").status_code == 405
    assert accesslog.read(desk.services.ledger) == []
    assert client.get("/messages/1/attachments/1", follow_redirects=False).status_code == 200
    with TestClient(desk.app, follow_redirects=False) as nobody:
        answer = nobody.get(f"/messages/{kept}/attachments/1")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
