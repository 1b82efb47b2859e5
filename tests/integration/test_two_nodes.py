"""Two `gateway serve` on one PostgreSQL: node A is killed mid-batch, node B finishes its work.

Partners send to both nodes (as to equal MX records) over STARTTLS; the bodies of accepted
messages are committed to PostgreSQL with their ledger rows (``[store] bodies = "database"``),
the desks are one shared Maildir folder, the receipts go to the partner's real SMTP server (a
FakePartner). Forms of ours sent through A first meet a 451 from the partner, so A holds them
waiting for their retry. Once node A holds leases on messages it has not handed off yet, it is
killed with SIGKILL; the clients that were sending to A send what got no 250 to B. Then every
message that got a 250 must be in its desk exactly once and in the ledger as delivered, every
receipt must have reached the partner once, every form of ours too (delivered by B); the time
from A's death to B's taking of A's leases (watched while the partners still send) must stay
within what the configuration allows (the lease, a heartbeat, a wake-up), and B must finish
within a bound of the later of the lease's end and the last 250. The scenario is
tests/integration/twonodekit.py's; test_two_nodes_dovecot.py plays it with desks in Dovecot.

Marked ``slow`` and ``postgres``; without PostgreSQL (GATEWAY_TEST_POSTGRES_URL, or a server on
127.0.0.1:5432) it is skipped, saying why.
"""

from __future__ import annotations

import collections
import email
import email.policy
from pathlib import Path

import pytest
from integration.inboundkit import World
from integration.twonodekit import DESKS, DUE, check_two_nodes, run_two_nodes

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MESSAGES = 120


def _desk_references(desks: Path) -> collections.Counter[str]:
    found: collections.Counter[str] = collections.Counter()
    for desk in DESKS:
        for sub in ("new", "cur"):
            folder = desks / desk / sub
            for item in folder.iterdir() if folder.is_dir() else ():
                parsed = email.message_from_bytes(item.read_bytes(), policy=email.policy.default)
                if parsed["X-IPC-Notice"] is None:
                    found[str(parsed["X-IPC-Reference"])] += 1
    return found


def _notices(desks: Path, kind: str) -> collections.Counter[str]:
    """The desks' notices of ``kind`` by their Message-ID (one per event key)."""
    found: collections.Counter[str] = collections.Counter()
    for path in desks.glob("*/*/notice.*"):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if parsed["X-IPC-Notice"] == kind:
            found[str(parsed["Message-ID"])] += 1
    return found


async def test_node_b_finishes_the_work_of_node_a_killed_mid_batch(
    world: World, tmp_path: Path
) -> None:
    run = await run_two_nodes(world, tmp_path, messages_count=MESSAGES)
    print(run.figures())
    check_two_nodes(run, _desk_references(tmp_path / "shared" / "desks"))
    # One notice per due deadline whichever node swept it.
    notices = _notices(tmp_path / "shared" / "desks", "unacknowledged")
    assert sorted(notices.values()) == [1] * len(notices), notices
    assert len(notices) >= DUE, notices
