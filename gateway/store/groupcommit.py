"""Group commit of received messages: sessions that finish together share one transaction.

Each session hands its record (the message's row, its first event, its reply deadline, its audit
line) to ``GroupCommit.commit`` and gets the message's id back once the transaction that holds it
is committed, never earlier. Whoever arrives while no group is being written leads: it takes the
write lock, then every record queued by then, writes them and commits; the sessions that arrive
meanwhile queue for the next leader. A lone record is written at once: no timer waits for
company, the group is whoever queued while the previous commit ran.

A group is written with one statement per table (the messages with one INSERT ... RETURNING,
their events, their deadlines, their search index entries, their bodies when the ledger keeps
them), then its audit lines after one read
of the chain's head, hashed in the group's order, in one INSERT. When a unique key refuses a
record (the same Reference, recorded a moment ago or earlier in the same group), the group is
written again in a new transaction, each record in its own SAVEPOINT: the refused one gets
LedgerConflict, the others commit. When the transaction fails otherwise, nothing of the group is
committed and every record of it gets GroupNotCommitted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exc

from gateway.core.clock import Clock
from gateway.store.audit import AuditLog, clean_fields
from gateway.store.bodies import NewBody, add_in, body_rows
from gateway.store.grouping import ToGroup, group_safely_in, grouping_references
from gateway.store.ledger import (
    Ledger,
    NewMessage,
    deadlines,
    events,
    messages,
    new_deadline_row,
)
from gateway.store.search_rows import IndexRow, Where, add_many_in
from gateway.store.sqlite_insert import insert_rows, inserted_ids
from gateway.store.states import INBOUND, OUTBOUND, check_state
from gateway.store.unit import LedgerConflict, Transaction, savepoint

log = logging.getLogger("gateway.store")

AUDIT_KIND = "received"


class GroupNotCommitted(exc.SQLAlchemyError):
    """The transaction of a record's group failed: nothing of the group was committed."""


@dataclass(frozen=True)
class Received:
    """What the ledger records of a message taken in: its row and first event, the reply our
    desk owes (due, next action) if its form expects one, and its audit line's fields."""

    message: NewMessage
    event_detail: str
    audit: Mapping[str, str]
    reply_due: tuple[datetime, datetime] | None = None
    index: Sequence[IndexRow] = ()  # its search index entries, written in the same transaction
    body: NewBody | None = None  # its bytes, when they are kept in the ledger ([store] bodies)


class _Ticket:
    """A record waiting in the queue, and then its outcome."""

    __slots__ = ("audit", "done", "error", "message_id", "record")

    def __init__(self, record: Received, audit: tuple[str, str, str, str, str, str]) -> None:
        self.record = record
        self.audit = audit
        self.done = False
        self.message_id = 0
        self.error: BaseException | None = None


class GroupCommit:
    """The intake's writer of received messages (one per ledger and process)."""

    def __init__(self, ledger: Ledger, audit: AuditLog, clock: Clock) -> None:
        self.ledger = ledger
        self.audit = audit
        self.clock = clock
        self._turn = threading.Condition(threading.Lock())
        self._queue: list[_Ticket] = []
        self._leading = False
        self._pending = 0  # records handed in and not yet settled
        self.groups = 0  # groups committed or refused, and the records in them: for benchmarks
        self.records = 0

    def commit(self, record: Received) -> int:
        """Record a message; return its id once committed. LedgerConflict: a unique key refused
        it (nothing of it is stored; the rest of its group is); GroupNotCommitted, or another
        LedgerError: its group's transaction failed (nothing of the group is stored).
        ValueError or IllegalTransition: the record itself is wrong, refused before it joins a
        group."""
        new = record.message
        check_state(INBOUND if new.direction == "inbound" else OUTBOUND, new.state)
        fields = record.audit
        cleaned = clean_fields(
            AUDIT_KIND,
            partner=fields.get("partner", ""),
            form=fields.get("form", ""),
            reference=fields.get("reference", ""),
            digest=fields.get("digest", ""),
            reason=fields.get("reason", ""),
        )
        ticket = _Ticket(record, cleaned)
        with self._turn:
            self._queue.append(ticket)
            self._pending += 1
            while self._leading and not ticket.done:
                self._turn.wait()
            if not ticket.done:
                self._leading = True
        if not ticket.done:
            try:
                self._lead(ticket)
            finally:
                with self._turn:
                    self._leading = False
                    self._turn.notify_all()
        if ticket.error is not None:
            if isinstance(ticket.error, LedgerConflict):
                raise ticket.error
            raise GroupNotCommitted("the transaction of this message's group failed") from (
                ticket.error
            )
        return ticket.message_id

    def pending(self) -> int:
        """Records handed in whose outcome is not known yet (queued, or in the group being
        written)."""
        with self._turn:
            return self._pending

    # ------------------------------------------------------------------ the leader

    def _take(self) -> list[_Ticket]:
        with self._turn:
            group, self._queue = self._queue, []
        return group

    def _lead(self, own: _Ticket) -> None:
        group: list[_Ticket] = []
        try:
            try:
                with self.ledger.transaction() as tx:
                    group = self._take()  # under the write lock: whoever queued until now
                    ids = self._write(tx, [ticket.record for ticket in group])
                    self.audit.chain_in(tx, [ticket.audit for ticket in group])
                outcomes: list[int | BaseException] = list(ids)
            except LedgerConflict:
                if not group:
                    raise
                outcomes = self._one_by_one(group)
        except BaseException as error:
            log.error(
                "a group of %d received messages failed: %s", len(group), type(error).__name__
            )
            if not group:  # the lock or BEGIN failed: the others stay queued for the next leader
                with self._turn:
                    self._queue.remove(own)
                group = [own]
            self._settle(group, [error] * len(group))
            if not isinstance(error, Exception):
                raise
            return
        self._settle(group, outcomes)

    def _one_by_one(self, group: list[_Ticket]) -> list[int | BaseException]:
        """The group again, each record in its own savepoint; the audit lines of those stored."""
        outcomes: list[int | BaseException] = []
        with self.ledger.transaction() as tx:
            for ticket in group:
                try:
                    with savepoint(tx, "received"):
                        outcomes.append(self._write(tx, [ticket.record])[0])
                except LedgerConflict as conflict:
                    outcomes.append(conflict)
            stored = [
                ticket.audit
                for ticket, outcome in zip(group, outcomes, strict=True)
                if isinstance(outcome, int)
            ]
            self.audit.chain_in(tx, stored)
        return outcomes

    def _settle(self, group: Sequence[_Ticket], outcomes: Sequence[int | BaseException]) -> None:
        with self._turn:
            for ticket, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    ticket.error = outcome
                else:
                    ticket.message_id = outcome
                ticket.done = True
            self.groups += 1
            self.records += len(group)
            self._pending -= len(group)
            self._turn.notify_all()

    def _write(self, tx: Transaction, records: Sequence[Received]) -> list[int]:
        """The records' messages, first events, reply deadlines and search index entries: one
        statement each."""
        now = self.clock.now()
        rows: list[dict[str, Any]] = [
            {**vars(record.message), "created_at": now, "updated_at": now} for record in records
        ]
        ids = inserted_ids(tx, messages, rows)
        if len(ids) != len(rows) or not all(ids):
            raise RuntimeError("the database returned no id for a new message")
        firsts = [
            {
                "message_id": message_id,
                "at": now,
                "kind": record.message.state,
                "detail": record.event_detail[:500],
            }
            for message_id, record in zip(ids, records, strict=True)
        ]
        insert_rows(tx, events, firsts)
        owed = [
            new_deadline_row(
                message_id,
                kind="reply",
                owed_by="desk",
                opened_at=now,
                due=record.reply_due[0],
                next_action_at=record.reply_due[1],
            )
            for message_id, record in zip(ids, records, strict=True)
            if record.reply_due is not None
        ]
        insert_rows(tx, deadlines, owed)
        indexed = [
            (
                Where(
                    message_id,
                    record.message.direction,
                    record.message.partner,
                    record.message.desk,
                    record.message.form,
                ),
                record.index,
            )
            for message_id, record in zip(ids, records, strict=True)
            if record.index
        ]
        add_many_in(tx, indexed, now)
        add_in(tx, body_rows(ids, [record.body for record in records]))
        for message_id, record in zip(ids, records, strict=True):
            new = record.message
            group_safely_in(
                tx,
                ToGroup(
                    message_id,
                    new.partner,
                    new.form,
                    new.reference,
                    new.in_reply_to,
                    new.desk,
                    grouping_references([(row.kind, row.role, row.key) for row in record.index]),
                ),
                now,
            )
        return ids
