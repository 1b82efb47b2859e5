"""Nodes and leases on one ledger, and the bodies of messages in it (``[store] bodies``).

On SQLite and on PostgreSQL, with an injected clock: a node's leases hold while it beats and
pass to another node one lease time after its last heartbeat; two nodes taking work at the same
moment never take the same message (SKIP LOCKED); a receipt a dead node recorded is taken over;
a daily job claimed by a dead node is run by another at once; a take claims its leases in one
statement; the oldest work any node may take counts a dead node's once its lease expires. Then
the configuration's refusals, `gateway nodes`, and a gateway that keeps the bodies in
PostgreSQL: the body is committed with the row before the 250, a refused message leaves
neither, the console's reader finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dbkit
import pytest
from dbkit import postgres_schema, upgraded
from integration.inboundkit import (
    World,
    desk_messages,
    gateway_config,
    message,
    send,
    settle,
)
from sqlalchemy import event, func, select

from gateway.cli.main import main
from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.core.errors import CannotStart, ConfigError
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.service.server import Gateway
from gateway.service.services import open_services
from gateway.store import bodies, jobruns, leases
from gateway.store.audit import AuditLog
from gateway.store.groupcommit import GroupCommit, Received
from gateway.store.ledger import Ledger, make_engine, message_bodies, messages
from gateway.store.ledger import leases as lease_rows
from gateway.store.states import InboundState, OutboundState

START = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'ledger.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_schema())
        )
        upgraded(url)
        engine = make_engine(url)
        stack.callback(engine.dispose)
        yield Ledger(engine, FakeClock(START))


def received(ledger: Ledger, count: int) -> list[int]:
    """``count`` received messages recorded with their bodies, as the intake records them."""
    clock = FakeClock(START)
    writer = GroupCommit(ledger, AuditLog(ledger.engine, clock), clock)
    ids = []
    for number in range(count):
        reference = f"NO-2026-{number + 1:06d}"
        new = dataclasses.replace(
            dbkit.RECEIVED, reference=reference, spool_key=f"NO.{reference}.k"
        )
        ids.append(
            writer.commit(
                Received(
                    new,
                    "spooled",
                    {"partner": new.partner, "reference": reference},
                    body=bodies.NewBody(f"raw-{number}".encode() + b"entity", 4 + len(str(number))),
                )
            )
        )
    return ids


def test_leases_hold_while_their_node_beats_and_pass_on_after_the_lease(ledger: Ledger) -> None:
    ids = received(ledger, 3)
    leases.register(ledger, "a", "host-a", 1, START)
    leases.register(ledger, "b", "host-b", 2, START)

    taken = leases.take_received(ledger, "a", START, LEASE, 10)

    assert [body.id for body in taken] == ids
    assert taken[0].body == bodies.Spooled(b"raw-0", b"entity")
    assert taken[0].meta["raw_length"] == 5
    assert leases.take_received(ledger, "b", START, LEASE, 10) == []
    later = START + LEASE - timedelta(seconds=1)
    assert leases.heartbeat(ledger, "a", later, LEASE) == 3  # renewed: A beats
    assert leases.take_received(ledger, "b", later + timedelta(seconds=2), LEASE, 10) == []

    dead = later + LEASE + timedelta(seconds=1)  # no heartbeat from A for a lease time
    over = leases.take_received(ledger, "b", dead, LEASE, 10)

    assert [body.id for body in over] == ids
    nodes = {node.name: node for node in leases.listing(ledger)}
    assert nodes["b"].leases == {"handoff": 3}
    assert nodes["a"].leases == {}
    assert not nodes["a"].live(dead, LEASE)
    assert nodes["b"].live(START + timedelta(seconds=1), LEASE)
    with ledger.transaction() as tx:  # one handed off: B's next heartbeat drops its lease
        ledger.set_state_in(tx, ids[0], InboundState.DELIVERED, "desk sirene")
    assert leases.heartbeat(ledger, "b", dead, LEASE) == 2
    leases.stop(ledger, "b", dead)
    stopped = {node.name: node for node in leases.listing(ledger)}["b"]
    assert stopped.leases == {}
    assert stopped.stopped_at == dead
    assert not stopped.live(dead, LEASE)


def test_a_message_whose_body_is_not_in_the_ledger_is_no_node_s_to_take(ledger: Ledger) -> None:
    with ledger.transaction() as tx:
        ledger.record_in(tx, dbkit.RECEIVED, "spooled")  # kept in a spool, as on one node
    assert leases.take_received(ledger, "a", START, LEASE, 10) == []


def test_a_body_altered_in_the_ledger_is_never_handed_on(ledger: Ledger) -> None:
    [one] = received(ledger, 1)
    with ledger.transaction() as tx:
        tx.connection.execute(
            message_bodies.update()
            .where(message_bodies.c.message_id == one)
            .values(bytes=b"raw-0ENTITY")
        )
    assert leases.take_received(ledger, "a", START, LEASE, 10) == []
    reader = bodies.Bodies("database", ledger, spool=None)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        reader.read(one, None)


def test_a_restarted_node_gives_up_the_leases_of_its_former_run(ledger: Ledger) -> None:
    ids = received(ledger, 2)
    leases.register(ledger, "a", "host-a", 1, START)
    assert len(leases.take_received(ledger, "a", START, LEASE, 10)) == 2
    leases.register(ledger, "a", "host-a", 7, START + timedelta(seconds=1))
    assert [body.id for body in leases.take_received(ledger, "a", START, LEASE, 10)] == ids


def test_a_live_lease_is_never_taken_over_even_by_a_node_that_found_the_row_free(
    ledger: Ledger,
) -> None:
    """The lease row is the claim: a node whose read (an older snapshot, on PostgreSQL) found a
    message free while another node's take was committing gets nothing for it, and the other
    keeps its lease; an expired lease is replaced."""
    [first, second] = received(ledger, 2)
    assert [body.id for body in leases.take_received(ledger, "a", START, LEASE, 1)] == [first]
    with ledger.transaction() as tx:  # "b", as if its read had not seen a's lease
        assert leases._take_in(
            tx, leases.HANDOFF, [first, second], holder="b", now=START, lease=LEASE
        ) == {second}
    assert holders(ledger) == {first: "a", second: "b"}
    later = START + LEASE  # a stopped beating: its lease has expired
    with ledger.transaction() as tx:
        assert leases._take_in(tx, leases.HANDOFF, [first], holder="b", now=later, lease=LEASE) == {
            first
        }
    assert holders(ledger) == {first: "b", second: "b"}


def test_a_take_claims_its_leases_in_one_statement_and_says_when_each_was_received(
    ledger: Ledger,
) -> None:
    """The leases of a batch are one multi-row INSERT, not one per message; a live lease of
    another node stays its own; each message taken carries the instant it was received."""
    ids = received(ledger, 10)
    with ledger.transaction() as tx:
        leases._take_in(tx, leases.HANDOFF, [ids[3]], holder="b", now=START, lease=LEASE)
    one_a_second(ledger, ids)
    inserts: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO LEASES"):
            inserts.append(statement)

    event.listen(ledger.engine, "before_cursor_execute", seen)
    try:
        taken = leases.take_received(ledger, "a", START, LEASE, 20)
    finally:
        event.remove(ledger.engine, "before_cursor_execute", seen)
    assert len(inserts) == 1, inserts
    assert [body.id for body in taken] == [id_ for id_ in ids if id_ != ids[3]]
    assert [body.received_at for body in taken] == [
        START + timedelta(seconds=number) for number, id_ in enumerate(ids) if id_ != ids[3]
    ]
    assert holders(ledger) == {id_: ("b" if id_ == ids[3] else "a") for id_ in ids}


def test_the_oldest_work_any_node_may_take_counts_a_dead_nodes_once_its_lease_expires(
    ledger: Ledger,
) -> None:
    first, second, third = received(ledger, 3)
    one_a_second(ledger, [first, second, third])
    assert leases.oldest_free(ledger, START) == START
    assert [body.id for body in leases.take_received(ledger, "a", START, LEASE, 1)] == [first]
    assert leases.oldest_free(ledger, START) == START + timedelta(seconds=1)
    assert leases.oldest_free(ledger, START + LEASE) == START  # a's lease ran out
    with ledger.transaction() as tx:
        tx.connection.execute(
            messages.update()
            .where(messages.c.id.in_((first, second, third)))
            .values(state=InboundState.DELIVERED.value)
        )
    assert leases.oldest_free(ledger, START + LEASE) is None


def one_a_second(ledger: Ledger, ids: list[int]) -> None:
    """These messages received one a second from START, in this order."""
    with ledger.transaction() as tx:
        for number, id_ in enumerate(ids):
            tx.connection.execute(
                messages.update()
                .where(messages.c.id == id_)
                .values(created_at=START + timedelta(seconds=number))
            )


def holders(ledger: Ledger) -> dict[int, str]:
    with ledger.reading() as tx:
        rows = tx.connection.execute(select(lease_rows.c.item_id, lease_rows.c.holder)).all()
    return {int(row.item_id): str(row.holder) for row in rows}


def test_two_nodes_taking_work_at_once_never_take_the_same_message(
    ledger: Ledger,
) -> None:
    ids = received(ledger, 40)
    found: dict[str, list[int]] = {}
    go = threading.Barrier(2)

    def take(node: str) -> None:
        go.wait()
        got: list[int] = []
        while batch := leases.take_received(ledger, node, START, LEASE, 3):
            got += [body.id for body in batch]
        found[node] = got

    workers = [threading.Thread(target=take, args=(node,)) for node in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(found["a"] + found["b"]) == ids
    assert not set(found["a"]) & set(found["b"])


def test_a_receipt_recorded_by_a_dead_node_is_taken_over(ledger: Ledger) -> None:
    [original] = received(ledger, 1)
    receipt = dataclasses.replace(
        dbkit.RECEIVED,
        direction="outbound",
        form=RECEIPT_FORM,
        reference="RO-2026-000001",
        in_reply_to="NO-2026-000001",
        state=OutboundState.QUEUED,
        spool_key=f"receipt.{original}",
    )
    unleased = dataclasses.replace(receipt, reference="RO-2026-000002", spool_key="receipt.999")
    with ledger.transaction() as tx:
        made = ledger.record_in(tx, receipt, "receipt")
        ledger.record_in(tx, unleased, "receipt")  # recorded by no node: nobody gives it up
        leases.hold_in(tx, leases.RECEIPT, [made], holder="a", now=START, lease=LEASE)

    assert leases.take_receipts(ledger, "b", START + LEASE / 2, LEASE, 10) == []
    assert leases.take_receipts(ledger, "b", START + LEASE, LEASE, 10) == [original]
    assert leases.take_receipts(ledger, "a", START + LEASE, LEASE, 10) == []  # B holds it now
    with pytest.raises(ValueError, match="unknown kind"), ledger.transaction() as tx:
        leases.hold_in(tx, "reminder", [made], holder="a", now=START, lease=LEASE)


def test_a_daily_job_claimed_by_a_dead_node_is_run_by_another_at_once(ledger: Ledger) -> None:
    engine = ledger.engine
    leases.register(ledger, "a", "host-a", 1, START)
    leases.register(ledger, "b", "host-b", 2, START)
    assert jobruns.claim(engine, "report", "2026-12-06", "a", START, lease=LEASE)
    assert not jobruns.claim(engine, "report", "2026-12-06", "b", START, lease=LEASE)
    leases.heartbeat(ledger, "a", START + LEASE / 2, LEASE)
    alive = START + LEASE
    assert not jobruns.claim(engine, "report", "2026-12-06", "b", alive, lease=LEASE)
    dead = START + LEASE / 2 + LEASE
    assert jobruns.claim(engine, "report", "2026-12-06", "b", dead, lease=LEASE)
    jobruns.finish(engine, "report", "2026-12-06", "done")
    later = dead + timedelta(days=1)
    assert not jobruns.claim(engine, "report", "2026-12-06", "a", later, lease=LEASE)


# ------------------------------------------------------------------------- configuration


def configured(world: World, tmp_path: Path, extra: str, url: str | None = None) -> Path:
    path = gateway_config(world, tmp_path, database_url=url)
    path.write_text(path.read_text() + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "key", "reason"),
    [
        ('\n[store]\nbodies = "database"\n', "store.bodies", "needs the ledger on PostgreSQL"),
        ('\n[store]\nbodies = "disk"\n', "store.bodies", "spool"),
        (
            "\n[cluster]\nlease_seconds = 10\nheartbeat_seconds = 6\n",
            "cluster.heartbeat_seconds",
            "at most half of lease_seconds",
        ),
        ("\n[cluster]\nlease_seconds = 1\n", "cluster.lease_seconds", "below the minimum 2"),
        ('\n[cluster]\nnode = "a b"\n', "cluster.node", "A-Z"),
        ("\n[cluster]\nleases = 3\n", "cluster.leases", ""),
    ],
)
def test_the_cluster_settings_are_checked(
    world: World, tmp_path: Path, extra: str, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        configuration.load(configured(world, tmp_path, extra))
    assert refused.value.key == key
    assert reason in refused.value.reason


def test_the_defaults_keep_one_node_on_its_spool(world: World, tmp_path: Path) -> None:
    config = configuration.load(configured(world, tmp_path, ""))
    assert config.store.bodies == "spool"
    assert (config.cluster.lease_seconds, config.cluster.heartbeat_seconds) == (30, 5)
    assert config.cluster.node_name().endswith(f"-{os.getpid()}")


# ------------------------------------------------------------- the bodies in PostgreSQL


async def test_a_gateway_keeping_bodies_in_postgresql_commits_them_with_the_row(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with postgres_schema() as url:
        path = configured(
            world,
            tmp_path,
            '\n[store]\nbodies = "database"\n\n[cluster]\nnode = "one"\n',
            url,
        )
        config = configuration.load(path)
        upgraded(url)
        with open_services(config) as services:
            now = services.clock.now()
            # A live node of that name on another host: refused, one line, nothing taken.
            leases.register(services.ledger, "one", "elsewhere", 4242, now)
            with pytest.raises(CannotStart, match="node name one is in use by elsewhere pid 4242"):
                await Gateway(services).start()
            # The same name left by a process of this host that died: taken again at once.
            leases.register(services.ledger, "one", socket.gethostname(), 2**22 + 7, now)
            gateway = Gateway(services)
            await gateway.start()
            try:
                raw = message(world)
                code, _ = await send(world, gateway, raw)
                assert code == 250
                bad = message(world, b"<not-a-form/>")
                refused, text = await send(world, gateway, bad)
                assert refused == 550, text
                for _ in range(200):  # the hand-off takes it from the ledger, then delivers
                    await settle(gateway)
                    if leases.backlog(gateway.ledger) == 0:
                        break
                    await asyncio.sleep(0.05)
                assert [m["X-IPC-Reference"] for m in desk_messages(gateway, "duty")] == [
                    "NO-2026-000123"
                ]
                # Handed off, and no copy left on this node: the ledger keeps the bytes.
                assert [p.name for p in gateway.inbound.done.iterdir()] == []
                with gateway.engine.connect() as connection:
                    [row] = connection.execute(
                        select(messages).where(messages.c.direction == "inbound")
                    ).all()
                    stored = connection.execute(select(message_bodies)).all()
                assert [body.message_id for body in stored] == [row.id]
                body = services.bodies.read(row.id, row.spool_key)  # the console's reader
                assert hashlib.sha256(body.raw).hexdigest() == row.raw_sha256  # as received
                assert stored[0].sha256 == hashlib.sha256(body.raw + body.entity).hexdigest()
                assert b"Reference" in body.entity
                assert main(["-c", str(path), "nodes", "--json"]) == 0
                [shown] = json.loads(capsys.readouterr().out)
                assert shown["name"] == "one"
                assert shown["state"] == "live"
                assert set(shown["leases"]) == {"handoff", "receipt", "outbound"}
            finally:
                await gateway.stop()
        assert main(["-c", str(path), "nodes"]) == 0
        assert "(no live node)" in capsys.readouterr().out
        assert main(["-c", str(path), "nodes", "--all"]) == 0
        out = capsys.readouterr().out
        assert "one" in out
        assert "stopped" in out
        engine = make_engine(url)
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(message_bodies)).scalar()
        engine.dispose()


def test_a_form_queued_with_its_sealed_bytes_goes_to_one_node_and_on_when_it_dies(
    ledger: Ledger,
) -> None:
    form = dataclasses.replace(
        dbkit.RECEIVED,
        direction="outbound",
        form="G",
        reference="RO-2026-000007",
        state=OutboundState.QUEUED,
        spool_key="form.RO-2026-000007",
        message_id="<RO-2026-000007@ro.example>",
    )
    with ledger.transaction() as tx:
        made = ledger.record_in(tx, form, "queued")
        bodies.add_in(tx, bodies.body_rows([made], [bodies.NewBody(b"sealed", 6)]))

    [taken] = leases.take_outbound(ledger, "a", START, LEASE, 10)

    assert (taken.id, taken.sealed, taken.spool_key) == (made, b"sealed", form.spool_key)
    assert taken.message_id == form.message_id
    assert leases.take_outbound(ledger, "b", START + LEASE / 2, LEASE, 10) == []
    [again] = leases.take_outbound(ledger, "b", START + LEASE, LEASE, 10)  # A stopped beating
    assert again.id == made
    with ledger.transaction() as tx:
        ledger.set_state_in(tx, made, OutboundState.SENT, "250")
    assert leases.heartbeat(ledger, "b", START + LEASE, LEASE) == 0  # delivered: lease dropped
