"""Composing with files in the console against the real app, a real ledger, real GnuPG and the
built-in XSDs: the file input of a form that lists attachments, the form's Attachment list filled
from the files (name, media type, SHA-256) and the files sealed with it for the partner, drafts
and pages shown again keeping no files and saying so, files over the limits refused with a clear
error and nothing queued or saved."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.inboundkit import LISTEN_ANCHOR, World
from integration.submitkit import open_as
from integration.test_web_compose import (
    REPLY_TEXT,
    compose_config,
    outbound,
    reply_page,
    spooled,
)
from starlette.testclient import TestClient
from webkit import Console, console, form_values, png

from gateway.service import attaching

PHOTO = ("face.png", png(5, 4), "image/png")
NOTE = ("Notă de caz.txt", b"checked at the border\n", "text/plain")
MAX_MESSAGE = 64 * 1024  # smtp.listen.max_message_bytes here: files up to 32 KiB together


@pytest.fixture
def small(world: World, tmp_path: Path) -> Path:
    """The compose tests' configuration with a small message size, so that the limits are cheap
    to pass."""
    listen = f"max_message_bytes = {MAX_MESSAGE}\n"
    return compose_config(world, tmp_path, lambda text: text.replace(LISTEN_ANCHOR, listen))


@pytest.fixture
def desk(small: Path) -> Iterator[Console]:
    with console(small) as made:
        yield made


@pytest.fixture
def client(desk: Console) -> Iterator[TestClient]:
    with TestClient(desk.app, follow_redirects=False) as made:
        yield made


def files(*items: tuple[str, bytes, str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("attachment", item) for item in items]


def test_the_files_are_listed_in_the_form_and_sealed_with_it(
    world: World, desk: Console, client: TestClient
) -> None:
    _, page = reply_page(client, desk)
    assert 'enctype="multipart/form-data"' in page
    assert '<input type="file" id="attachment" name="attachment" multiple' in page
    assert '<label for="attachment">Files to send with the form (at most 20)</label>' in page
    values = form_values(page, "compose") | {"Information": REPLY_TEXT, "action": "send"}
    assert not any(key.startswith("Attachment") for key in values)  # no digest to type

    sent = client.post("/compose/M", data=values, files=files(PHOTO, NOTE))

    assert sent.status_code == 303, sent.text
    [row] = outbound(desk)
    assert row.spool_key is not None
    opened = open_as(world.no.home, desk.services.outbound.get(row.spool_key).payload())
    parts = opened.parts()
    assert parts[1:] == [
        ("face.png", "image/png", PHOTO[1]),
        ("Notă de caz.txt", "text/plain", NOTE[1]),
    ]
    form = parts[0][2].decode()
    for name, data, kind in (PHOTO, NOTE):
        digest = hashlib.sha256(data).hexdigest()
        listed = (
            f"<Attachment><FileName>{name}</FileName><MediaType>{kind}</MediaType>"
            f"<SHA256>{digest}</SHA256></Attachment>"
        )
        assert listed in re.sub(r">\s+<", "><", form)


def test_a_forged_attachment_list_is_replaced_by_the_files_given(
    world: World, desk: Console, client: TestClient
) -> None:
    _, page = reply_page(client, desk)
    values = form_values(page, "compose") | {
        "Information": REPLY_TEXT,
        "action": "send",
        "Attachment#": "1",
        "Attachment[1]/FileName": "other.pdf",
        "Attachment[1]/MediaType": "application/pdf",
        "Attachment[1]/SHA256": "0" * 64,
    }
    sent = client.post("/compose/M", data=values)
    assert sent.status_code == 303
    [row] = outbound(desk)
    assert row.spool_key is not None
    opened = open_as(world.no.home, desk.services.outbound.get(row.spool_key).payload())
    assert len(opened.parts()) == 1 and b"other.pdf" not in opened.parts()[0][2]


def test_a_draft_keeps_no_files_and_says_so(desk: Console, client: TestClient) -> None:
    _, page = reply_page(client, desk)
    values = form_values(page, "compose") | {"Information": REPLY_TEXT, "action": "save"}
    saved = client.post("/compose/M", data=values, files=files(PHOTO))
    assert saved.status_code == 200 and "Draft saved." in saved.text
    assert (
        "The 1 file(s) you chose were not kept (a draft, a page shown again, keeps no files): "
        "choose them again before you send." in saved.text
    )
    draft_id = form_values(saved.text, "compose")["draft"]
    reopened = client.get(f"/compose/M?draft={draft_id}").text
    assert "face.png" not in reopened and "A draft keeps no files" in reopened
    assert outbound(desk) == [] and spooled(desk) == []


def test_a_form_shown_again_with_errors_says_its_files_must_be_chosen_again(
    desk: Console, client: TestClient
) -> None:
    _, page = reply_page(client, desk)
    values = form_values(page, "compose") | {"Information": "", "action": "send"}
    again = client.post("/compose/M", data=values, files=files(PHOTO))
    assert again.status_code == 422
    assert 'id="files-note"' in again.text and "choose them again" in again.text
    assert outbound(desk) == [] and spooled(desk) == []


@pytest.mark.parametrize(
    ("given", "status", "said"),
    [
        (
            [("big.bin", b"x" * (MAX_MESSAGE // 2 + 1), "application/octet-stream")],
            413,
            f"file 'big.bin' is {MAX_MESSAGE // 2 + 1} bytes: at most {MAX_MESSAGE // 2} a file",
        ),
        (
            [
                ("a.bin", b"a" * (MAX_MESSAGE // 4 + 1), "application/octet-stream"),
                ("b.bin", b"b" * (MAX_MESSAGE // 4 + 1), "application/octet-stream"),
            ],
            413,
            f"the files are {MAX_MESSAGE // 2 + 2} bytes together: at most {MAX_MESSAGE // 2}",
        ),
        (
            [(".hidden", b"x", "text/plain")],
            422,
            "file '.hidden': a file name of 1 to 200 characters",
        ),
    ],
)
def test_files_over_the_limits_are_refused_clearly_and_nothing_is_kept(
    desk: Console,
    client: TestClient,
    given: list[tuple[str, bytes, str]],
    status: int,
    said: str,
) -> None:
    _, page = reply_page(client, desk)
    for action in ("send", "save"):
        values = form_values(page, "compose") | {"Information": REPLY_TEXT, "action": action}
        answer = client.post("/compose/M", data=values, files=files(*given))
        assert answer.status_code == status
        assert said in html.unescape(answer.text) and "Nothing was sent or saved." in answer.text
    assert outbound(desk) == [] and spooled(desk) == []
    assert 'href="/compose/M?draft=' not in client.get("/compose").text


def test_a_body_over_the_upload_cap_is_refused_413_before_it_is_read(
    desk: Console, client: TestClient
) -> None:
    _, page = reply_page(client, desk)
    cap = attaching.upload_limits(desk.services.config).body
    values = form_values(page, "compose") | {"Information": REPLY_TEXT, "action": "send"}
    answer = client.post(
        "/compose/M", data=values, files=files(("huge.bin", b"x" * cap, "application/octet-stream"))
    )
    assert answer.status_code == 413
    assert f"at most {cap} bytes (the files attached and the form together)" in answer.text
    assert outbound(desk) == [] and spooled(desk) == []
    # Without files, a body stays under the console's own small cap.
    plain = client.post("/compose/M", data=values | {"Information": "x" * (70 * 1024)})
    assert plain.status_code == 413
