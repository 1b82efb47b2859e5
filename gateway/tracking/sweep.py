"""The deadline sweep: claim the deadlines due now, do what ``deadlines.plan`` says, record it.

Only the index (state, next_action_at) is read to find work, so a sweep costs what is due, not
what is open. Each due deadline is handled in a transaction of its own that claims its row
(gateway.store.deadline_rows: several gateways on one ledger never handle the same deadline),
posts the notice or queues the re-send, stores the new counters and ``next_action_at`` with a
guarded UPDATE, and appends the audit entry last. A crash before the commit re-does only the
notice or the re-send on the next sweep, and both are fixed by their key (the Maildir name, the
spool key): nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from gateway.core.config import Config
from gateway.core.errors import GatewayError
from gateway.desks.notices import Notice, post
from gateway.forms.catalogue import FormCatalogue
from gateway.store import bodies, deadline_rows
from gateway.store.audit import AuditLog
from gateway.store.deadline_rows import Counters, DueDeadline
from gateway.store.ledger import Ledger
from gateway.store.spool import KEY_PATTERN, Spool
from gateway.store.states import DeadlineState, OutboundState
from gateway.store.unit import LedgerError, Transaction
from gateway.tracking import deadline_notices
from gateway.tracking.deadline_notices import iso_text
from gateway.tracking.deadlines import (
    Action,
    OpenDeadline,
    Rules,
    Step,
    opened_under,
    plan,
    rules_for,
)
from gateway.tracking.recipients import duty_desk, owner_desk

log = logging.getLogger("gateway.deadlines")

BATCH = 100
# Spool metadata of a delivery attempt: a re-sent copy starts afresh.
DELIVERY_KEYS = frozenset({"attempts", "first_attempt_at", "not_before", "last_error"})
RECEIPT_SETTLED = (OutboundState.ACKNOWLEDGED, OutboundState.ANSWERED)
_COUNTERS = {
    "reminder": "reminders",
    "escalation": "escalations",
    "resend": "resends",
    "unacknowledged": "unacknowledged",
}


@dataclass
class SweepResult:
    """What one sweep did."""

    reminders: int = 0
    escalations: int = 0
    resends: int = 0
    unacknowledged: int = 0
    settled: int = 0  # receipt deadlines found acknowledged already, closed as met
    failed: int = 0  # deadlines left for the next sweep after an error

    @property
    def actions(self) -> int:
        return self.reminders + self.escalations + self.resends + self.unacknowledged


class _Lost(Exception):
    """Another sweeper changed the row first: leave it."""


class Sweeper:
    """Sweeps the open deadlines of one ledger; safe to run in several processes at once."""

    def __init__(
        self,
        *,
        config: Config,
        ledger: Ledger,
        audit: AuditLog,
        catalogue: FormCatalogue,
        outbound: Spool,
        batch: int = BATCH,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.audit = audit
        self.catalogue = catalogue
        self.outbound = outbound
        self.batch = batch

    def sweep(self, now: datetime | None = None) -> SweepResult:
        """Handle every deadline due at ``now`` (default: the ledger's clock)."""
        now = (now or self.ledger.clock.now()).astimezone(UTC)
        result = SweepResult()
        seen: set[int] = set()
        while True:
            due = self._due(now)
            fresh = [deadline_id for deadline_id in due if deadline_id not in seen]
            for deadline_id in fresh:
                seen.add(deadline_id)
                try:
                    self._handle(deadline_id, now, result)
                except _Lost:
                    continue
                except (GatewayError, OSError, LookupError, LedgerError) as error:
                    result.failed += 1
                    log.error("deadline %d left for the next sweep: %r", deadline_id, error)
            # Rows handled leave the index range; rows another sweeper holds are in ``seen``.
            if not fresh or len(due) < self.batch:
                return result

    def next_due(self) -> datetime | None:
        """The earliest ``next_action_at`` of the open deadlines: when to sweep next."""
        with self.ledger.reading() as tx:
            return deadline_rows.next_due(tx)

    def close(self, reference: str, reason: str, actor: str) -> int:
        """Close every open deadline of the messages with this Reference: see ``close``."""
        return close(self.ledger, self.audit, reference, reason, actor)

    # ------------------------------------------------------------------ one deadline

    def _due(self, now: datetime) -> list[int]:
        with self.ledger.reading() as tx:
            return deadline_rows.due_ids(tx, now, self.batch)

    def _handle(self, deadline_id: int, now: datetime, result: SweepResult) -> None:
        with self.ledger.transaction() as tx:
            row = deadline_rows.claim_due(tx, deadline_id, now)
            if row is None:
                raise _Lost  # handled or closed meanwhile, or held by another gateway
            deadline = OpenDeadline(
                id=row.id,
                kind=row.kind,
                owed_by=row.owed_by,
                opened_at=row.opened_at,
                due=row.due,
                reminders_sent=row.reminders_sent,
                escalations=row.escalations,
                resends=row.resends,
                next_action_at=row.next_action_at,
                paused=timedelta(seconds=row.paused_seconds),
            )
            if deadline.kind == "receipt" and row.message_state in RECEIPT_SETTLED:
                self._settle(tx, row, deadline)
                result.settled += 1
                return
            step = plan(deadline, now, self._rules(row))
            if step.action is not None and step.action.kind == "resend":
                step = self._resend_or_give_up(row, deadline, step, now)
            detail = self._act(tx, row, deadline, step, now)
            self._store(tx, row, step)
            if step.action is None:
                return
            if step.action.kind != "unacknowledged":  # that one is recorded by _act
                self.ledger.event_in(tx, row.message_id, step.action.kind, detail)
            self.audit.append_in(
                tx,
                f"deadline.{step.action.kind}",
                partner=row.partner,
                form=row.form,
                reference=row.reference,
                reason=f"{deadline.kind} owed by {deadline.owed_by}, due {iso_text(deadline.due)}: "
                f"{detail}"[:300],
            )
        counter = _COUNTERS[step.action.kind]
        setattr(result, counter, getattr(result, counter) + 1)
        log.info("%s %s %s: %s", row.form, row.reference, step.action.kind, detail)

    def _rules(self, row: DueDeadline) -> Rules:
        if row.kind == "receipt":
            try:
                window = self.config.partner(row.partner).receipt_window
            except KeyError:
                window = Rules().receipt_window
            return Rules(
                receipt_window=window, receipt_resends=self.config.outbound.receipt_resends
            )
        form = self.catalogue.get(row.form) if row.form in self.catalogue else None
        window = row.due - row.opened_at - timedelta(seconds=row.paused_seconds)
        return rules_for(opened_under(form, row.priority, window), self.config.deadlines)

    def _act(
        self, tx: Transaction, row: DueDeadline, deadline: OpenDeadline, step: Step, now: datetime
    ) -> str:
        """Do the step's action (before the commit: it is idempotent); the event's detail."""
        action = step.action
        if action is None:
            return ""
        if action.kind == "resend":
            key = self._queue_resend(row, action.number)
            return (
                f"resend {action.number} of {action.of} as {key}, receipt due {iso_text(step.due)}"
            )
        facts = self._facts(row, deadline)
        if action.kind == "escalation":
            duty = duty_desk(self.config, row.desk)
            told = self._post([duty, owner_desk(self.config, row.desk)], facts, action, now, duty)
            return f"escalation {action.number} to desk {told}"
        told = self._post([owner_desk(self.config, row.desk)], facts, action, now)
        if action.kind == "reminder":
            return f"reminder {action.number} of {action.of} to desk {told}"
        # unacknowledged: the state move is the message's event; another state keeps its own
        detail = f"no receipt after {action.number} re-sends, desk {told} told"
        if not self.ledger.set_state_in(
            tx,
            row.message_id,
            OutboundState.UNACKNOWLEDGED,
            detail,
            expected=(OutboundState.SENT,),
        ):
            self.ledger.event_in(tx, row.message_id, "receipt-missed", detail)
        return detail

    def _post(
        self,
        desks: list[str | None],
        facts: deadline_notices.Facts,
        action: Action,
        now: datetime,
        duty: str | None = None,
    ) -> str:
        """Post the notice to each distinct desk; their names, or ``none`` without desks."""
        told: list[str] = []
        notice: Notice = deadline_notices.notice(facts, action, now, desk=duty or "")
        for desk in desks:
            if desk is not None and desk not in told:
                post(self.config, desk, notice, now)
                told.append(desk)
        return ", ".join(told) or "none"

    def _store(self, tx: Transaction, row: DueDeadline, step: Step) -> None:
        counters = Counters(
            reminders_sent=step.reminders_sent,
            escalations=step.escalations,
            resends=step.resends,
            due=step.due,
            next_action_at=step.next_action_at,
            state=step.state,
        )
        if not deadline_rows.store_counters(tx, row, counters, self.ledger.clock.now()):
            raise _Lost

    def _settle(self, tx: Transaction, row: DueDeadline, deadline: OpenDeadline) -> None:
        """A receipt deadline whose message was acknowledged but not closed: close it as met."""
        self.ledger.close_deadline_in(
            tx, row.message_id, "receipt", DeadlineState.MET, f"message {row.message_state}"
        )

    # ------------------------------------------------------------------ re-sends

    def _resend_or_give_up(
        self, row: DueDeadline, deadline: OpenDeadline, step: Step, now: datetime
    ) -> Step:
        """The re-send, or at once the end of waiting when the original is no longer spooled."""
        if self._original(row) is not None:
            return step
        log.error("%s %s: not in the outbound spool, cannot send it again", row.form, row.reference)
        return plan(deadline, now, replace(self._rules(row), receipt_resends=deadline.resends))

    def _queue_resend(self, row: DueDeadline, number: int) -> str:
        """Put a copy of the sent message into the outbound queue, once per ``number``."""
        if row.spool_key is None:  # _resend_or_give_up gives up on such a message first
            raise LookupError(f"{row.reference} has no spooled original to send again")
        key = resend_key(row.spool_key, row.message_id, number)
        if self.outbound.exists(key):
            return key
        original = self._original(row)
        if original is None:
            raise LookupError(f"{row.reference} has no spooled original to send again")
        payload, meta = original
        meta.update(kind="resend", ledger_id=row.message_id)
        self.outbound.put(key, payload, meta)
        return key

    def _original(self, row: DueDeadline) -> tuple[bytes, dict[str, object]] | None:
        """The message as it was sent and its queue metadata (without delivery's): from this
        node's outbound spool, else, when the ledger keeps the bodies, from the ledger (another
        node sent it, and died). None when it is kept nowhere."""
        if row.spool_key is None:
            return None
        if self.outbound.exists(row.spool_key):
            try:
                item = self.outbound.get(row.spool_key)
            except KeyError:
                return None
            return item.payload(), {k: v for k, v in item.meta.items() if k not in DELIVERY_KEYS}
        if self.config.store.bodies != "database":
            return None
        with self.ledger.reading() as tx:
            found = bodies.read_rows_in(tx, [row.message_id])
        if row.message_id not in found:
            return None
        sent = self.ledger.get(row.message_id)
        return found[row.message_id].raw, {
            "to": self.config.partner(row.partner).address,
            "partner": row.partner,
            "reference": row.reference,
            "form": row.form,
            "kind": "form",
            "message_id": sent.message_id,
        }

    def _facts(self, row: DueDeadline, deadline: OpenDeadline) -> deadline_notices.Facts:
        return deadline_notices.Facts(
            deadline_id=deadline.id,
            kind=deadline.kind,
            owed_by=deadline.owed_by,
            direction=row.direction,
            partner=row.partner,
            form=row.form,
            reference=row.reference,
            priority=row.priority,
            desk=row.desk,
            opened_at=deadline.opened_at,
            due=deadline.due,
        )


def close(ledger: Ledger, audit: AuditLog, reference: str, reason: str, actor: str) -> int:
    """Close every open deadline of the messages with this Reference (a handler's decision that
    nothing more is owed), each with an event and an audit entry; returns how many were closed."""
    reason = " ".join(reason.split())
    with ledger.transaction() as tx:
        rows = deadline_rows.open_of_reference(tx, reference)
        closed = 0
        for row in rows:
            kind, message_id = row.kind, row.message_id
            # A paused one resumes first: its due instant then counts the time it waited.
            deadline_rows.resume_in(tx, message_id, kind, ledger.clock.now())
            if not ledger.close_deadline_in(tx, message_id, kind, DeadlineState.CLOSED, reason):
                continue
            closed += 1
            detail = f"{row.kind} deadline closed by {actor}: {reason}"
            ledger.event_in(tx, row.message_id, "deadline-closed", detail)
            audit.append_in(
                tx,
                "deadline.closed",
                partner=row.partner,
                form=row.form,
                reference=reference,
                reason=detail[:300],
            )
    if closed:
        log.info("closed %d deadline(s) of %s by %s", closed, reference, actor)
    return closed


def resend_key(spool_key: str, ledger_id: int, number: int) -> str:
    """``<spool_key>.resend.<n>``; ``resend.<ledger id>.<n>`` when that is too long a key."""
    key = f"{spool_key}.resend.{number}"
    return key if KEY_PATTERN.fullmatch(key) else f"resend.{ledger_id}.{number}"
