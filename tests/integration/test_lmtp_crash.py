"""`gateway serve` killed (SIGKILL) after its desk copy was delivered (Dovecot's 250 to LMTP
DATA, or the Maildir file renamed into new/) and before the ledger recorded it, then restarted:
the desk holds the copy exactly once and the ledger says delivered.

The crash point is ``GATEWAY_CRASH_AT=handoff.desk-delivered`` (gateway/core/crashpoints.py). With
LMTP the restarted hand-off finds the copy over IMAP by its Message-ID and does not send it
again; with a Maildir the file's name, fixed by the ledger id, does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import time
from pathlib import Path

import pytest
from dbkit import postgres_schema
from dovecotkit import Dovecot, running_dovecot
from integration.inboundkit import FORM, World, gateway_config, message
from integration.servekit import Served, smtp_send
from sqlalchemy import select

from gateway.core import config as configuration
from gateway.core import crashpoints
from gateway.store.ledger import make_engine, messages

pytestmark = pytest.mark.slow

REFERENCE = "NO-2026-000701"
DOMAIN = "gateway.ro.example"


def ledger_state(config_path: Path) -> tuple[int, str]:
    engine = make_engine(configuration.load(config_path).database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                select(messages.c.id, messages.c.state).where(
                    messages.c.direction == "inbound", messages.c.reference == REFERENCE
                )
            ).one()
    finally:
        engine.dispose()
    return int(row.id), str(row.state)


def maildir_copies(folder: Path, desk: str) -> list[str]:
    return sorted(
        path.name
        for sub in ("new", "cur")
        if (folder / "desks" / desk / sub).is_dir()
        for path in (folder / "desks" / desk / sub).iterdir()
        if not path.name.startswith("notice.")
    )


@pytest.mark.parametrize(
    ("method", "ledger"), [("lmtp", "sqlite"), ("lmtp", "postgresql"), ("maildir", "sqlite")]
)
async def test_killed_between_the_desk_copy_and_its_record_leaves_one_copy(
    world: World, tmp_path: Path, method: str, ledger: str
) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_schema()) if ledger == "postgresql" else None
        dovecot = stack.enter_context(running_dovecot(("sirene", "duty")))
        await one_kill(world, tmp_path, method, dovecot, url)


async def one_kill(
    world: World, tmp_path: Path, method: str, dovecot: Dovecot, url: str | None
) -> None:
    """Start, send, be killed at the crash point, restart: one copy, recorded delivered."""
    path = gateway_config(world, tmp_path, database_url=url)
    extra = dovecot.desk_config() if method == "lmtp" else ""
    path.write_text(path.read_text() + extra + '\n[metrics]\nlisten = ""\n')
    served = Served(path, tmp_path / "logs")
    context = ssl.create_default_context(cafile=str(world.tls_cert))
    raw = message(
        world,
        FORM.replace(b"NO-2026-000123", REFERENCE.encode()),
    )

    port = await served.start(env={crashpoints.ENV_VAR: crashpoints.DESK_DELIVERED})
    code, _ = await smtp_send(port, raw, context)
    assert code == 250
    assert await served.died() == -signal.SIGKILL
    ledger_id, state = ledger_state(path)
    assert state == "received"  # killed before the ledger recorded the delivery
    wanted = f"<desk.{ledger_id}.{REFERENCE}@{DOMAIN}>"
    assert copies(method, dovecot, tmp_path, wanted) == 1  # ... and after the copy was made

    await served.start()  # no crash point: the hand-off takes the item again
    try:
        deadline = time.monotonic() + 60
        while ledger_state(path)[1] != "delivered":
            assert time.monotonic() < deadline, served.log_tail()
            await asyncio.sleep(0.1)
    finally:
        assert await served.terminate() == 0
    assert copies(method, dovecot, tmp_path, wanted) == 1
    if method == "lmtp":
        assert maildir_copies(tmp_path, "duty") == []
        assert (
            "is on its desk already: not sent again"
            in (tmp_path / "logs" / "serve-02.log").read_text()
        )


def copies(method: str, dovecot: Dovecot, folder: Path, wanted: str) -> int:
    """The copies of the message on the duty desk (the sample form is urgent)."""
    if method == "lmtp":
        found = dovecot.message_ids("duty")
        assert set(found) <= {wanted}, found
        return found[wanted]
    return len(maildir_copies(folder, "duty"))
