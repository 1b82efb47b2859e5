"""The cross-check at arrival: what an arriving message has in common with earlier exchanges
(its identifiers by their exact folded key, its persons by name and date of birth at the
search's default threshold), and how a hit reads on a desk copy.

Earlier means recorded before it in the ledger (a lower ledger id), inbound or outbound, on
any desk: who may see a hit described is decided where it is shown (the desk copy, the
message view). Phone numbers and e-mail addresses are left out: a bureau's own number or
address in a form's text would tie every exchange with that bureau together. A person without
a date of birth on either side is left out too: a name alone is no identification.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from gateway.core.errors import SearchRefused
from gateway.forms.entities import DOCUMENT, FIREARM, OBJECT, PERSON, REFERENCE, VEHICLE
from gateway.search import matching
from gateway.store import crosscheck_rows, search_rows
from gateway.store.crosscheck_rows import EarlierHit
from gateway.store.search_rows import Candidate, IndexRow
from gateway.store.unit import Transaction

IDENTIFIERS = frozenset({DOCUMENT, VEHICLE, FIREARM, OBJECT, REFERENCE})
MAX_HITS = 50  # per message: more is no cross-check but a list, and a search's job
_EXACT = 200  # earlier entries read per identifier


def check(tx: Transaction, message_id: int) -> list[EarlierHit]:
    """The hits of the message ``message_id`` against the messages recorded before it, from
    its own index entries: at most MAX_HITS, one per earlier message and value."""
    found: dict[tuple[int, str, str], EarlierHit] = {}
    for row in crosscheck_rows.entries_of(tx, message_id):
        for candidate, score in _matches(tx, row):
            where = candidate.where
            if where.message_id >= message_id:
                continue
            hit = EarlierHit(
                kind=candidate.row.kind,
                role=candidate.row.role,
                shown=candidate.row.shown,
                born=candidate.row.born,
                score=score,
                earlier_id=where.message_id,
                earlier_direction=where.direction,
                earlier_partner=where.partner,
                earlier_desk=where.desk,
                earlier_form=where.form,
                earlier_at=candidate.created_at,
            )
            key = (hit.earlier_id, hit.kind, candidate.row.key)
            if key not in found or found[key].score < score:
                found[key] = hit
    hits = sorted(found.values(), key=lambda hit: (-hit.score, -hit.earlier_id, hit.shown))
    return hits[:MAX_HITS]


def _matches(tx: Transaction, row: IndexRow) -> Sequence[tuple[Candidate, int]]:
    if row.kind in IDENTIFIERS:
        same = search_rows.candidates(
            tx, row.kind, [row.key], fuzzy=False, desks=None, limit=_EXACT
        )
        return [(candidate, 100) for candidate in same if candidate.row.key == row.key]
    if row.kind != PERSON or not row.born:
        return []
    try:
        born = date.fromisoformat(row.born)
        query = matching.Query(PERSON, row.shown, born=born, limit=MAX_HITS)
        found = matching.search(tx, query, desks=None)
    except (ValueError, SearchRefused):  # a date or a name the search cannot take: no check
        return []
    return [(hit.candidate, int(hit.score)) for hit in found.hits if hit.candidate.row.born]


def describe(hit: EarlierHit) -> str:
    """``passport AB 123-456 in a G form from NO-SIRENE, 2026-03-02, ledger 17``."""
    if hit.kind == PERSON:
        what = f"person {hit.shown}, born {hit.born}"
        if hit.score < 100:
            what += f" ({hit.score}% alike)"
    else:
        what = f"{hit.role} {hit.shown}"
    way = "from" if hit.earlier_direction == "inbound" else "to"
    return (
        f"{what} in a {hit.earlier_form} form {way} {hit.earlier_partner}, "
        f"{hit.earlier_at:%Y-%m-%d}, ledger {hit.earlier_id}"
    )


def seen_by(hits: Sequence[EarlierHit], desk: str) -> tuple[list[EarlierHit], int]:
    """The hits a desk may read described (on messages of its own), and how many others."""
    own = [hit for hit in hits if hit.earlier_desk == desk]
    return own, len(hits) - len(own)
