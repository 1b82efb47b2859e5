"""Three real gateways exchange forms both ways: the demo's story, checked in every ledger."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.cli import demo
from gateway.cli.main import main
from gateway.core import config as configuration
from gateway.core.clock import SystemClock
from gateway.store.audit import AuditLog
from gateway.store.ledger import (
    Ledger,
    MessageRow,
    crosscheck_hits,
    deadlines,
    make_engine,
    messages,
)


class Bureau:
    """A bureau the demo made, read back from its own configuration and ledger."""

    def __init__(self, root: Path) -> None:
        self.config = configuration.load(root / "gateway.toml")
        self.engine = make_engine(self.config.database_url)
        self.ledger = Ledger(self.engine, SystemClock())

    def rows(self) -> list[MessageRow]:
        with self.engine.connect() as connection:
            ids = connection.execute(select(messages.c.id).order_by(messages.c.id)).scalars()
            return [self.ledger.get(int(i)) for i in ids]

    def one(self, direction: str, form: str, priority: str = "normal") -> MessageRow:
        found = [
            row
            for row in self.rows()
            if row.direction == direction and row.form == form and row.priority == priority
        ]
        assert len(found) == 1, found
        return found[0]

    def deadline_states(self, message_id: int) -> dict[str, str]:
        with self.engine.connect() as connection:
            return {
                row.kind: row.state
                for row in connection.execute(
                    select(deadlines.c.kind, deadlines.c.state).where(
                        deadlines.c.message_id == message_id
                    )
                )
            }

    def copy(self, row: MessageRow) -> str:
        """The text of a received message's desk copy."""
        [path] = (self.config.desk(row.desk or "").maildir / "new").glob(f"*.{row.reference}")
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = message.get_body(("plain",))
        assert text is not None
        return str(text.get_content())

    def hits(self, message_id: int) -> list[tuple[int, str, str, str | None]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    crosscheck_hits.c.earlier_id,
                    crosscheck_hits.c.kind,
                    crosscheck_hits.c.shown,
                    crosscheck_hits.c.earlier_desk,
                ).where(crosscheck_hits.c.message_id == message_id)
            )
            return sorted((row[0], row[1], row[2], row[3]) for row in rows)

    def notices(self, desk: str) -> list[str]:
        folder = self.config.desk(desk).maildir / "new"
        return sorted(path.name for path in folder.glob("notice.*"))


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], Path]]:
    folder = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    assert demo.run(folder / "run", say=lines.append) == 0
    yield lines, folder / "run"


def test_the_hit_is_received_receipted_and_answered(story: tuple[list[str], Path]) -> None:
    _, root = story
    ro, no = Bureau(root / "ro"), Bureau(root / "no")
    hit = ro.one("outbound", "G")
    assert hit.state == "answered"
    assert ro.deadline_states(hit.id) == {"receipt": "met", "reply": "met"}
    received = no.one("inbound", "G")
    assert (received.reference, received.state) == (hit.reference, "answered")
    assert received.content_sha256 == hit.content_sha256
    assert no.deadline_states(received.id) == {"reply": "met"}
    reply = no.one("outbound", "M")
    assert (reply.in_reply_to, reply.state) == (hit.reference, "acknowledged")
    assert ro.one("inbound", "M").state == "delivered"
    # Each receipt went once, and nobody receipted a receipt.
    receipts = [row for row in no.rows() if row.direction == "outbound" and row.form == "ACK"]
    assert sorted(row.in_reply_to or "" for row in receipts) == sorted(
        row.reference for row in no.rows() if row.direction == "inbound" and row.form != "ACK"
    )
    assert all(row.state == "sent" for row in receipts)
    assert all(
        row.state == "delivered"
        for row in ro.rows()
        if row.form == "ACK" and row.direction == "inbound"
    )


def test_the_interpol_query_gets_its_result(story: tuple[list[str], Path]) -> None:
    _, root = story
    ro, rs = Bureau(root / "ro"), Bureau(root / "rs")
    query = ro.one("outbound", "IP-QUERY")
    assert query.state == "answered"
    assert rs.one("inbound", "IP-QUERY").state == "answered"
    result = rs.one("outbound", "IP-QUERY-RESULT")
    assert result.in_reply_to == query.reference
    assert ro.one("inbound", "IP-QUERY-RESULT").state == "delivered"


def test_the_unanswered_urgent_request_is_reminded_and_escalated_once(
    story: tuple[list[str], Path],
) -> None:
    _, root = story
    ro, no = Bureau(root / "ro"), Bureau(root / "no")
    urgent = no.one("inbound", "G", "urgent")
    assert urgent.desk == "duty"
    assert no.deadline_states(urgent.id)["reply"] == "open"
    notices = no.notices("duty")
    assert sum(".reminder." in name or name.startswith("notice.reminder") for name in notices) == 2
    assert sum("escalation" in name for name in notices) == 1
    assert ro.one("outbound", "G", "urgent").state == "acknowledged"


def test_arriving_messages_are_cross_checked_within_what_their_desk_may_see(
    story: tuple[list[str], Path],
) -> None:
    """NO receives from RO's gateway the hit on its alert (sirene desk), then an urgent G about
    the same person (duty desk); RO receives NO's answer about its alert."""
    _, root = story
    ro, no = Bureau(root / "ro"), Bureau(root / "no")
    first, urgent = no.one("inbound", "G"), no.one("inbound", "G", "urgent")
    assert (first.desk, urgent.desk) == ("sirene", "duty")
    assert "Earlier exchanges" not in no.copy(first)
    assert no.hits(first.id) == []
    # The same person on the sirene desk's message: counted on the duty desk's copy, never
    # described (not the name, nor which message).
    assert no.hits(urgent.id) == [(first.id, "person", "Demo EXAMPLE", "sirene")]
    copy = no.copy(urgent)
    section = copy.split("Earlier exchanges:\n", 1)[1].split("\n\n", 1)[0]
    assert section == "  1 on other desks (not described here: a supervisor sees them)"
    assert f"ledger {first.id}" not in copy
    # At RO, NO's answer shares the alert with RO's own G, sent by the same desk: described.
    sent, answer = ro.one("outbound", "G"), ro.one("inbound", "M")
    assert sent.desk == answer.desk
    assert ro.hits(answer.id) == [(sent.id, "reference", "NO0000000000654321", sent.desk)]
    day = f"{sent.created_at:%Y-%m-%d}"
    # The answer replies to that G: both are in one case, which the hit names.
    hit = f"  sis-alert NO0000000000654321 in a G form to NO-SIRENE, {day}, ledger {sent.id}"
    [line] = [line for line in ro.copy(answer).splitlines() if line.startswith(hit)]
    assert re.fullmatch(r", case C\d{4}-\d{6} \(open\)", line.removeprefix(hit)), line


def test_every_audit_chain_verifies_and_the_story_is_told(story: tuple[list[str], Path]) -> None:
    lines, root = story
    for name in ("ro", "no", "rs"):
        bureau = Bureau(root / name)
        assert AuditLog(bureau.engine, SystemClock()).verify() == []
    text = "\n".join(lines)
    for step in ("1. ", "2. ", "3. ", "4. ", "Ledger of RO-SIRENE", "Maildirs"):
        assert step in text


def test_the_inbox_has_a_header_row_minutes_and_no_receipts_unless_asked(
    story: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, root = story
    ro = Bureau(root / "ro")
    source = str(ro.config.source)
    assert main(["-c", source, "inbox"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == [
        *("RECEIVED", "REFERENCE", "FORM", "FROM", "DESK", "PRIORITY", "STATE", "REPLY", "DUE")
    ]
    forms = [line.split()[3] for line in lines]
    assert sorted(forms) == ["IP-QUERY-RESULT", "M"]  # the receipts (ACK) left out
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\dZ  ", line) for line in lines), lines
    received_acks = [r for r in ro.rows() if r.direction == "inbound" and r.form == "ACK"]
    assert received_acks
    assert main(["-c", source, "inbox", "--receipts"]) == 0
    _, *with_receipts = capsys.readouterr().out.splitlines()
    assert len(with_receipts) == len(lines) + len(received_acks)
    assert main(["-c", source, "inbox", "--receipts", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(with_receipts)


def test_show_renders_the_form_as_the_desk_copy_does(
    story: tuple[list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, root = story
    ro = Bureau(root / "ro")
    answer = ro.one("inbound", "M")
    assert main(["-c", str(ro.config.source), "show", answer.reference]) == 0
    shown = capsys.readouterr().out
    status, blank, *body = shown.splitlines()
    assert status == f"M {answer.reference} from NO-SIRENE (delivered, desk {answer.desk})"
    assert blank == ""
    [copy] = (ro.config.desk(answer.desk or "").maildir / "new").glob(f"*{answer.reference}")
    message = email.message_from_bytes(copy.read_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",))
    assert text is not None
    assert body == text.get_content().splitlines()  # one rendering, with labels
    assert body[0].startswith("SIRENE form M: ")
    assert any(line.startswith("Reference:   ") for line in body)
    assert main(["-c", str(ro.config.source), "show", "RO-2026-999999"]) == 1
