"""Composing in the console against the real app, a real ledger (SQLite file), our real GnuPG
home and the partners' keys (the inbound test world), the built-in XSDs: a reply prefilled from
the message it answers, CSRF, desk isolation, errors beside their fields with nothing queued, a
valid form queued exactly once, drafts kept (their views in the access log) and deleted once
sent, repeated parts added without script, a payload in every field rendered inert."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dbkit import upgraded
from integration.inboundkit import World, gateway_config
from integration.test_web_console import audit_kinds
from starlette.testclient import TestClient
from webkit import XSS, Console, console, csrf_of, form_values, login, receive

from gateway.store.ledger import MessageRow
from gateway.store.spool import FOLDERS
from gateway.store.states import OutboundState

REPLY_TEXT = "The European Arrest Warrant is confirmed."


@pytest.fixture
def config(world: World, tmp_path: Path) -> Path:
    return compose_config(world, tmp_path)


def compose_config(world: World, tmp_path: Path, edit: Callable[[str], str] = str) -> Path:
    """The inbound world's configuration (our key, NO-SIRENE's and RS-NCB's pinned), ``edit``
    applied to it, with the console's settings and a desk of its own for a second handler."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    path = gateway_config(world, tmp_path, database_url=url)
    path.write_text(
        edit(path.read_text())
        + f"""
[[desks]]
name = "interpol"
maildir = "{tmp_path}/desks/interpol"

[access]
password_time_cost = 2
password_memory_kib = 19456
totp_required = []

[web]
host = "127.0.0.1"
port = 0
time_zone = "Europe/Bucharest"
"""
    )
    upgraded(url)
    return path


@pytest.fixture
def desk(config: Path) -> Iterator[Console]:
    with console(config) as made:
        yield made


@pytest.fixture
def client(desk: Console) -> Iterator[TestClient]:
    with TestClient(desk.app, follow_redirects=False) as made:
        yield made


def outbound(desk: Console) -> list[MessageRow]:
    ledger = desk.services.ledger
    return [row for state in OutboundState for row in ledger.in_state("outbound", state)]


def spooled(desk: Console) -> list[str]:
    root = desk.services.outbound.root
    return sorted(
        path.name for name in FOLDERS if (root / name).is_dir() for path in (root / name).iterdir()
    )


def reply_page(client: TestClient, desk: Console) -> tuple[int, str]:
    """A received G on the sirene desk, and ana's reply page to it."""
    ledger_id = receive(desk.services, "NO-2026-000001")
    assert login(client, "ana")[0] == 303
    message = client.get(f"/messages/{ledger_id}").text
    assert f'href="/compose/M?reply={ledger_id}"' in message
    page = client.get(f"/compose/M?reply={ledger_id}")
    assert page.status_code == 200
    return ledger_id, page.text


def test_a_reply_is_prefilled_with_partner_in_reply_to_and_the_alert(
    desk: Console, client: TestClient
) -> None:
    ledger_id, page = reply_page(client, desk)

    values = form_values(page, "compose")
    assert (values["partner"], values["desk"], values["reply"]) == ("NO-SIRENE", "sirene", "1")
    assert values["Header/AlertRef"] == "RO0000000000123456"
    assert values["Header/AlertRef/@article"] == "26"
    assert values["Header/Language"] == "en"
    assert "Header/InReplyTo" not in values  # the gateway's, shown as a fact
    assert 'id="compose-reply"' in page and "G NO-2026-000001" in page
    # Labels on every input, required marked, enumerations as select, dates as date inputs.
    assert '<label for="f-Information">Information <span class="required"' in page
    assert '<select id="f-Header/Language"' in page
    # The message view, then the answered form read for the reply: each in the access log.
    views = [e for e in desk.services.audit.entries() if e.kind == "access.view"]
    assert ["purpose=reply" in entry.reason for entry in views] == [False, True]
    assert f"ledger={ledger_id}" in views[1].reason and "user=ana" in views[1].reason


def test_a_post_without_the_csrf_token_is_refused_and_queues_nothing(
    desk: Console, client: TestClient
) -> None:
    _, page = reply_page(client, desk)
    values = form_values(page, "compose") | {"Information": REPLY_TEXT, "action": "send"}
    del values["csrf"]

    refused = client.post("/compose/M", data=values)
    wrong = client.post("/compose/M", data=values | {"csrf": "0" * 64})

    assert (refused.status_code, wrong.status_code) == (403, 403)
    assert outbound(desk) == [] and spooled(desk) == []


def test_a_handler_without_the_desk_gets_404_and_an_operator_403(
    desk: Console, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")  # on the sirene desk
    login(client, "ben")  # a handler of the interpol desk
    token = csrf_of(client.get("/").text)

    assert client.get(f"/compose/M?reply={ledger_id}").status_code == 404
    assert client.get("/compose/G?partner=NO-SIRENE&desk=sirene").status_code == 404
    posted = client.post(
        "/compose/M",
        data={"csrf": token, "reply": str(ledger_id), "action": "send", "once": "a" * 24},
    )
    assert posted.status_code == 404
    message = client.get(f"/messages/{ledger_id}")
    assert message.status_code == 404
    assert outbound(desk) == []

    client.post("/logout", data={"csrf": token})
    login(client, "olaf")  # an operator: no SEND anywhere
    assert client.get("/compose").status_code == 403
    assert client.get("/compose/G?partner=NO-SIRENE&desk=sirene").status_code == 403


def test_a_partner_of_another_channel_is_refused_with_a_reason(
    desk: Console, client: TestClient
) -> None:
    login(client, "ana")
    page = client.get("/compose/G?partner=RS-NCB&desk=sirene")
    assert page.status_code == 400
    assert "RS-NCB is a interpol partner" in html.unescape(page.text)


def test_an_invalid_field_is_shown_beside_it_values_kept_and_nothing_queued(
    desk: Console, client: TestClient
) -> None:
    _, page = reply_page(client, desk)
    values = form_values(page, "compose") | {
        "Information": "   ",
        "Header/Sender/Officer": "Duty officer 2",
        "Header/AlertRef": "not an alert",
        "action": "send",
    }

    answer = client.post("/compose/M", data=values)

    assert answer.status_code == 422
    text = answer.text
    assert re.search(r'id="e-Information">Required: fill this in\.<', text)
    alert = re.search(r'id="e-Header/AlertRef">([^<]*)<', text)
    assert alert is not None and "is not a" in html.unescape(alert.group(1))
    assert 'aria-invalid="true" aria-describedby="e-Information"' in text
    kept = form_values(text, "compose")
    assert kept["Header/Sender/Officer"] == "Duty officer 2"  # values kept
    assert kept["Header/AlertRef"] == "not an alert"
    assert kept["once"] == values["once"]
    assert outbound(desk) == [] and spooled(desk) == []


def test_a_valid_reply_is_queued_exactly_once_and_the_page_is_the_sent_message(
    desk: Console, client: TestClient
) -> None:
    original, page = reply_page(client, desk)
    values = form_values(page, "compose") | {"Information": REPLY_TEXT, "action": "send"}

    sent = client.post("/compose/M", data=values)
    again = client.post("/compose/M", data=values)  # a double click, a resubmission

    assert sent.status_code == again.status_code == 303
    assert sent.headers["location"] == again.headers["location"]
    rows = outbound(desk)
    assert len(rows) == 1 and len(spooled(desk)) == 1
    row = rows[0]
    assert (row.partner, row.form, row.in_reply_to, row.desk, row.state) == (
        "NO-SIRENE",
        "M",
        "NO-2026-000001",
        "sirene",
        "queued",
    )
    assert sent.headers["location"] == f"/messages/{row.id}"
    shown = client.get(sent.headers["location"])
    assert shown.status_code == 200
    assert f"M {row.reference}" in shown.text and "to NO-SIRENE" in shown.text
    assert "queued" in shown.text
    assert original != row.id


def test_a_draft_is_kept_its_view_recorded_and_it_is_deleted_once_sent(
    desk: Console, client: TestClient
) -> None:
    _, page = reply_page(client, desk)
    values = form_values(page, "compose") | {"Information": REPLY_TEXT, "action": "save"}

    saved = client.post("/compose/M", data=values)

    assert saved.status_code == 200 and "Draft saved." in saved.text
    draft_id = form_values(saved.text, "compose")["draft"]
    listing = client.get("/compose").text
    assert f'href="/compose/M?draft={draft_id}"' in listing
    views = len(audit_kinds(desk, "access.view"))
    reopened = client.get(f"/compose/M?draft={draft_id}")
    assert reopened.status_code == 200
    assert REPLY_TEXT in reopened.text
    assert len(audit_kinds(desk, "access.view")) == views + 1
    last = [e for e in desk.services.audit.entries() if e.kind == "access.view"][-1]
    assert f"part=draft-{draft_id}" in last.reason

    client.post("/logout", data={"csrf": csrf_of(reopened.text)})
    login(client, "sue")  # a supervisor: another user's draft is not there
    assert client.get(f"/compose/M?draft={draft_id}").status_code == 404
    client.post("/logout", data={"csrf": csrf_of(client.get("/").text)})
    login(client, "ana")

    again = client.get(f"/compose/M?draft={draft_id}").text
    sent = client.post("/compose/M", data=form_values(again, "compose") | {"action": "send"})
    assert sent.status_code == 303
    assert f"draft={draft_id}" not in client.get("/compose").text
    assert client.get(f"/compose/M?draft={draft_id}").status_code == 404


def test_repeated_parts_are_added_and_removed_by_the_server(
    desk: Console, client: TestClient
) -> None:
    _, page = reply_page(client, desk)
    values = form_values(page, "compose")
    assert 'value="add:Subject#"' in page and "Subject#" in values

    more = client.post("/compose/M", data=values | {"action": "add:Subject#"})
    twice = client.post(
        "/compose/M", data=form_values(more.text, "compose") | {"action": "add:Subject#"}
    )
    fields = form_values(twice.text, "compose")
    assert fields["Subject#"] == "2"
    assert 'name="Subject[2]/~1"' in twice.text  # the second subject's choice of kind
    removed = client.post(
        "/compose/M", data=fields | {"action": "remove:Subject[1]", "Information": "x"}
    )
    assert form_values(removed.text, "compose")["Subject#"] == "1"
    assert form_values(removed.text, "compose")["Information"] == "x"
    assert outbound(desk) == []


def test_a_new_form_chosen_on_the_compose_page(desk: Console, client: TestClient) -> None:
    login(client, "ana")
    home = client.get("/compose")
    assert home.status_code == 200
    assert '<option value="G">' in home.text and '<option value="ACK">' not in home.text
    chosen = client.get("/compose?form=G&partner=NO-SIRENE&desk=sirene")
    assert chosen.status_code == 303
    page = client.get(chosen.headers["location"])
    assert page.status_code == 200
    assert '<input id="f-Hit/Time"' in page.text
    assert 'type="date"' in page.text  # Person/DateOfBirth
    assert "Header/Recipient/Bureau" not in form_values(page.text, "compose")
    # The Attachment list is no input: it is filled from the files of the file input.
    assert not any(key.startswith("Attachment") for key in form_values(page.text, "compose"))
    assert '<input type="file" id="attachment" name="attachment" multiple>' in page.text


def test_a_payload_in_every_field_is_rendered_inert(desk: Console, client: TestClient) -> None:
    _, page = reply_page(client, desk)
    values = form_values(page, "compose")
    filled = {
        key: XSS
        for key in values
        if key not in ("csrf", "partner", "desk", "reply", "once", "draft")
        and not key.endswith("#")
        and "~" not in key.rpartition("/")[2]
    }
    assert len(filled) >= 6

    answer = client.post("/compose/M", data=values | filled | {"action": "send"})

    assert answer.status_code == 422
    assert "<script>" not in answer.text and "<img" not in answer.text
    assert answer.text.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= len(filled)
    kept = form_values(answer.text, "compose")
    assert all(kept[key] == XSS for key in filled)  # inert, and given back as typed
    assert outbound(desk) == []
