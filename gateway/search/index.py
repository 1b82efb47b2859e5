"""The index entries of a message, made from its form's entities and written in the transaction
that records the message (inbound: the pipeline; outbound: submit)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.forms.entities import EMAIL, PERSON, PHONE, Entity
from gateway.search import folding
from gateway.store import search_rows
from gateway.store.search_rows import IndexRow, Where
from gateway.store.unit import Transaction


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
                )
            )
    return rows


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
