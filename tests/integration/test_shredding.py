"""Shredding at the end of retention, end to end: a real gateway on port 0 takes a form about a
person with an attachment (real STARTTLS, real gpg), hands it to its desk and indexes it; once its
retention has passed and nothing is owed on it, the purge shreds it. Then every file under the
gateway's folders (spool, desks, the SQLite file and its log) is read as bytes, MIME parts
decoded, and neither the person's name (as written, folded, transliterated, as the index keeps
it) nor the document number is found; on PostgreSQL every table is searched for them. The ledger
keeps a stub with the digests of what was deleted; the audit chain verifies and says so."""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpgkit
import pytest
from dbkit import postgres_schema
from integration.inboundkit import FORM, World, running_gateway, send, settle
from sqlalchemy import Engine, select, text

from gateway.access.roles import Principal, Role
from gateway.core import config as configuration
from gateway.crypto.pgpmime import Attachment
from gateway.search import folding
from gateway.service.cases import Cases
from gateway.service.server import Gateway
from gateway.store import case_rows, drafts, search_ddl, search_rows, shred_rows
from gateway.store.ledger import (
    metadata,
    search_entries,
    search_entry_parts,
    search_parts,
)
from gateway.store.states import DeadlineState
from gateway.tracking.copies import Copies, remove
from gateway.tracking.retention import Purger, PurgeResult

RETENTION = '\n[[retention]]\nform = "G"\nkeep = "P30D"\n'
REFERENCE = "NO-2026-000991"
OTHER = "NO-2026-000992"
FAMILY, GIVEN = "Brzęczyszczykiewicz", "Grzegorz"
ORIGINAL = "Бжэнчышчыкевіч Гжэгаж"
DOCUMENT = "ZQ 447-1093"
BORN = "1931-07-13"
SCAN = Attachment(
    "scan.txt",
    "text/plain",
    f"Passport {DOCUMENT}\r\n{FAMILY.upper()} {GIVEN}, born {BORN}\r\n".encode(),
)
LATER = timedelta(days=31)
SUPERVISOR = Principal("sam", frozenset({Role.SUPERVISOR}))


def person_form() -> bytes:
    """The G sample about our person, listing the scan as its attachment."""
    form = (
        FORM.replace(b"NO-2026-000123", REFERENCE.encode())
        .replace(
            b"<FamilyName>EXAMPLE</FamilyName>\n        <GivenName>Test</GivenName>",
            f"<FamilyName>{FAMILY}</FamilyName>\n        <GivenName>{GIVEN}</GivenName>\n"
            f"        <OriginalScriptName>{ORIGINAL}</OriginalScriptName>".encode(),
        )
        .replace(
            b"<DateOfBirth>1980-01-01</DateOfBirth>", f"<DateOfBirth>{BORN}</DateOfBirth>".encode()
        )
        .replace(b"<Number>X0000000</Number>", f"<Number>{DOCUMENT}</Number>".encode())
    )
    listing = (
        f"<Attachment><FileName>{SCAN.filename}</FileName><MediaType>{SCAN.media_type}"
        f"</MediaType><SHA256>{SCAN.sha256}</SHA256></Attachment>"
    )
    return form.replace(b"</FormG>", listing.encode() + b"</FormG>")


def entity(form: bytes, attachment: Attachment) -> bytes:
    """The form and the file, both as 8-bit text parts, as a simple sender writes them."""
    boundary = b"inner-" + gpgkit.BOUNDARY.encode()
    return (
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
        b"--" + boundary + b"\r\n"
        b"Content-Type: application/xml; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b'Content-Disposition: attachment; filename="form.xml"\r\n\r\n'
        + form.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        + b"\r\n--"
        + boundary
        + b"\r\n"
        b"Content-Type: " + attachment.media_type.encode() + b"; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b'Content-Disposition: attachment; filename="' + attachment.filename.encode() + b'"\r\n'
        b"\r\n" + attachment.data + b"\r\n"
        b"--" + boundary + b"--\r\n"
    )


def sealed(world: World, content: bytes) -> bytes:
    fingerprint = configuration.load(world.config_path).openpgp.fingerprint
    assert fingerprint is not None
    ciphertext = gpgkit.sign_encrypt(world.no.home, [world.no.fingerprint], [fingerprint], content)
    return gpgkit.pgp_mime(ciphertext, world.no.address, "sirene@ro.example", "SIRENE G")


def retaining_gateway(
    world: World, folder: Path, database_url: str | None = None
) -> contextlib.AbstractAsyncContextManager[Gateway]:
    """A gateway whose G forms are kept 30 days."""
    return running_gateway(world, folder, database_url=database_url, extra=RETENTION)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    with postgres_schema() as url:
        yield url


def purger(gateway: Gateway) -> Purger:
    return Purger(
        config=gateway.config,
        ledger=gateway.ledger,
        audit=gateway.audit,
        inbound=gateway.inbound,
        outbound=gateway.outbound,
    )


def variants(values: set[str]) -> set[bytes]:
    """Each value as UTF-8, in its own case, upper, lower and casefolded."""
    return {
        form.encode("utf-8")
        for value in values
        for form in (value, value.upper(), value.lower(), value.casefold())
    }


def readable(data: bytes) -> list[bytes]:
    """The bytes, and when they hold a MIME message (a spooled item after its metadata line,
    a desk copy), each part's content decoded (base64, quoted-printable)."""
    views = [data]
    for start in (0, data.find(b"\n") + 1):
        message = email.message_from_bytes(data[start:], policy=email.policy.default)
        for part in message.walk():
            if part.is_multipart():
                continue
            with contextlib.suppress(Exception):
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes) and payload:
                    views.append(payload)
    return views


def holding(root: Path, needles: set[bytes]) -> dict[str, set[bytes]]:
    """Every file under ``root`` that holds one of the needles, with those it holds."""
    found: dict[str, set[bytes]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name == "gateway.toml":
            continue
        views = readable(path.read_bytes())
        held = {needle for needle in needles if any(needle in view for view in views)}
        if held:
            found[str(path.relative_to(root))] = held
    return found


def in_tables(engine: Engine, needles: set[bytes]) -> dict[str, set[bytes]]:
    """Every table of the ledger whose rows, as text, hold one of the needles."""
    found: dict[str, set[bytes]] = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            rows = connection.execute(select(table)).all()
            dump = "\n".join(" ".join(str(value) for value in row) for row in rows).encode()
            held = {needle for needle in needles if needle in dump}
            if held:
                found[table.name] = held
    return found


def index_values(gateway: Gateway, ledger_id: int) -> set[str]:
    """What the index keeps of the message's person and document: shown, folded, key, the
    name parts and their consonants (those of five characters or more: shorter ones are found
    in any file)."""
    with gateway.engine.connect() as connection:
        entries = connection.execute(
            select(search_entries).where(
                search_entries.c.message_id == ledger_id,
                search_entries.c.kind.in_(["person", "document"]),
            )
        ).all()
        parts = connection.execute(
            select(search_parts.c.part, search_parts.c.sound)
            .join(search_entry_parts, search_entry_parts.c.part_id == search_parts.c.id)
            .where(search_entry_parts.c.entry_id.in_([row.id for row in entries]))
        ).all()
    values = {value for row in entries for value in (row.shown, row.folded, row.key)}
    values |= {value for row in parts for value in row}
    return {value for value in values if len(value) >= 5}


def grams_of(gateway: Gateway, ledger_id: int) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
    """PostgreSQL: the (trigram, part id) rows its trigram table holds for the name parts of
    the message's entries, and those it should hold (every three letters in a row of each
    part still held)."""
    with gateway.engine.connect() as connection:
        parts = connection.execute(
            select(search_parts.c.id, search_parts.c.part)
            .join(search_entry_parts, search_entry_parts.c.part_id == search_parts.c.id)
            .join(search_entries, search_entries.c.id == search_entry_parts.c.entry_id)
            .where(search_entries.c.message_id == ledger_id)
        ).all()
        ids = sorted({row[0] for row in parts})
        rows = connection.execute(
            text(f"SELECT gram, part_id FROM {search_ddl.PARTS_GRAMS} WHERE part_id = ANY(:ids)"),  # noqa: S608
            {"ids": ids},
        )
        held = {(row[0], row[1]) for row in rows}
    should = {
        (part[at : at + 3], part_id) for part_id, part in parts for at in range(len(part) - 2)
    }
    return held, should


def add_others(gateway: Gateway, ledger_id: int, count: int) -> None:
    """Index entries of another message, so that the person's rows share pages with others
    and the database's pages split and move after they were written."""
    where = search_rows.Where(ledger_id, "inbound", "NO-SIRENE", "duty", "G")
    rows = [
        search_rows.IndexRow(
            "person",
            "name",
            f"Person{number:04d} Other",
            f"person{number:04d} other",
            f"other person{number:04d}",
            None,
            None,
            ((f"PRSN{number:04d}", f"PRSN{number:04d}"), ("OTHR", "THR")),
        )
        for number in range(count)
    ]
    with gateway.ledger.transaction() as tx:
        search_rows.add_in(tx, where, rows, datetime.now(UTC))


async def test_shredding_removes_every_copy_and_keeps_a_stub(
    world: World, tmp_path: Path, database: str | None
) -> None:
    async with retaining_gateway(world, tmp_path, database) as gateway:
        code, reply = await send(world, gateway, sealed(world, entity(person_form(), SCAN)))
        assert code == 250, reply
        other_form = FORM.replace(b"NO-2026-000123", OTHER.encode())
        assert (await send(world, gateway, sealed(world, gpgkit.entity(other_form))))[0] == 250
        await settle(gateway)
        row = gateway.ledger.find("inbound", "NO-SIRENE", REFERENCE)
        other = gateway.ledger.find("inbound", "NO-SIRENE", OTHER)
        assert row is not None and other is not None and row.desk == "duty"
        add_others(gateway, other.id, 400)
        with gateway.ledger.transaction() as tx:  # a handler's reply begun and kept
            drafts.save(
                tx,
                draft_id=None,
                user_name="ana",
                desk="duty",
                form="M",
                partner="NO-SIRENE",
                reply_to=row.id,
                values={"Subject/FamilyName": FAMILY, "Subject/Document": DOCUMENT},
                now=datetime.now(UTC),
            )
        needles = variants({FAMILY, f"{GIVEN} {FAMILY}", ORIGINAL, DOCUMENT, "ZQ4471093", BORN})
        needles |= variants(index_values(gateway, row.id))
        name, number, scanned = FAMILY.encode(), DOCUMENT.encode(), SCAN.data.split(b"\r\n")[1]
        needles.add(scanned)  # the attachment's line
        spooled = gateway.inbound.get(row.spool_key or "")
        [desk_copy] = [
            path
            for folder in ("new", "cur")
            for path in (gateway.config.desk("duty").maildir / folder).iterdir()
            if path.name.startswith(f"{row.id}.")
        ]
        before = {
            "spool": spooled.path.read_bytes(),
            "desk": desk_copy.read_bytes(),
        }
        # The test can fail: every place holds the person before the purge.
        found = holding(tmp_path, needles)
        spool_name = str(spooled.path.relative_to(tmp_path))
        assert {name, number, scanned} <= found[spool_name]
        assert {name, number, scanned} <= found[str(desk_copy.relative_to(tmp_path))]
        if database is None:
            in_file = found.get("spool/ledger.db", set()) | found.get("spool/ledger.db-wal", set())
            assert {name, number} <= in_file
        assert {"search_entries", "search_parts", "drafts"} <= set(
            in_tables(gateway.engine, needles)
        )
        if database is not None:  # PostgreSQL's trigram rows of the person's name parts
            held, should = grams_of(gateway, row.id)
            assert held == should and len(held) > 10
            gone_ids = {part_id for _, part_id in held}

        shredder = purger(gateway)
        now = datetime.now(UTC) + LATER
        # Both name the same SIS alert: one case, whose messages are not due while it is open.
        with gateway.ledger.reading() as tx:
            case_id = case_rows.case_of_message(tx, row.id)
            assert case_id is not None and case_rows.case_of_message(tx, other.id) == case_id
            case = case_rows.get(tx, case_id)
        assert case is not None
        assert shredder.purge(now) == PurgeResult()
        Cases(gateway.ledger, gateway.audit).close(SUPERVISOR, case.number, "answered")
        # Their reply deadlines are still open: nothing is shredded.
        assert shredder.purge(now) == PurgeResult(waiting=2)
        assert spooled.path.exists() and desk_copy.exists()
        with gateway.ledger.transaction() as tx:
            assert gateway.ledger.close_deadline_in(
                tx, row.id, "reply", DeadlineState.CLOSED, "handled"
            )

        done = shredder.purge(now)

        assert done == PurgeResult(
            messages=1,
            spool_items=1,
            desk_copies=1,
            index_entries=done.index_entries,
            drafts=1,
            waiting=1,  # the other, whose deadline is open
        )
        assert done.index_entries >= 3
        assert done.log_cleared == (database is None)
        left = holding(tmp_path, needles)
        assert left == {}, f"still held after shredding: {left}"
        assert in_tables(gateway.engine, needles) == {}
        if database is not None:  # the orphaned parts' trigram rows went with them
            with gateway.engine.connect() as connection:
                assert not connection.execute(
                    text(f"SELECT 1 FROM {search_ddl.PARTS_GRAMS} WHERE part_id = ANY(:ids)"),  # noqa: S608
                    {"ids": sorted(gone_ids)},
                ).all()
            assert grams_of(gateway, other.id)[0] == grams_of(gateway, other.id)[1]

        stub = gateway.ledger.get(row.id)
        assert stub.shredded_at == now
        assert (stub.content_sha256, stub.raw_sha256) == (row.content_sha256, row.raw_sha256)
        with gateway.ledger.reading() as tx:
            kept = shred_rows.copies_of(tx, row.id)
        assert {(copy.place, copy.sha256, copy.size) for copy in kept} == {
            ("inbound-spool", hashlib.sha256(before["spool"]).hexdigest(), len(before["spool"])),
            ("desk", hashlib.sha256(before["desk"]).hexdigest(), len(before["desk"])),
        }
        assert gateway.audit.verify() == []
        [line] = [
            entry
            for entry in gateway.audit.entries()
            if entry.kind == "retention.purged" and entry.reference == REFERENCE
        ]
        assert line.digest == shred_rows.manifest_digest([row.content_sha256, row.raw_sha256], kept)
        assert "1 spooled item(s), 1 desk copy(ies)" in line.reason
        assert "1 draft(s)" in line.reason
        assert gateway.ledger.events_of(row.id)[-1][1] == "purged"
        assert folding.skeleton.cache_info().currsize == 0  # no name part kept in memory

        # The other message is all there; a second run changes nothing.
        assert gateway.inbound.exists(other.spool_key or "")
        with gateway.ledger.reading() as tx:
            assert search_rows.count_of_message(tx, other.id) > 400
        assert shredder.purge(now + timedelta(days=1)) == PurgeResult(waiting=1)
        assert gateway.audit.verify() == []


async def test_a_shredding_stopped_half_way_is_finished_by_the_next_run(
    world: World, tmp_path: Path
) -> None:
    async with retaining_gateway(world, tmp_path) as gateway:
        form = FORM.replace(b"NO-2026-000123", REFERENCE.encode())
        assert (await send(world, gateway, sealed(world, gpgkit.entity(form))))[0] == 250
        await settle(gateway)
        row = gateway.ledger.find("inbound", "NO-SIRENE", REFERENCE)
        assert row is not None
        with gateway.ledger.transaction() as tx:
            gateway.ledger.close_deadline_in(tx, row.id, "reply", DeadlineState.CLOSED, "done")
        now = datetime.now(UTC) + LATER
        # A run that kept the digests and deleted the spooled item, then stopped.
        found = Copies(
            gateway.config, {"inbound": gateway.inbound, "outbound": gateway.outbound}
        ).of(
            ledger_id=row.id, direction="inbound", reference=row.reference, spool_key=row.spool_key
        )
        assert [item.place for item in found] == ["inbound-spool", "desk"]
        measured = [copy for item in found if (copy := item.measured()) is not None]
        with gateway.ledger.transaction() as tx:
            shred_rows.record_in(tx, row.id, measured, now)
        assert remove(found[:1]) == 1
        assert gateway.ledger.get(row.id).shredded_at is None

        done = purger(gateway).purge(now)

        assert (done.messages, done.spool_items, done.desk_copies) == (1, 0, 1)
        with gateway.ledger.reading() as tx:
            assert shred_rows.copies_of(tx, row.id) == sorted(measured)
            assert search_rows.count_of_message(tx, row.id) == 0
        assert not found[1].path.exists()
        assert gateway.ledger.get(row.id).shredded_at == now
        assert [e.kind for e in gateway.audit.entries()].count("retention.purged") == 1
        assert "1 spooled item(s), 1 desk copy(ies)" in gateway.ledger.events_of(row.id)[-1][2]
        assert gateway.audit.verify() == []
