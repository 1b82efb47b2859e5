"""The index entries of a message, made from its form's entities and written in the transaction
that records the message (inbound: the pipeline; outbound: submit)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from gateway.forms.entities import EMAIL, PERSON, PHONE, Entity
from gateway.forms.xmlforms import Validation
from gateway.search import folding
from gateway.store import search_rows
from gateway.store.search_rows import IndexRow, Where
from gateway.store.unit import Transaction

log = logging.getLogger("gateway.search")
PART_CHARS = 64  # search_parts.part


def index_rows(found: Sequence[Entity]) -> list[IndexRow]:
    """What the index keeps of each entity: the value as written, folded, and its key."""
    rows = []
    for entity in found:
        folded, key = fold(entity.kind, entity.value)
        if key:
            rows.append(
                IndexRow(
                    entity.kind,
                    entity.role,
                    entity.value,
                    folded,
                    key,
                    entity.born,
                    entity.country,
                    name_parts(key) if entity.kind == PERSON else (),
                )
            )
    return rows


def name_parts(key: str) -> tuple[tuple[str, str], ...]:
    """The parts of a name's key (skeletons, at most PART_CHARS long), each with its
    consonants: what search_parts holds."""
    parts = dict.fromkeys(part[:PART_CHARS] for part in key[:255].split())
    return tuple((part, folding.consonants(part)) for part in parts)


def fold(kind: str, value: str) -> tuple[str, str]:
    """(folded, key) of a value of ``kind``: a name's folded parts and sorted skeletons, an
    identifier's folded form twice."""
    if kind == PERSON:
        parts = folding.name_parts(value)
        return " ".join(parts), folding.name_key(parts)
    if kind == PHONE:
        digits = folding.phone(value)
        return digits, digits
    if kind == EMAIL:
        address = folding.email(value)
        return address, address
    folded = folding.identifier(value)
    return folded, folded


def write_in(tx: Transaction, where: Where, found: Sequence[Entity], now: datetime) -> int:
    """Index a message's entities inside ``tx``; returns the number of entries."""
    return search_rows.add_in(tx, where, index_rows(found), now)


def rows_for_intake(validation: Validation) -> list[IndexRow]:
    """The index rows of a message being accepted, made before its transaction (so the
    ledger's writer lock is not held for them). A fault here must not refuse a valid message
    or make its sender retry: it is logged, and the message is accepted unindexed (`gateway
    index rebuild` indexes it later)."""
    try:
        return index_rows(validation.entities())
    except Exception:
        log.exception("cannot index a %s form: accepted without index entries", validation.root)
        return []
