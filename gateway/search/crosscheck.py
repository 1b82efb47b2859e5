"""The cross-check at arrival: what an arriving message has in common with earlier exchanges,
by exact index keys only, and how a hit reads on a desk copy.

Each of the message's index entries is looked up by its key as the index holds it (an
identifier folded: documents, vehicles, firearms, objects, references, phone numbers, e-mail
addresses; a person by the sorted skeletons of the name parts and the date of birth, so that
Iwanow and Ivanov or Novák and Nowak meet): at most PER_ENTRY of the most recent earlier
entries each, at most MAX_HITS for the message. Its cost is a few index walks of a bounded
length, however many messages hold a common name: no fuzzy scoring runs on the hand-off's
path (a search does that, when a handler asks). A person without a date of birth is left out:
a name alone is no identification.

The earlier messages of one case (and desk) that hold a key are one hit: "in 20 messages of
case C2026-000042 (open), latest ledger N", described by the latest of them; an earlier
message in no case is a hit of its own. MAX_HITS counts these hits.

Earlier means recorded before it in the ledger (a lower ledger id), inbound or outbound, on
any desk: who may see a hit described is decided where it is shown (the desk copy, the
message view). Phone numbers and e-mail addresses come last: a bureau's own number or address
in a form's text would tie many exchanges together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from gateway.forms.entities import (
    DOCUMENT,
    EMAIL,
    FIREARM,
    OBJECT,
    PERSON,
    PHONE,
    REFERENCE,
    VEHICLE,
)
from gateway.store import case_rows, crosscheck_walk
from gateway.store.crosscheck_walk import EarlierHit
from gateway.store.unit import Transaction

KINDS = frozenset({DOCUMENT, VEHICLE, FIREARM, OBJECT, REFERENCE, PERSON, PHONE, EMAIL})
LAST = (PHONE, EMAIL)  # after what identifies: contact details
PER_ENTRY = 20  # earlier entries read per key: the most recent
MAX_HITS = 20  # per message: more is no cross-check but a list, and a search's job


def check(tx: Transaction, message_id: int) -> list[EarlierHit]:
    """The hits of the message ``message_id`` against the messages recorded before it."""
    return check_many(tx, [message_id]).get(message_id, [])


def check_many(tx: Transaction, message_ids: Sequence[int]) -> dict[int, list[EarlierHit]]:
    """The hits of each of these messages against the messages recorded before it, from its
    own index entries (read for all in one statement, then one statement a message): one per
    earlier message and key, or per earlier case, desk and key; at most MAX_HITS, identifiers
    and persons first, then the most recent first; each with its case as it stands."""
    found: dict[int, list[EarlierHit]] = {}
    for message_id, written in crosscheck_walk.keys_of(tx, message_ids).items():
        keys: dict[tuple[str, str, str | None], None] = {}
        for kind, key, born in written:
            if kind == PERSON:
                if born:
                    keys[(kind, key, born)] = None
            elif kind in KINDS:
                keys[(kind, key, None)] = None
        rows = crosscheck_walk.earlier(
            tx, list(keys), before=message_id, per_key=PER_ENTRY, most=MAX_HITS, last=LAST
        )
        if rows:
            found[message_id] = [crosscheck_walk.hit_of(row) for row in rows]
    return found


def with_cases(tx: Transaction, hits: Sequence[EarlierHit]) -> list[EarlierHit]:
    """The hits, each with the case its (latest) earlier message is in now, in one read."""
    numbers = case_rows.cases_of_messages(tx, {hit.earlier_id for hit in hits})
    shown: list[EarlierHit] = []
    for hit in hits:
        found = numbers.get(hit.earlier_id)
        shown.append(
            hit
            if found is None
            else dataclasses.replace(hit, earlier_case=f"{found[0]} ({found[1]})")
        )
    return shown


def describe(hit: EarlierHit) -> str:
    """``passport AB 123-456 in a G form from NO-SIRENE, 2026-03-02, ledger 17`` and, when
    that message is in a case, ``, case C2026-000042 (open)``; for several messages of a case,
    ``passport AB 123-456 in 20 messages of case C2026-000042 (open), latest ledger 17, from
    NO-SIRENE 2026-03-02``."""
    if hit.kind == PERSON:
        what = f"person {hit.shown}, born {hit.born}"
    else:
        what = f"{hit.role} {hit.shown}"
    way = "from" if hit.earlier_direction == "inbound" else "to"
    if hit.messages > 1:
        case = f" of case {hit.earlier_case}" if hit.earlier_case else ""
        return (
            f"{what} in {hit.messages} messages{case}, latest ledger {hit.earlier_id}, "
            f"{way} {hit.earlier_partner} {hit.earlier_at:%Y-%m-%d}"
        )
    return (
        f"{what} in a {hit.earlier_form} form {way} {hit.earlier_partner}, "
        f"{hit.earlier_at:%Y-%m-%d}, ledger {hit.earlier_id}"
        + (f", case {hit.earlier_case}" if hit.earlier_case else "")
    )


def capped(hits: Sequence[EarlierHit]) -> bool:
    """Whether the check stopped at one of its limits (there may be more): MAX_HITS hits, or
    PER_ENTRY earlier messages of one key (in one case's hits or more)."""
    if len(hits) >= MAX_HITS:
        return True
    messages: dict[tuple[str, str | None], int] = {}
    for hit in hits:
        key = (hit.kind, hit.key or hit.shown)
        messages[key] = messages.get(key, 0) + hit.messages
    return any(count >= PER_ENTRY for count in messages.values())


def seen_by(hits: Sequence[EarlierHit], desk: str) -> tuple[list[EarlierHit], int]:
    """The hits a desk may read described (on messages of its own), and how many others."""
    own = [hit for hit in hits if hit.earlier_desk == desk]
    return own, len(hits) - len(own)
