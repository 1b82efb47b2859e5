"""Two `gateway serve` on one PostgreSQL delivering the desks' copies by LMTP to one real
Dovecot (tests/dovecotkit.py): node A dies in the middle of a batch, node B finishes its work,
and every desk holds each message that got a 250 exactly once, counted over IMAP by Message-ID.

The scenario is tests/integration/twonodekit.py's (partners sending to both nodes, forms of
ours held by A, receipt deadlines swept by both). A dies twice over, in two tests: by a SIGKILL
while it holds leases on messages not handed off yet, and at the crash point
``handoff.desk-delivered`` (after Dovecot's 250 to its copies, before the ledger's record),
where B's look over IMAP must find A's copies rather than send second ones; the control shows
that a delivery without the look does leave a second copy, which the count would catch. The
notices either node posts (receipts missed) are in the Dovecot desk once each.

Marked ``slow`` and ``postgres``; without GATEWAY_TEST_POSTGRES_URL or Dovecot they are
skipped, saying why (GATEWAY_REQUIRE_DOVECOT=1 makes a missing Dovecot a failure).
"""

from __future__ import annotations

import collections
import email
import email.policy
from pathlib import Path

import pytest
from dovecotkit import Dovecot, running_dovecot
from integration.inboundkit import World
from integration.twonodekit import (
    DESKS,
    DUE,
    TwoNodes,
    check_two_nodes,
    held_rows,
    require_postgres,
    run_two_nodes,
)
from sqlalchemy import Engine

from gateway.core import config as configuration
from gateway.desks.lmtp import LmtpSink
from gateway.desks.sink import DeskCopy, copy_name

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# As many as test_two_nodes.py: with fewer, A may hand off all it takes before it can be killed.
MESSAGES = 120
DOMAIN = "gateway.ro.example"


def _in_dovecot(dovecot: Dovecot) -> collections.Counter[tuple[str, str]]:
    """Every message in the desks' Dovecot mailboxes: (mailbox, Message-ID) and how often."""
    return collections.Counter(
        {
            (mailbox, message_id): count
            for mailbox in DESKS
            for message_id, count in dovecot.message_ids(mailbox).items()
        }
    )


def _desk_references(held: collections.Counter[tuple[str, str]]) -> collections.Counter[str]:
    """The desk copies (``<desk.<id>.<Reference>@host>``) by Reference, over every mailbox."""
    found: collections.Counter[str] = collections.Counter()
    for (_, message_id), count in held.items():
        if message_id.startswith("<desk."):
            found[message_id.removeprefix("<desk.").split("@")[0].partition(".")[2]] += count
    return found


def _maildir_notices(desks: Path) -> collections.Counter[tuple[str, str]]:
    """The notices the nodes wrote into the shared Maildirs too: (desk, Message-ID)."""
    found: collections.Counter[tuple[str, str]] = collections.Counter()
    for path in desks.glob("*/*/notice.*"):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found[(path.parent.parent.name, str(parsed["Message-ID"]))] += 1
    return found


def _check_notices(run: TwoNodes, held: collections.Counter[tuple[str, str]], desks: Path) -> None:
    """Each notice either node posted is in its Dovecot desk once: the receipts missed (one
    per due form, whichever node swept it) among them."""
    notices = {key: count for key, count in held.items() if key[1].startswith("<notice.")}
    assert sorted(notices.values()) == [1] * len(notices), f"a notice twice: {notices}"
    assert set(notices) == set(_maildir_notices(desks)), (notices, _maildir_notices(desks))
    missed = [key for key in notices if key[1].startswith("<notice.unacknowledged")]
    assert len(missed) >= DUE, (notices, run.figures())


async def test_node_b_finishes_a_killed_nodes_work_into_one_dovecot(
    world: World, tmp_path: Path
) -> None:
    require_postgres()
    with running_dovecot(DESKS) as dovecot:
        run = await run_two_nodes(
            world, tmp_path, messages_count=MESSAGES, extra=dovecot.desk_config()
        )
        held = _in_dovecot(dovecot)
    print(run.figures())
    check_two_nodes(run, _desk_references(held))
    _check_notices(run, held, tmp_path / "shared" / "desks")
    assert not list((tmp_path / "shared" / "desks").glob("*/new/[0-9]*")), "a Maildir copy"


async def test_a_node_killed_between_dovecots_250_and_its_record_leaves_one_copy(
    world: World, tmp_path: Path
) -> None:
    require_postgres()
    with running_dovecot(DESKS) as dovecot:

        def copies_at_death(engine: Engine) -> dict[str, int]:
            """A's copies that Dovecot holds though the ledger has not recorded them."""
            wanted = {f"<desk.{id_}.{ref}@{DOMAIN}>" for id_, ref in held_rows(engine, "a")}
            held = _in_dovecot(dovecot)
            return {
                message_id: count for (_, message_id), count in held.items() if message_id in wanted
            }

        run = await run_two_nodes(
            world,
            tmp_path,
            messages_count=MESSAGES,
            extra=dovecot.desk_config(),
            crash_a=True,
            on_death=copies_at_death,
        )
        held = _in_dovecot(dovecot)
        at_death = run.at_death
        assert isinstance(at_death, dict) and at_death, (
            f"A died with no copy delivered and unrecorded: {run.figures()}"
        )
        print(
            f"{run.figures()}; {len(at_death)} of A's copies in Dovecot, unrecorded, at its death"
        )
        assert set(at_death.values()) == {1}, at_death
        check_two_nodes(run, _desk_references(held))
        for message_id in at_death:  # B found each of them and did not send it again
            assert sum(n for (_, found), n in held.items() if found == message_id) == 1
        assert "is on its desk already: not sent again" in run.b_log, run.b_log[-3000:]
        _check_notices(run, held, tmp_path / "shared" / "desks")

        # The control: B's delivery without the look (the copy named unseen) leaves a second
        # copy of one of A's, which the count above would have caught.
        message_id = sorted(at_death)[0]
        (mailbox,) = [box for box, found in held if found == message_id]
        config = configuration.load(tmp_path / "b" / "gateway.toml")
        ledger_id, reference = message_id.removeprefix("<desk.").split("@")[0].split(".", 1)
        name = copy_name(int(ledger_id), reference)
        blind = DeskCopy(config.desk(mailbox), name, message_id, dovecot.fetch(mailbox, message_id))
        sink = LmtpSink(config.desk_delivery, config.listen.hostname)
        assert sink.deliver([blind], unseen={name}) == [None]
        assert dovecot.message_ids(mailbox)[message_id] == 2
        assert _desk_references(_in_dovecot(dovecot))[reference] == 2
