"""The console's read of the messages we sent: a page at a time, newest first (keyset on the
ledger id, never OFFSET), by state, partner and desks, each with its failed attempts and the last
error the gateway recorded for it. Metadata only."""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gateway.store.ledger import as_utc, events, messages
from gateway.store.unit import Transaction

# The events that record a delivery attempt that did not succeed, and say why (delivery writes
# them: a retry's "deferred", a final "rejected" or "failed", and a re-send's outcome).
FAILURE_EVENTS = ("deferred", "rejected", "failed", "resend-rejected", "resend-failed")


@dataclass(frozen=True)
class SentItem:
    """One line of the outbound page: what the ledger holds of a message of ours."""

    id: int
    queued_at: datetime
    updated_at: datetime
    partner: str
    form: str
    reference: str
    priority: str
    state: str
    desk: str | None
    spool_key: str | None
    attempts: int  # attempts that did not succeed (deferred, rejected, failed)
    last_error: str  # the detail of the last of them, as the gateway wrote it; "" for none


def page(
    tx: Transaction,
    *,
    desks: Collection[str] | None,
    before: int | None = None,
    state: str | None = None,
    partner: str | None = None,
    leave_out_form: str | None = None,
    limit: int = 50,
) -> list[SentItem]:
    """At most ``limit`` outbound messages of ``desks`` (None: of every desk and of none), newest
    first, with ids below ``before``, in ``state`` and to ``partner`` when given, without
    ``leave_out_form``'s (receipts). Several desks are read one by one in index order and merged,
    as the worklist does."""
    read = functools.partial(
        _rows,
        tx,
        before=before,
        state=state,
        partner=partner,
        leave_out=leave_out_form,
        limit=limit,
    )
    if desks is None:
        rows = read(None)
    else:
        rows = sorted(
            (row for desk in sorted(desks) for row in read(desk)),
            key=lambda row: int(row.id),
            reverse=True,
        )[:limit]
    failures = _failures(tx, [int(row.id) for row in rows])
    return [
        SentItem(
            id=row.id,
            queued_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
            partner=row.partner,
            form=row.form,
            reference=row.reference,
            priority=row.priority,
            state=row.state,
            desk=row.desk,
            spool_key=row.spool_key,
            attempts=failures.get(row.id, (0, ""))[0],
            last_error=failures.get(row.id, (0, ""))[1],
        )
        for row in rows
    ]


def _rows(
    tx: Transaction,
    desk: str | None,
    *,
    before: int | None,
    state: str | None,
    partner: str | None,
    leave_out: str | None,
    limit: int,
) -> list[Any]:
    query = (
        select(
            messages.c.id,
            messages.c.created_at,
            messages.c.updated_at,
            messages.c.partner,
            messages.c.form,
            messages.c.reference,
            messages.c.priority,
            messages.c.state,
            messages.c.desk,
            messages.c.spool_key,
        )
        .where(messages.c.direction == "outbound")
        .order_by(messages.c.id.desc())
        .limit(limit)
    )
    if desk is not None:
        query = query.where(messages.c.desk == desk)
    if before is not None:
        query = query.where(messages.c.id < before)
    if state:
        query = query.where(messages.c.state == state)
    if partner:
        query = query.where(messages.c.partner == partner)
    if leave_out:
        query = query.where(messages.c.form != leave_out)
    return list(tx.connection.execute(query).all())


def _failures(tx: Transaction, ids: list[int]) -> dict[int, tuple[int, str]]:
    """For each message of ``ids``: how many attempts failed, and the last one's detail."""
    if not ids:
        return {}
    rows = tx.connection.execute(
        select(events.c.message_id, events.c.detail)
        .where(events.c.message_id.in_(ids), events.c.kind.in_(FAILURE_EVENTS))
        .order_by(events.c.id)
    ).all()
    found: dict[int, tuple[int, str]] = {}
    for row in rows:
        count, _ = found.get(row.message_id, (0, ""))
        found[row.message_id] = (count + 1, row.detail)
    return found
