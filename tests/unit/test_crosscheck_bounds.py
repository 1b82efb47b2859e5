"""The cross-check's look-ups on a real ledger (SQLite and PostgreSQL): exact keys only, the
most recent earlier entries first, at most PER_ENTRY per key and MAX_HITS per message, never
the message itself nor a later one, persons only with the same date of birth, contact details
after what identifies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from dbkit import RECEIVED
from sqlalchemy import Engine

from gateway.core.clock import FakeClock
from gateway.forms.entities import Entity
from gateway.search import crosscheck, index
from gateway.store.ledger import Ledger
from gateway.store.search_rows import Where

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
PASSPORT = Entity("document", "passport", "AB 123-456", None, "RO")
PERSON = Entity("person", "name", "Jan NOWAK", "1980-01-01", "PL")


def recorded(ledger: Ledger, number: int, found: list[Entity], desk: str = "sirene") -> int:
    """A received message holding ``found``: its ledger id."""
    with ledger.transaction() as tx:
        new = replace(RECEIVED, reference=f"NO-2026-{number:06d}", spool_key=f"k{number}")
        message = ledger.record_in(tx, replace(new, desk=desk), "spooled")
        index.write_in(tx, Where(message, "inbound", "NO-SIRENE", desk, "G"), found, START)
    return message


def check(ledger: Ledger, message: int) -> list[tuple[int, str, str]]:
    with ledger.reading() as tx:
        return [(hit.earlier_id, hit.kind, hit.shown) for hit in crosscheck.check(tx, message)]


def test_the_most_recent_earlier_messages_come_first_and_no_more_than_the_limits(
    ledger_engine: Engine,
) -> None:
    ledger = Ledger(ledger_engine, FakeClock(START))
    earlier = [recorded(ledger, number, [PASSPORT, PERSON]) for number in range(30)]
    arriving = recorded(ledger, 30, [PASSPORT, PERSON])
    later = recorded(ledger, 31, [PASSPORT])

    hits = check(ledger, arriving)

    assert len(hits) == crosscheck.MAX_HITS == 20
    # 20 passport hits and 20 person hits read; the 20 most recent kept, each message's
    # passport and person together, never the message itself nor the one after it.
    newest = sorted(earlier, reverse=True)[:10]
    assert sorted({hit[0] for hit in hits}, reverse=True) == newest
    assert arriving not in {hit[0] for hit in hits} and later not in {hit[0] for hit in hits}
    assert {hit[1] for hit in hits} == {"document", "person"}
    assert [hit[0] for hit in hits] == sorted((hit[0] for hit in hits), reverse=True)
    assert check(ledger, earlier[0]) == []  # the first has nothing earlier


def test_a_person_needs_the_same_key_and_date_of_birth(ledger_engine: Engine) -> None:
    ledger = Ledger(ledger_engine, FakeClock(START))
    spelled = recorded(ledger, 1, [replace(PERSON, value="Jan Novák")])  # the same skeleton
    recorded(ledger, 2, [replace(PERSON, born="1980-01-02")])  # another date of birth
    recorded(ledger, 3, [replace(PERSON, value="Jana NOWAK")])  # another name: no fuzzy
    recorded(ledger, 4, [replace(PERSON, born=None)])  # no date of birth: no identification
    arriving = recorded(ledger, 5, [PERSON])
    no_date = recorded(ledger, 6, [replace(PERSON, born=None)])

    assert check(ledger, arriving) == [(spelled, "person", "Jan Novák")]
    assert check(ledger, no_date) == []


def test_identifiers_come_before_contact_details(ledger_engine: Engine) -> None:
    ledger = Ledger(ledger_engine, FakeClock(START))
    phone = Entity("phone", "phone", "+47 22 00 00 00")
    mail = Entity("email", "email", "Duty@Bureau.example")
    first = recorded(ledger, 1, [PASSPORT])
    contacts = [recorded(ledger, number, [phone, mail]) for number in range(2, 25)]
    arriving = recorded(ledger, 25, [PASSPORT, replace(phone, value="+4722000000"), mail])

    hits = check(ledger, arriving)

    assert len(hits) == 20
    assert hits[0] == (first, "document", "AB 123-456")  # the oldest, yet first
    assert {hit[1] for hit in hits[1:]} == {"phone", "email"}
    assert max(contacts) == hits[1][0]


def test_each_desk_s_messages_are_found_and_say_their_desk(ledger_engine: Engine) -> None:
    ledger = Ledger(ledger_engine, FakeClock(START))
    duty = recorded(ledger, 1, [PASSPORT], desk="duty")
    sirene = recorded(ledger, 2, [PASSPORT], desk="sirene")
    arriving = recorded(ledger, 3, [PASSPORT], desk="sirene")
    with ledger.reading() as tx:
        hits = crosscheck.check(tx, arriving)
    assert [(hit.earlier_id, hit.earlier_desk) for hit in hits] == [
        (sirene, "sirene"),
        (duty, "duty"),
    ]
    own, elsewhere = crosscheck.seen_by(hits, "sirene")
    assert ([hit.earlier_id for hit in own], elsewhere) == ([sirene], 1)
