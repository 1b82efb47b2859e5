"""The gateways on one ledger and the leases on their work: register, heartbeat, take, list.

A node is a row of ``nodes`` (its name, host, pid, start and last heartbeat). Work a node takes
is a row of ``leases``, (kind, message id) with its holder and an expiry; the holder's
heartbeat moves the expiry of all its leases on, so a node that dies loses them all one lease
time after its last heartbeat, and any other node may then take the work over. Taking work is
one transaction: the candidates are read with FOR UPDATE SKIP LOCKED on PostgreSQL (two nodes
never wait for each other, nor take the same message), their leases written, then committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.core.vocabulary import RECEIPT_FORM
from gateway.store.bodies import Spooled, read_rows_in
from gateway.store.ledger import Ledger, as_utc, leases, message_bodies, messages, nodes
from gateway.store.states import InboundState, OutboundState
from gateway.store.unit import Transaction

log = logging.getLogger("gateway.cluster")

HANDOFF = "handoff"  # a received message to hand off (desk copy, receipt)
RECEIPT = "receipt"  # a receipt of ours, queued: to seal and send
OUTBOUND = "outbound"  # a form of ours, sealed and queued: to deliver
KINDS = (HANDOFF, RECEIPT, OUTBOUND)


@dataclass(frozen=True)
class NodeRow:
    """A node as ``gateway nodes`` shows it, with the leases it holds by kind."""

    name: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    leases: dict[str, int]

    def live(self, now: datetime, lease: timedelta) -> bool:
        """Whether its leases still hold: not stopped, and a heartbeat within the lease."""
        return self.stopped_at is None and now - self.heartbeat_at < lease


@dataclass(frozen=True)
class TakenBody:
    """A received message taken for its hand-off, with what its spool item needs."""

    id: int
    spool_key: str
    body: Spooled
    meta: dict[str, object]
    received_at: datetime


def register(ledger: Ledger, name: str, host: str, pid: int, now: datetime) -> None:
    """This node starts: its row (made, or started again under the same name), and no lease
    of a former run under that name survives (its work is in no memory now: taken afresh)."""
    with ledger.transaction() as tx:
        connection = tx.connection
        connection.execute(delete(leases).where(leases.c.holder == name))
        changed = connection.execute(
            update(nodes)
            .where(nodes.c.name == name)
            .values(host=host[:255], pid=pid, started_at=now, heartbeat_at=now, stopped_at=None)
        ).rowcount
        if not changed:
            connection.execute(
                insert(nodes).values(
                    name=name, host=host[:255], pid=pid, started_at=now, heartbeat_at=now
                )
            )


def heartbeat(ledger: Ledger, name: str, now: datetime, lease: timedelta) -> int:
    """Renew this node's heartbeat and the expiry of all its leases; the leases on work that
    is done (a message no longer waiting) are dropped. Returns the leases it still holds."""
    with ledger.transaction() as tx:
        connection = tx.connection
        connection.execute(update(nodes).where(nodes.c.name == name).values(heartbeat_at=now))
        done = (
            select(messages.c.id)
            .where(
                or_(
                    and_(
                        leases.c.kind == HANDOFF,
                        messages.c.state != InboundState.RECEIVED.value,
                    ),
                    and_(
                        leases.c.kind.in_((RECEIPT, OUTBOUND)),
                        messages.c.state != OutboundState.QUEUED.value,
                    ),
                )
            )
            .where(messages.c.id == leases.c.item_id)
        )
        connection.execute(delete(leases).where(leases.c.holder == name, done.exists()))
        held = connection.execute(
            update(leases).where(leases.c.holder == name).values(expires_at=now + lease)
        ).rowcount
    return int(held or 0)


def stop(ledger: Ledger, name: str, now: datetime) -> None:
    """This node stops cleanly: its leases are released at once, its row says when."""
    with ledger.transaction() as tx:
        tx.connection.execute(delete(leases).where(leases.c.holder == name))
        tx.connection.execute(update(nodes).where(nodes.c.name == name).values(stopped_at=now))


def hold_in(
    tx: Transaction,
    kind: str,
    ids: Sequence[int],
    *,
    holder: str,
    now: datetime,
    lease: timedelta,
) -> None:
    """Leases on work this node just made in the caller's transaction (a receipt's row): no
    other node takes it while this one lives."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of lease {kind!r}")
    if ids:
        tx.connection.execute(
            insert(leases),
            [
                {
                    "kind": kind,
                    "item_id": item,
                    "holder": holder,
                    "taken_at": now,
                    "expires_at": now + lease,
                }
                for item in ids
            ],
        )


def _take_in(
    tx: Transaction,
    kind: str,
    ids: Sequence[int],
    *,
    holder: str,
    now: datetime,
    lease: timedelta,
) -> set[int]:
    """Leases on these rows' work, for those no live node holds: an expired lease is replaced,
    a live one stays and its row is not taken. Which were taken. The row lock alone does not
    decide it: on PostgreSQL a node whose statement began before another's take committed
    locks the row once that commit frees it and still sees no lease (its snapshot is older),
    so the lease row itself is the claim: inserted when absent, never over a live one, all of
    them in one multi-row statement (callers take at most a batch of rows)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of lease {kind!r}")
    if not ids:
        return set()
    connection = tx.connection
    connection.execute(
        delete(leases).where(
            leases.c.kind == kind, leases.c.item_id.in_(list(ids)), leases.c.expires_at <= now
        )
    )
    dialect = pg_insert if tx.dialect == "postgresql" else sqlite_insert
    rows = [
        {
            "kind": kind,
            "item_id": item,
            "holder": holder,
            "taken_at": now,
            "expires_at": now + lease,
        }
        for item in sorted(set(ids))  # one order on every node: no two inserts wait in a ring
    ]
    statement = (
        dialect(leases)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["kind", "item_id"])
        .returning(leases.c.item_id)
    )
    return {int(item) for item in connection.execute(statement).scalars()}


def _free(kind: str, now: datetime):  # type: ignore[no-untyped-def]
    """The lease of ``kind`` on a message row: none, or expired (its holder stopped beating)."""
    lease = select(leases.c.item_id).where(
        leases.c.kind == kind, leases.c.item_id == messages.c.id, leases.c.expires_at > now
    )
    return ~lease.exists()


def _take_with_bodies(
    ledger: Ledger,
    query: Select[Any],
    kind: str,
    *,
    holder: str,
    now: datetime,
    lease: timedelta,
) -> tuple[list[Row[Any]], dict[int, Spooled]]:
    """The rows ``query`` finds (locked, skipping those another node is taking, on
    PostgreSQL) whose bytes the ledger holds, with those bytes: leased to ``holder`` as
    ``kind`` in the same transaction."""
    with ledger.transaction() as tx:
        if tx.dialect == "postgresql":
            query = query.with_for_update(of=messages, skip_locked=True)
        rows = tx.connection.execute(query).all()
        found = read_rows_in(tx, [row.id for row in rows])
        held = [row.id for row in rows if row.id in found]
        claimed = _take_in(tx, kind, held, holder=holder, now=now, lease=lease)
        taken = [row for row in rows if row.id in claimed]
    return taken, found


def take_received(
    ledger: Ledger, holder: str, now: datetime, lease: timedelta, limit: int
) -> list[TakenBody]:
    """Received messages no live node holds, oldest first, with their bodies from the ledger:
    leased to ``holder`` when this returns. A message whose body is not in the ledger (kept in
    a spool) is left alone."""
    query = (
        select(
            messages.c.id,
            messages.c.spool_key,
            messages.c.partner,
            messages.c.reference,
            messages.c.form,
            messages.c.content_sha256,
            messages.c.created_at,
        )
        .where(
            messages.c.direction == "inbound",
            messages.c.state == InboundState.RECEIVED.value,
            messages.c.spool_key.is_not(None),
            _free(HANDOFF, now),
        )
        .order_by(messages.c.id)
        .limit(limit)
    )
    taken, bodies = _take_with_bodies(ledger, query, HANDOFF, holder=holder, now=now, lease=lease)
    return [
        TakenBody(
            row.id,
            row.spool_key,
            bodies[row.id],
            {
                "partner": row.partner,
                "reference": row.reference,
                "form": row.form,
                "content_sha256": row.content_sha256,
                "received_at": as_utc(row.created_at).isoformat(),
                "raw_length": len(bodies[row.id].raw),
            },
            as_utc(row.created_at),
        )
        for row in taken
    ]


def oldest_free(ledger: Ledger, now: datetime) -> datetime | None:
    """When the oldest received message that any node may take now (its body in the ledger,
    no live lease on it) was received; None when there is none. A dead node's work counts from
    the moment its leases expire."""
    with ledger.reading() as tx:
        found = tx.connection.execute(
            select(func.min(messages.c.created_at)).where(
                messages.c.direction == "inbound",
                messages.c.state == InboundState.RECEIVED.value,
                messages.c.spool_key.is_not(None),
                _free(HANDOFF, now),
            )
        ).scalar()
    return None if found is None else as_utc(found)


def take_receipts(
    ledger: Ledger, holder: str, now: datetime, lease: timedelta, limit: int
) -> list[int]:
    """Receipts of ours still queued whose node died before they went out (a lease on them
    that expired): leased to ``holder``; the ids of the received messages they answer (their
    spool keys are ``receipt.<id>``), for the hand-off to seal them again."""
    held = select(leases.c.item_id).where(
        leases.c.kind == RECEIPT, leases.c.item_id == messages.c.id
    )
    query = (
        select(messages.c.id, messages.c.spool_key)
        .where(
            messages.c.direction == "outbound",
            messages.c.form == RECEIPT_FORM,
            messages.c.state == OutboundState.QUEUED.value,
            held.exists(),  # a receipt made by a node: one never leased is no node's to give up
            _free(RECEIPT, now),
        )
        .order_by(messages.c.id)
        .limit(limit)
    )
    with ledger.transaction() as tx:
        if tx.dialect == "postgresql":
            query = query.with_for_update(of=messages, skip_locked=True)
        found = tx.connection.execute(query).all()
        claimed = _take_in(
            tx, RECEIPT, [row.id for row in found], holder=holder, now=now, lease=lease
        )
        rows = [row for row in found if row.id in claimed]
    originals: list[int] = []
    for row in rows:
        prefix, _, number = str(row.spool_key or "").partition(".")
        if prefix == "receipt" and number.isdigit():
            originals.append(int(number))
    return originals


@dataclass(frozen=True)
class TakenForm:
    """A form of ours taken for delivery: its sealed bytes and what its queue item says."""

    id: int
    spool_key: str
    sealed: bytes
    partner: str
    reference: str
    form: str
    message_id: str
    queued_at: datetime


def take_outbound(
    ledger: Ledger, holder: str, now: datetime, lease: timedelta, limit: int
) -> list[TakenForm]:
    """Forms of ours queued with their sealed bytes in the ledger on which no live node holds
    a lease (just submitted, or their node died), oldest first: leased to ``holder``."""
    query = (
        select(
            messages.c.id,
            messages.c.spool_key,
            messages.c.partner,
            messages.c.reference,
            messages.c.form,
            messages.c.message_id,
            messages.c.created_at,
        )
        .where(
            messages.c.direction == "outbound",
            messages.c.form != RECEIPT_FORM,
            messages.c.state == OutboundState.QUEUED.value,
            messages.c.spool_key.is_not(None),
            _free(OUTBOUND, now),
        )
        .order_by(messages.c.id)
        .limit(limit)
    )
    taken, found = _take_with_bodies(ledger, query, OUTBOUND, holder=holder, now=now, lease=lease)
    return [
        TakenForm(
            row.id,
            row.spool_key,
            found[row.id].raw,
            row.partner,
            row.reference,
            row.form,
            row.message_id,
            as_utc(row.created_at),
        )
        for row in taken
    ]


def listing(ledger: Ledger) -> list[NodeRow]:
    """Every node that ever ran on this ledger, with its leases by kind; by name."""
    with ledger.reading() as tx:
        connection = tx.connection
        counts: dict[str, dict[str, int]] = {}
        for holder, kind, count in connection.execute(
            select(leases.c.holder, leases.c.kind, func.count()).group_by(
                leases.c.holder, leases.c.kind
            )
        ):
            counts.setdefault(str(holder), {})[str(kind)] = int(count)
        rows = connection.execute(select(nodes).order_by(nodes.c.name)).all()
    return [
        NodeRow(
            name=row.name,
            host=row.host,
            pid=int(row.pid),
            started_at=as_utc(row.started_at),
            heartbeat_at=as_utc(row.heartbeat_at),
            stopped_at=None if row.stopped_at is None else as_utc(row.stopped_at),
            leases=counts.get(row.name, {}),
        )
        for row in rows
    ]


def heartbeat_of(ledger: Ledger, name: str) -> datetime | None:
    """A node's last heartbeat; None for a node never seen."""
    with ledger.reading() as tx:
        found = tx.connection.execute(
            select(nodes.c.heartbeat_at).where(nodes.c.name == name)
        ).scalar()
    return None if found is None else as_utc(found)


def backlog(ledger: Ledger) -> int:
    """Received messages with their bodies in the ledger not handed off yet, by any node."""
    with ledger.reading() as tx:
        found = tx.connection.execute(
            select(func.count())
            .select_from(messages)
            .where(
                messages.c.direction == "inbound",
                messages.c.state == InboundState.RECEIVED.value,
                select(message_bodies.c.message_id)
                .where(message_bodies.c.message_id == messages.c.id)
                .exists(),
            )
        ).scalar_one()
    return int(found)
