"""The cross-check's look-ups on a real ledger (SQLite and PostgreSQL): exact keys only, the
most recent earlier entries first, at most PER_ENTRY per key and MAX_HITS per message, never
the message itself nor a later one, persons only with the same date of birth, contact details
after what identifies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from dbkit import RECEIVED
from sqlalchemy import Engine

from gateway.access.roles import Principal, Role
from gateway.core.clock import FakeClock
from gateway.forms.entities import Entity
from gateway.search import crosscheck, index
from gateway.service.cases import Cases
from gateway.store import crosscheck_rows
from gateway.store.audit import AuditLog
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


def test_a_hit_names_the_case_its_earlier_message_is_in(ledger_engine: Engine) -> None:
    """An earlier exchange in a case is shown with the case's number and status, as it stands
    when the hit is read (a case closed since the arrival reads closed)."""
    clock = FakeClock(START)
    ledger = Ledger(ledger_engine, clock)
    in_case = recorded(ledger, 1, [PASSPORT])
    alone = recorded(ledger, 2, [PASSPORT])
    supervisor = Principal("sam", frozenset({Role.SUPERVISOR}))
    cases = Cases(ledger, AuditLog(ledger_engine, clock))
    case = cases.open_around(supervisor, ledger.get(in_case), "request 17/2026")
    arriving = recorded(ledger, 3, [PASSPORT])

    with ledger.reading() as tx:
        hits = {hit.earlier_id: hit for hit in crosscheck.check(tx, arriving)}
    assert hits[in_case].earlier_case == f"{case.number} (open)"
    assert hits[alone].earlier_case is None
    assert crosscheck.describe(hits[in_case]).endswith(
        f"ledger {in_case}, case {case.number} (open)"
    )
    assert crosscheck.describe(hits[alone]).endswith(f"ledger {alone}")

    with ledger.transaction() as tx:
        crosscheck_rows.add_in(tx, [(arriving, list(hits.values()))], START)
    cases.close(supervisor, case.number, "answered")
    with ledger.reading() as tx:
        read = crosscheck.with_cases(tx, crosscheck_rows.of_message(tx, arriving))
    assert {hit.earlier_id: hit.earlier_case for hit in read} == {
        in_case: f"{case.number} (closed)",
        alone: None,
    }
