"""A received message as its desk reads it: the form from the inbound spool, checked again and
rendered with its labels by gateway.desks (the desk copy's words, with the cross-check's hits
as the copy shows them), for `gateway show` and the console alike."""

from __future__ import annotations

from dataclasses import dataclass, replace

from gateway.core.errors import GatewayError
from gateway.crypto import pgpmime
from gateway.crypto.pgpmime import Attachment
from gateway.desks import maildir
from gateway.desks.maildir import Delivery
from gateway.search import crosscheck
from gateway.service.services import Services
from gateway.store import crosscheck_rows, lookups
from gateway.store.ledger import MessageRow


class NotReadable(Exception):
    """The message's form cannot be shown: not a received message, its spooled copy gone (purged
    after its retention), or that copy unreadable or no longer valid. ``shown`` says which in
    words for the reader (no content)."""

    def __init__(self, detail: str, shown: str) -> None:
        super().__init__(detail)
        self.shown = shown


GONE = "The form is no longer kept: its retention has passed."
UNREADABLE = "The form's stored copy cannot be read or no longer validates: tell an operator."


@dataclass(frozen=True)
class Rendered:
    text: str  # the desk copy's body: title, summary, the form's fields with labels
    attachments: tuple[Attachment, ...]


def delivery_of(services: Services, row: MessageRow) -> Delivery:
    """The Delivery the desk copy of ``row`` was made from, rebuilt from the spooled message."""
    if row.direction != "inbound" or row.spool_key is None:
        raise NotReadable(f"message {row.id} is not a received message", GONE)
    try:
        body = services.bodies.read(row.id, row.spool_key)
    except KeyError:
        raise NotReadable(f"message {row.id}: its spooled copy is no longer kept", GONE) from None
    except ValueError as exc:
        detail = f"message {row.id}: its stored copy cannot be read ({type(exc).__name__})"
        raise NotReadable(detail, UNREADABLE) from exc
    validator = services.validator
    try:
        payload = pgpmime.parse_entity(body.entity)
        result = validator.validate(payload.form)
        header = result.header()
    except (KeyError, ValueError, GatewayError) as exc:
        detail = f"message {row.id}: its spooled copy cannot be read ({type(exc).__name__})"
        raise NotReadable(detail, UNREADABLE) from exc
    partner = services.config.partner_by_bureau(row.partner)
    with services.ledger.reading() as tx:
        due = lookups.deadline_due(tx, row.id, "reply")
    return Delivery(
        partner=row.partner,
        partner_address=partner.address if partner else "",
        channel=row.channel,
        form=row.form,
        title=validator.catalogue.get(row.form).title,
        header=header,
        outline=tuple(result.outline()),
        form_xml=payload.form,
        received_at=row.created_at,
        desk=row.desk or "-",
        attachments=payload.attachments,
        reply_due=due,
    )


def render(services: Services, row: MessageRow, *, earlier: bool = True) -> Rendered:
    """The desk copy's text; ``earlier``: with the cross-check's hits as the copy has them (its
    desk's own described, the others counted), for a reader of the form who has no other view
    of them."""
    delivery = delivery_of(services, row)
    if earlier:
        with services.ledger.reading() as tx:
            hits = crosscheck.with_cases(tx, crosscheck_rows.of_message(tx, row.id))
        own, elsewhere = crosscheck.seen_by(hits, row.desk or "")
        delivery = replace(
            delivery,
            earlier=tuple(crosscheck.describe(hit) for hit in own),
            earlier_elsewhere=elsewhere,
            earlier_capped=crosscheck.capped(hits),
        )
    return Rendered(text=maildir.body(delivery), attachments=delivery.attachments)
