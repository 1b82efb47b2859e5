"""The search index rebuilt from the stored messages (`gateway index rebuild`)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.errors import GatewayError
from gateway.crypto import pgpmime
from gateway.inbound.handoff import Spooled
from gateway.search import index
from gateway.service.services import Services
from gateway.store import search_rows
from gateway.store.ledger import MessageRow
from gateway.store.search_rows import Where

BATCH = 200


@dataclass
class Rebuilt:
    messages: int = 0  # indexed again
    entries: int = 0
    not_kept: int = 0  # no readable copy: purged, or sent (only the sealed copy is kept)
    unreadable: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def rebuild(services: Services) -> Rebuilt:
    """Empty the index and index again every received message whose verified copy is kept, one
    transaction per message. A form we sent is kept sealed to its partner only: its entries,
    written when it was queued, cannot be made again and are lost by a rebuild."""
    done = Rebuilt()
    with services.ledger.transaction() as tx:
        search_rows.delete_all_in(tx)
    after = 0
    while True:
        with services.ledger.reading() as tx:
            rows = search_rows.messages_after(tx, after, BATCH)
        if not rows:
            return done
        for row in rows:
            after = row.id
            _again(services, row, done)


def _again(services: Services, row: MessageRow, done: Rebuilt) -> None:
    if row.direction != "inbound" or row.spool_key is None:
        done.not_kept += 1
        return
    try:
        item = services.inbound.get(row.spool_key)
    except KeyError:
        done.not_kept += 1
        return
    try:
        payload = pgpmime.parse_entity(Spooled.of(item).entity)
        validation = services.validator.validate(payload.form)
        found = validation.entities()
    except (KeyError, ValueError, GatewayError):
        done.unreadable += 1
        return
    where = Where(row.id, row.direction, row.partner, row.desk, row.form)
    with services.ledger.transaction() as tx:
        done.entries += index.write_in(tx, where, found, row.created_at)
    done.messages += 1
