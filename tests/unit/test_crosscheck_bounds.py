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


def test_the_earlier_messages_of_one_case_are_one_hit_by_desk(ledger_engine: Engine) -> None:
    """Twenty-five earlier messages of one case (every fifth on another desk) holding a
    passport and a person: one hit a key and desk, standing for those of the PER_ENTRY most
    recent of the key, described by the latest; a message in no case stays a hit of its own;
    the record keeps the gathering and a purge of one of its messages counts one fewer."""
    clock = FakeClock(START)
    ledger = Ledger(ledger_engine, clock)
    supervisor = Principal("sam", frozenset({Role.SUPERVISOR}))
    cases = Cases(ledger, AuditLog(ledger_engine, clock))
    desks = ["duty" if number % 5 == 0 else "sirene" for number in range(25)]
    in_case = [
        recorded(ledger, number, [PASSPORT, PERSON], desk=desk) for number, desk in enumerate(desks)
    ]
    case = cases.open_around(supervisor, ledger.get(in_case[0]), "request 17/2026")
    for message in in_case[1:]:
        cases.link(supervisor, case.number, ledger.get(message), "the same passport")
    alone = recorded(ledger, 40, [PASSPORT])
    arriving = recorded(ledger, 41, [PASSPORT, PERSON])

    with ledger.reading() as tx:
        hits = crosscheck.check(tx, arriving)
    shape = [
        (hit.kind, hit.earlier_desk, hit.messages, hit.earlier_first, hit.earlier_id)
        for hit in hits
    ]
    # Each key's walk reads its 20 most recent: for the passport the one alone and the last
    # 19 of the case, for the person the last 20 of the case.
    assert shape == [
        ("document", "sirene", 1, alone, alone),
        ("document", "sirene", 16, in_case[6], in_case[24]),
        ("person", "sirene", 16, in_case[6], in_case[24]),
        ("document", "duty", 3, in_case[10], in_case[20]),
        ("person", "duty", 4, in_case[5], in_case[20]),
    ]
    assert {hit.earlier_case for hit in hits[1:]} == {f"{case.number} (open)"}
    assert hits[0].earlier_case is None
    day = f"{START:%Y-%m-%d}"
    assert crosscheck.describe(hits[2]) == (
        f"person Jan NOWAK, born 1980-01-01 in 16 messages of case {case.number} (open), "
        f"latest ledger {in_case[-1]}, from NO-SIRENE {day}"
    )
    assert crosscheck.describe(hits[0]) == (
        f"passport AB 123-456 in a G form from NO-SIRENE, {day}, ledger {alone}"
    )
    assert crosscheck.capped(hits) and not crosscheck.capped(hits[:2])
    own, elsewhere = crosscheck.seen_by(hits, "duty")
    assert ([hit.messages for hit in own], elsewhere) == ([3, 4], 3)

    with ledger.transaction() as tx:
        crosscheck_rows.add_in(tx, [(arriving, hits)], START)
    with ledger.reading() as tx:
        read = crosscheck.with_cases(tx, crosscheck_rows.of_message(tx, arriving))
    assert [(hit.messages, hit.earlier_id, hit.earlier_case) for hit in read] == [
        (hit.messages, hit.earlier_id, hit.earlier_case) for hit in hits
    ]
    # A message of the case among the sirene hits purged: each counts one fewer; the duty
    # hits and the one alone stay as they were. Their latest purged: they go.
    with ledger.transaction() as tx:
        assert crosscheck_rows.delete_of_message_in(tx, in_case[12]) == 0
    with ledger.reading() as tx:
        counted = [hit.messages for hit in crosscheck_rows.of_message(tx, arriving)]
    assert counted == [1, 15, 15, 3, 4]
    with ledger.transaction() as tx:
        assert crosscheck_rows.delete_of_message_in(tx, in_case[24]) == 2
    with ledger.reading() as tx:
        left = crosscheck_rows.of_message(tx, arriving)
    assert [(hit.kind, hit.earlier_desk, hit.messages) for hit in left] == [
        ("document", "sirene", 1),
        ("document", "duty", 3),
        ("person", "duty", 4),
    ]


def test_the_hits_of_a_batch_are_read_and_recorded_together(ledger_engine: Engine) -> None:
    ledger = Ledger(ledger_engine, FakeClock(START))
    first = recorded(ledger, 1, [PASSPORT])
    second = recorded(ledger, 2, [PASSPORT, PERSON])
    third = recorded(ledger, 3, [PERSON])
    nothing = recorded(ledger, 4, [replace(PASSPORT, value="ZZ 999")])

    with ledger.reading() as tx:
        found = crosscheck.check_many(tx, [second, third, nothing])
    assert {message: [hit.earlier_id for hit in hits] for message, hits in found.items()} == {
        second: [first],
        third: [second],
    }
    with ledger.transaction() as tx:
        crosscheck_rows.add_in(tx, list(found.items()), START)
    with ledger.reading() as tx:
        assert crosscheck_rows.of_message(tx, second) == found[second]
        assert crosscheck_rows.of_message(tx, third) == found[third]
        assert crosscheck_rows.of_message(tx, nothing) == []


def test_a_purge_counts_down_the_hits_that_gathered_the_message_whatever_its_case_now(
    ledger_engine: Engine,
) -> None:
    """A hit gathering the earlier messages of a case stands for those in the case when it
    was recorded: purging one of them counts it down after the message moved to another case
    or its case was merged; purging a message that joined the case since leaves it as it is."""
    clock = FakeClock(START)
    ledger = Ledger(ledger_engine, clock)
    supervisor = Principal("sam", frozenset({Role.SUPERVISOR}))
    cases = Cases(ledger, AuditLog(ledger_engine, clock))
    first, joined_later, moved, merged, latest = (
        recorded(ledger, number, [PASSPORT]) for number in range(1, 6)
    )
    case = cases.open_around(supervisor, ledger.get(first), "request 17/2026")
    for message in (moved, merged, latest):
        cases.link(supervisor, case.number, ledger.get(message), "the same passport")
    other = cases.open_around(
        supervisor, ledger.get(recorded(ledger, 6, [replace(PASSPORT, value="ZZ 999")])), "other"
    )
    arriving = recorded(ledger, 7, [PASSPORT])
    with ledger.transaction() as tx:
        hits = crosscheck.check(tx, arriving)
        crosscheck_rows.add_in(tx, [(arriving, hits)], START)
    assert [(hit.earlier_id, hit.messages) for hit in hits] == [(latest, 4), (joined_later, 1)]

    def counted() -> list[tuple[int, int]]:
        with ledger.reading() as tx:
            return [
                (hit.earlier_id, hit.messages) for hit in crosscheck_rows.of_message(tx, arriving)
            ]

    def purged(message: int) -> int:
        with ledger.transaction() as tx:
            return crosscheck_rows.delete_of_message_in(tx, message)

    # In no case when the hit was recorded: its own hit goes, the case's keeps its count.
    cases.link(supervisor, case.number, ledger.get(joined_later), "found since")
    assert purged(joined_later) == 1
    assert counted() == [(latest, 4)]
    # Moved to another case since: the hit that gathered it counts one fewer.
    cases.unlink(supervisor, case.number, ledger.get(moved), "not this case")
    cases.link(supervisor, other.number, ledger.get(moved), "that case")
    assert purged(moved) == 0
    assert counted() == [(latest, 3)]
    # Its case merged into another since: the same.
    cases.merge(supervisor, case.number, other.number, "one inquiry")
    assert purged(merged) == 0
    assert counted() == [(latest, 2)]
    assert purged(latest) == 1
    assert counted() == []


def test_persons_of_one_name_born_on_different_days_are_gathered_apart(
    ledger_engine: Engine,
) -> None:
    """Two persons of one name in one case, born on different days, are two hits, each
    counting only the messages of its own date of birth; purging the one of the other date
    leaves the first hit's count as it is."""
    clock = FakeClock(START)
    ledger = Ledger(ledger_engine, clock)
    supervisor = Principal("sam", frozenset({Role.SUPERVISOR}))
    cases = Cases(ledger, AuditLog(ledger_engine, clock))
    later_born = replace(PERSON, born="1990-05-05")
    first, other, latest = (
        recorded(ledger, number, [person])
        for number, person in ((1, PERSON), (2, later_born), (3, PERSON))
    )
    case = cases.open_around(supervisor, ledger.get(first), "request 18/2026")
    for message in (other, latest):
        cases.link(supervisor, case.number, ledger.get(message), "the same name")
    arriving = recorded(ledger, 4, [PERSON, later_born])
    with ledger.transaction() as tx:
        hits = crosscheck.check(tx, arriving)
        crosscheck_rows.add_in(tx, [(arriving, hits)], START)
    assert sorted((hit.earlier_id, hit.born, hit.messages) for hit in hits) == [
        (other, "1990-05-05", 1),
        (latest, "1980-01-01", 2),
    ]
    with ledger.transaction() as tx:
        assert crosscheck_rows.delete_of_message_in(tx, other) == 1
    with ledger.reading() as tx:
        left = crosscheck_rows.of_message(tx, arriving)
    assert [(hit.earlier_id, hit.messages) for hit in left] == [(latest, 2)]
