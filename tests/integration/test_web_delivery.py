"""The delivery history on the message view of a message of ours: each attempt in the bureau's
zone (UTC on hover) with its outcome, the partner server's reply codes or the error and the next
try; the receipt with the key that signed it; the answer, linked for a user who may open it;
quarantine and the operators' actions. Metadata only: an operator sees it, and no form content."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from webkit import START, Console, console, form_xml, login, sent, write_config

from gateway.store.ledger import NewMessage
from gateway.store.states import InboundState, OutboundState

SECRET = "Vardohusbyen"  # a value of the form's: never on this page for an operator
SIGNER = "0123456789ABCDEF0123456789ABCDEF01234567"


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Console]:
    with console(write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")) as made:
        yield made


def inbound(where: Console, form: str, reference: str, **fields: object) -> int:
    ledger = where.services.ledger
    with ledger.transaction() as tx:
        return ledger.record_in(
            tx,
            NewMessage(
                direction="inbound",
                partner="NO-SIRENE",
                channel="sirene",
                form=form,
                reference=reference,
                message_id=f"<{reference}@no.example>",
                priority="normal",
                content_sha256="e" * 64,
                raw_sha256="f" * 64,
                state=InboundState.DELIVERED,
                spool_key=f"in.{reference}",
                **fields,  # type: ignore[arg-type]
            ),
        )


def test_an_answered_message_shows_its_attempts_receipt_and_answer(desk: Console) -> None:
    ours = sent(
        desk.services, "RO-2026-000010", state="queued", form=form_xml("X", Locality=SECRET)
    )
    ledger = desk.services.ledger
    next_try = START + timedelta(minutes=1)
    with ledger.transaction() as tx:  # as delivery and the matching write them
        ledger.event_in(
            tx, ours, "deferred", f"attempt 1: 451 4.3.0 at DATA; next {next_try.isoformat()}"
        )
    desk.clock.advance(timedelta(minutes=1))
    with ledger.transaction() as tx:
        ledger.set_state_in(tx, ours, OutboundState.SENT, "250 2.0.0 at DATA")
    desk.clock.advance(timedelta(minutes=4))
    receipt = inbound(desk, "ACK", "NO-2026-000700", signer=SIGNER)
    with ledger.transaction() as tx:
        ledger.set_state_in(tx, ours, OutboundState.ACKNOWLEDGED, "receipt NO-2026-000700")
    desk.clock.advance(timedelta(hours=1))
    answer = inbound(desk, "M", "NO-2026-000701", in_reply_to="RO-2026-000010", desk="sirene")
    far = inbound(desk, "M", "NO-2026-000702", in_reply_to="RO-2026-000010", desk="interpol")
    with ledger.transaction() as tx:
        ledger.set_state_in(tx, ours, OutboundState.ANSWERED, "reply M NO-2026-000701")

    with TestClient(desk.app, follow_redirects=False) as client:
        assert login(client, "ana")[0] == 303
        page = client.get(f"/messages/{ours}").text
    section = page[page.index('id="delivery-heading"') : page.index('id="timeline-heading"')]
    attempts = re.findall(r'<tr class="attempt attempt-(\w+)">(.*?)</tr>', section, re.S)
    assert [outcome for outcome, _ in attempts] == ["deferred", "sent"]
    deferred = attempts[0][1]
    # 08:00 UTC is 10:00 in Bucharest; the retry a minute later; UTC on hover.
    assert (
        '<time datetime="2026-12-01T08:00:00Z" title="2026-12-01 08:00 UTC">2026-12-01 10:00 EET'
        in deferred
    )
    assert "(attempt 1)" in deferred and "451 4.3.0 at DATA" in deferred
    assert 'title="2026-12-01 08:01 UTC">2026-12-01 10:01 EET</time></td>' in deferred
    assert "250 2.0.0 at DATA" in attempts[1][1]
    assert "receipt NO-2026-000700, signature verified with key" in section
    assert "0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567" in section
    assert "2026-12-01 10:05 EET" in section  # the receipt's time
    assert f'<a href="/messages/{answer}">M NO-2026-000701</a>' in section
    assert f"/messages/{far}" not in section and "M NO-2026-000702 (another desk's)" in section
    assert 'id="quarantined"' not in section and str(receipt) not in re.findall(
        r"/messages/(\d+)", section
    )


def test_an_operator_sees_a_rejected_message_in_quarantine_without_its_content(
    desk: Console,
) -> None:
    ours = sent(
        desk.services, "RO-2026-000011", state="rejected", form=form_xml("X", Locality=SECRET)
    )
    with TestClient(desk.app, follow_redirects=False) as client:
        assert login(client, "olaf")[0] == 303
        answer = client.get(f"/messages/{ours}")
    assert answer.status_code == 200
    page = answer.text
    assert SECRET not in page
    section = page[page.index('id="delivery-heading"') : page.index('id="timeline-heading"')]
    assert 'id="quarantined"' in section
    assert "rejected, quarantined" in section
    assert "550 5.1.1 &lt;sirene@no.example&gt;: recipient unknown" in section
    assert 'id="no-receipt"' in section and 'id="no-answer"' in section


def test_a_queued_message_not_tried_yet_and_a_received_one_has_no_delivery(
    desk: Console,
) -> None:
    ours = sent(desk.services, "RO-2026-000012", state="queued")
    theirs = inbound(desk, "G", "NO-2026-000703", desk="sirene")
    with TestClient(desk.app, follow_redirects=False) as client:
        assert login(client, "ana")[0] == 303
        assert 'id="no-attempts"' in client.get(f"/messages/{ours}").text
        assert 'id="delivery-heading"' not in client.get(f"/messages/{theirs}").text
