"""A received message as its desk reads it: the form from the inbound spool, checked again and
rendered with its labels by gateway.desks (the desk copy's words), for `gateway show` and the
console alike."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.crypto import pgpmime
from gateway.crypto.pgpmime import Attachment
from gateway.desks import maildir
from gateway.desks.maildir import Delivery
from gateway.inbound.handoff import Spooled
from gateway.service.services import Services
from gateway.store import lookups
from gateway.store.ledger import MessageRow


class NotReadable(Exception):
    """The message's form cannot be shown: not a received message, or its spooled copy is gone
    (purged after its retention)."""


@dataclass(frozen=True)
class Rendered:
    text: str  # the desk copy's body: title, summary, the form's fields with labels
    attachments: tuple[Attachment, ...]


def delivery_of(services: Services, row: MessageRow) -> Delivery:
    """The Delivery the desk copy of ``row`` was made from, rebuilt from the spooled message."""
    if row.direction != "inbound" or row.spool_key is None:
        raise NotReadable(f"message {row.id} is not a received message")
    try:
        item = services.inbound.get(row.spool_key)
    except KeyError:
        raise NotReadable(f"message {row.id}: its spooled copy is no longer kept") from None
    payload = pgpmime.parse_entity(Spooled.of(item).entity)
    validator = services.validator
    result = validator.validate(payload.form)
    partner = services.config.partner_by_bureau(row.partner)
    with services.ledger.reading() as tx:
        due = lookups.deadline_due(tx, row.id, "reply")
    return Delivery(
        partner=row.partner,
        partner_address=partner.address if partner else "",
        channel=row.channel,
        form=row.form,
        title=validator.catalogue.get(row.form).title,
        header=result.header(),
        outline=tuple(result.outline()),
        form_xml=payload.form,
        received_at=row.created_at,
        desk=row.desk or "-",
        attachments=payload.attachments,
        reply_due=due,
    )


def render(services: Services, row: MessageRow) -> Rendered:
    delivery = delivery_of(services, row)
    return Rendered(text=maildir.body(delivery), attachments=delivery.attachments)
