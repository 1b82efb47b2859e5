"""Test kit for the alert register: a sample form of forms/samples exchanged as the intake and
submit leave it (validated by the real validator, recorded in the ledger with its header's alert
article, its entities indexed in the same transaction), with another Reference when asked."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.crypto import pgpmime
from gateway.search import index
from gateway.service.services import Services
from gateway.store.ledger import NewMessage
from gateway.store.search_rows import Where
from gateway.store.states import InboundState, OutboundState

SAMPLES = Path(__file__).resolve().parent.parent / "forms" / "samples"
CHANNELS = {"IP": "interpol", "EU": "europol"}


def sample(
    form: str, name: str, *, reference: str | None = None, alert: str | None = None
) -> bytes:
    """forms/samples/FORM/NAME.xml, with its Reference and its AlertRef's id replaced when
    given."""
    text = (SAMPLES / form / f"{name}.xml").read_text(encoding="utf-8")
    if reference is not None:
        text = re.sub(r"<Reference>[^<]+</Reference>", f"<Reference>{reference}</Reference>", text)
    if alert is not None:
        text = re.sub(r'(<AlertRef article="\d+">)[^<]+(</AlertRef>)', rf"\g<1>{alert}\2", text)
    return text.encode()


def exchange(
    services: Services,
    data: bytes,
    *,
    direction: str = "inbound",
    partner: str = "NO-SIRENE",
    desk: str | None = "sirene",
) -> int:
    """Record a valid form as exchanged (received from, or queued to, ``partner`` on ``desk``)
    with its index entries, in one transaction as the pipeline does (a received one also in the
    inbound spool); its ledger id."""
    validation = services.validator.validate(data)
    validation.raise_for_errors()
    assert validation.form is not None
    header = validation.header()
    form = validation.form.code
    inbound = direction == "inbound"
    spool_key = f"{direction}-{header.reference}"
    if inbound:  # the form in the inbound spool, as the message view reads it
        raw = b"raw message as received\r\n"
        entity = pgpmime.build_entity(data, ())
        services.inbound.put(spool_key, raw + entity, {"raw_length": len(raw)})
    ledger = services.ledger
    with ledger.transaction() as tx:
        ledger_id = ledger.record_in(
            tx,
            NewMessage(
                direction=direction,
                partner=partner,
                channel=CHANNELS.get(form.split("-")[0], "sirene"),
                form=form,
                reference=header.reference,
                in_reply_to=header.in_reply_to,
                message_id=f"<{header.reference}@example>",
                priority=header.priority,
                content_sha256="a" * 64,
                raw_sha256="b" * 64,
                state=InboundState.RECEIVED if inbound else OutboundState.QUEUED,
                spool_key=spool_key,
                desk=desk,
                alert_article=header.alert_article,
            ),
            "spooled" if inbound else "queued",
        )
        where = Where(ledger_id, direction, partner, desk, form)
        index.write_in(tx, where, validation.entities(), services.clock.now())
    return ledger_id
