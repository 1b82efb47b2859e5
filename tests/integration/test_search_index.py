"""The search index written at acceptance, end to end: a real gateway on port 0, real STARTTLS,
real gpg, SQLite and PostgreSQL; a refused message indexes nothing; desks see their own entries;
`gateway index rebuild` makes the index again from the stored messages."""

from __future__ import annotations

import json
from datetime import date

import pytest
from integration.inboundkit import FORM, World, assert_nothing_stored, message, send, settle
from sqlalchemy import func, select, text

from gateway.cli.main import main
from gateway.crypto import pgpmime
from gateway.forms.entities import Entity
from gateway.search import index, matching
from gateway.service import searching
from gateway.service.server import Gateway
from gateway.service.services import Services
from gateway.store import search_ddl, search_rows
from gateway.store.ledger import (
    MessageRow,
    case_references,
    search_entries,
    search_entry_parts,
    search_parts,
)
from gateway.store.search_rows import Where
from gateway.store.unit import Transaction

REFERENCE = "NO-2026-000777"
# The G sample about another person: a Latin and an original-script name, a document number
# written with spaces and a dash, a phone number and an address in the text.
IVANOV = (
    FORM.replace(b"NO-2026-000123", REFERENCE.encode())
    .replace(
        b"<FamilyName>EXAMPLE</FamilyName>\n        <GivenName>Test</GivenName>",
        "<FamilyName>IVANOV</FamilyName>\n        <GivenName>Ivan</GivenName>\n"
        "        <OriginalScriptName>Иванов Иван</OriginalScriptName>".encode(),
    )
    .replace(b"<Number>X0000000</Number>", b"<Number>AB 123-456</Number>")
    .replace(
        b"held in custody.",
        b"held in custody. He called +47 22 00 00 00 and wrote to ivan.ivanov@example.org.",
    )
)


def entries(gateway: Gateway) -> list[tuple[str, str, str, str | None]]:
    with gateway.engine.connect() as connection:
        rows = connection.execute(
            select(
                search_entries.c.kind,
                search_entries.c.role,
                search_entries.c.shown,
                search_entries.c.desk,
            ).order_by(search_entries.c.id)
        ).all()
    return [(row.kind, row.role, row.shown, row.desk) for row in rows]


def search(gateway: Gateway, query: matching.Query, desks: set[str] | None) -> list[str]:
    with gateway.ledger.reading() as tx:
        found = matching.search(tx, query, desks=desks)
    return [hit.candidate.row.shown for hit in found.hits]


async def test_an_accepted_message_is_indexed_in_its_transaction(
    world: World, gateway: Gateway
) -> None:
    code, text = await send(world, gateway, message(world, IVANOV))
    assert code == 250, text
    row = gateway.ledger.find("inbound", "NO-SIRENE", REFERENCE)
    assert row is not None
    # Written before the 250 (the test reads before the hand-off has run).
    assert entries(gateway) == [
        ("person", "name", "Ivan IVANOV", "duty"),
        ("person", "original-script", "Иванов Иван", "duty"),
        ("document", "passport", "AB 123-456", "duty"),
        ("reference", "sis-alert", "RO0000000000123456", "duty"),
        ("email", "address", "ivan.ivanov@example.org", "duty"),
        ("phone", "number", "+47 22 00 00 00", "duty"),
    ]
    iwanow = matching.Query("person", "Iwanow Iwan", born=date(1980, 1, 1))
    assert search(gateway, iwanow, {"duty"}) == ["Ivan IVANOV", "Иванов Иван"]
    assert search(gateway, iwanow, {"sirene"}) == []  # desk isolation
    assert search(gateway, matching.Query("document", "ab123-45b"), {"duty"}) == []
    assert search(gateway, matching.Query("document", "ab123-45b", threshold=85), None) == [
        "AB 123-456"
    ]
    assert search(gateway, matching.Query("document", "AB-I23 456"), {"duty"}) == ["AB 123-456"]
    assert search(gateway, matching.Query("phone", "+47 2200 0000"), None) == ["+47 22 00 00 00"]
    with gateway.ledger.reading() as tx:
        found = matching.search(tx, matching.Query("person", "Иванов Иван"), desks={"duty"})
    best = found.hits[0]
    assert best.candidate.where.message_id == row.id
    assert best.candidate.where.partner == "NO-SIRENE"
    assert best.score == 100.0
    assert "transliterated to Latin letters" in best.why

    # The same message again is a duplicate: nothing indexed twice.
    assert (await send(world, gateway, message(world, IVANOV)))[0] == 250
    assert len(entries(gateway)) == 6


async def test_a_refused_message_indexes_nothing(world: World, gateway: Gateway) -> None:
    invalid = IVANOV.replace(b"<Sex>M</Sex>", b"")
    code, _ = await send(world, gateway, message(world, invalid))
    assert code == 550
    assert_nothing_stored(gateway)
    assert entries(gateway) == []


async def test_the_index_is_rebuilt_from_the_stored_messages(
    world: World, gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await send(world, gateway, message(world, IVANOV)))[0] == 250
    assert (await send(world, gateway, message(world)))[0] == 250
    await settle(gateway)
    before = entries(gateway)
    with gateway.engine.connect() as connection:  # the grouping's copy of the references
        grouping_rows = set(connection.execute(select(case_references)).all())
    assert [(row.role, row.state) for row in grouping_rows] == [("sis-alert", "open")] * 2
    with gateway.engine.begin() as connection:
        for table in (search_entry_parts, search_parts, search_entries, case_references):  # lost
            connection.execute(table.delete())
    assert search(gateway, matching.Query("person", "Ivanov Ivan"), None) == []

    source = str(gateway.config.source)
    assert main(["-c", source, "index", "rebuild", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)

    assert done == {"messages": 2, "entries": 9, "not_kept": 2, "unreadable": 0}  # 2 receipts
    assert sorted(entries(gateway)) == sorted(before)
    assert search(gateway, matching.Query("person", "Ivanov Ivan"), None) == [
        "Ivan IVANOV",
        "Иванов Иван",
    ]
    with gateway.engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(search_entries)).scalar()
    assert count == 9
    with gateway.engine.connect() as connection:  # made again from the index and the cases
        assert set(connection.execute(select(case_references)).all()) == grouping_rows
    if gateway.engine.dialect.name == "sqlite":  # each trigram's parts counted again
        with gateway.engine.connect() as connection:
            parts = [row[0] for row in connection.execute(select(search_parts.c.part))]
            counted = text(f"SELECT gram, parts FROM {search_ddl.GRAM_COUNTS}")  # noqa: S608
            counts = {str(row[0]): int(row[1]) for row in connection.execute(counted)}
        grams = [{part[at : at + 3] for at in range(len(part) - 2)} for part in parts]
        every: set[str] = set().union(*grams)
        assert counts == {gram: sum(gram in held for held in grams) for gram in every}
        assert counts["ano"] == 1  # ivanov's skeleton, ivanof
    if gateway.engine.dialect.name == "postgresql":  # vacuumed: its visibility map made again
        with gateway.engine.connect() as connection:
            vacuumed = {
                str(row[0]): int(row[1])
                for row in connection.execute(
                    text(
                        "SELECT relname, vacuum_count FROM pg_stat_user_tables"
                        " WHERE relname = ANY(:names) AND schemaname = current_schema()"
                    ),
                    {"names": list(search_rows.VACUUMED)},
                )
            }
        assert vacuumed == dict.fromkeys(search_rows.VACUUMED, 1)


async def test_a_message_taken_in_while_the_index_is_rebuilt_is_indexed_once(
    world: World, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second message's acceptance indexes it after the rebuild emptied the index and
    before the rebuild reaches it (as the intake does beside `gateway index rebuild`): the
    rebuild leaves its entries as they are instead of writing them a second time."""
    assert (await send(world, gateway, message(world, IVANOV)))[0] == 250
    assert (await send(world, gateway, message(world)))[0] == 250
    await settle(gateway)
    before = entries(gateway)
    services = gateway.services
    with gateway.ledger.reading() as tx:
        rows = search_rows.messages_after(tx, 0, 10)
    received = [row for row in rows if row.direction == "inbound" and row.spool_key]
    second = received[-1]
    read = search_rows.messages_after
    arrived: list[int] = []

    def meanwhile(tx: Transaction, after: int, limit: int) -> list[MessageRow]:
        if not arrived:  # the index was emptied: the second message is indexed meanwhile
            where = Where(second.id, "inbound", second.partner, second.desk, second.form)
            with services.ledger.transaction() as own:
                found = entities_of(services, second)
                arrived.append(index.write_in(own, where, found, second.created_at))
        return read(tx, after, limit)

    monkeypatch.setattr(search_rows, "messages_after", meanwhile)
    done = searching.rebuild(services)

    assert arrived and arrived[0] > 0
    assert (done.messages, done.entries) == (2, len(before) - arrived[0])
    assert sorted(entries(gateway)) == sorted(before)


def entities_of(services: Services, row: MessageRow) -> list[Entity]:
    """What the message's form holds, read from its stored copy as its acceptance read it."""
    assert row.spool_key is not None
    payload = pgpmime.parse_entity(services.bodies.read(row.id, row.spool_key).entity)
    return services.validator.validate(payload.form).entities()
