"""Shredding when the desks are in Dovecot ([desk_delivery] method = "lmtp"): the copy LMTP
delivered and the one a handler filed in a folder of her own are measured, kept as digests and
expunged over IMAP; afterwards no file of Dovecot's mail folder holds the person."""

from __future__ import annotations

import contextlib
import imaplib
from datetime import UTC, datetime
from pathlib import Path

from dovecotkit import DESK_PASSWORD, Dovecot, running_dovecot
from integration.inboundkit import World, running_gateway, send, settle
from integration.test_shredding import (
    DOCUMENT,
    FAMILY,
    GIVEN,
    LATER,
    REFERENCE,
    RETENTION,
    SCAN,
    entity,
    holding,
    person_form,
    purger,
    sealed,
    variants,
)

from gateway.service.server import Gateway
from gateway.store import shred_rows
from gateway.store.states import DeadlineState

DOMAIN = "gateway.ro.example"


def dovecot_gateway(
    world: World, folder: Path, dovecot: Dovecot
) -> contextlib.AbstractAsyncContextManager[Gateway]:
    """A gateway whose G forms are kept 30 days and whose desks are in ``dovecot``."""
    folder.mkdir(exist_ok=True)
    return running_gateway(world, folder, extra=RETENTION + dovecot.desk_config())


def file_away(dovecot: Dovecot, mailbox: str, message_id: str, folder: str) -> None:
    """A handler copies the message into a folder of her own (the INBOX keeps it too)."""
    handler = imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=10)
    try:
        handler.login(mailbox, DESK_PASSWORD)
        handler.create(folder)
        handler.select("INBOX")
        _, found = handler.search(None, "HEADER", "Message-ID", f'"{message_id}"')
        assert len(found[0].split()) == 1, found
        assert handler.copy(found[0], folder)[0] == "OK"
    finally:
        handler.logout()


def in_folder(dovecot: Dovecot, mailbox: str, folder: str) -> int:
    handler = imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=10)
    try:
        handler.login(mailbox, DESK_PASSWORD)
        typ, data = handler.select(folder, readonly=True)
        assert typ == "OK" and data[0] is not None, data
        return int(data[0])
    finally:
        handler.logout()


async def test_shredding_expunges_every_dovecot_copy_and_keeps_their_digests(
    world: World, tmp_path: Path
) -> None:
    with running_dovecot(("sirene", "duty")) as dovecot:
        async with dovecot_gateway(world, tmp_path / "node", dovecot) as gateway:
            code, reply = await send(world, gateway, sealed(world, entity(person_form(), SCAN)))
            assert code == 250, reply
            await settle(gateway)
            row = gateway.ledger.find("inbound", "NO-SIRENE", REFERENCE)
            assert row is not None and row.desk == "duty"
            message_id = f"<desk.{row.id}.{REFERENCE}@{DOMAIN}>"
            assert dovecot.message_ids("duty") == {message_id: 1}
            file_away(dovecot, "duty", message_id, "Case files")
            needles = variants({FAMILY, f"{GIVEN} {FAMILY}", DOCUMENT})
            mail = dovecot.root / "mail"
            # The test can fail: both copies hold the person before the purge.
            assert len(holding(mail, needles)) == 2
            shredder = purger(gateway)
            now = datetime.now(UTC) + LATER
            with gateway.ledger.transaction() as tx:
                gateway.ledger.close_deadline_in(
                    tx, row.id, "reply", DeadlineState.CLOSED, "handled"
                )
            assert shredder.purge(now, dry_run=True).desk_copies == 2
            assert dovecot.message_ids("duty") == {message_id: 1}  # a dry run changes nothing

            done = shredder.purge(now)

            assert (done.messages, done.desk_copies, done.failed) == (1, 2, 0)
            assert dovecot.message_ids("duty") == {}
            assert in_folder(dovecot, "duty", "Case files") == 0
            assert holding(mail, needles) == {}
            with gateway.ledger.reading() as tx:
                kept = [c for c in shred_rows.copies_of(tx, row.id) if c.place == "dovecot"]
            assert len(kept) == 2 and all(c.name.startswith("duty folder ") for c in kept)
            assert all("Case" not in c.name for c in kept)  # a folder's name is a handler's
            assert "2 desk copy(ies)" in gateway.ledger.events_of(row.id)[-1][2]
            assert shredder.purge(now) == type(done)()  # done: nothing left to do


async def test_dovecot_out_of_reach_leaves_the_message_for_the_next_run(
    world: World, tmp_path: Path
) -> None:
    with running_dovecot(("sirene", "duty")) as dovecot:
        async with dovecot_gateway(world, tmp_path / "node", dovecot) as gateway:
            assert (await send(world, gateway, sealed(world, entity(person_form(), SCAN))))[
                0
            ] == 250
            await settle(gateway)
            row = gateway.ledger.find("inbound", "NO-SIRENE", REFERENCE)
            assert row is not None
            with gateway.ledger.transaction() as tx:
                gateway.ledger.close_deadline_in(
                    tx, row.id, "reply", DeadlineState.CLOSED, "handled"
                )
            spooled = gateway.inbound.get(row.spool_key or "")
            dovecot.process.terminate()
            dovecot.process.wait(timeout=30)

            done = purger(gateway).purge(datetime.now(UTC) + LATER)

            assert (done.messages, done.failed) == (0, 1)
            assert spooled.path.exists()  # nothing deleted while a copy could not be reached
            assert gateway.ledger.get(row.id).shredded_at is None
