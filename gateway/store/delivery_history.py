"""The delivery history of a message we sent, from the ledger: each attempt (when, outcome, the
partner server's reply or the error, the next try), what the operators did to it in the queues
(released, dropped, sent now), the receipts (when, from which key they were verified), and the
answers the partner sent to it. Metadata only: an operator may see it.

It reads the events delivery, the queues and the receipt matching write (gateway.outbound
.outcomes, gateway.service.queues, gateway.tracking.matching), and the received messages that
are the receipts and the answers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from gateway.store.ledger import as_utc, events, messages
from gateway.store.unit import Transaction

# The events of a delivery attempt (the partner server's reply or our error in the detail).
ATTEMPTS = ("sent", "deferred", "rejected", "failed", "resent", "resend-rejected", "resend-failed")
# Those after which the message's item waits in quarantine for an operator.
QUARANTINED = ("rejected", "failed", "resend-rejected", "resend-failed")
# What an operator did in the queues (gateway.service.queues), and what the receipt wait said.
QUEUE_ACTIONS = ("released", "dropped", "retry-now")
RECEIPT_EVENTS = ("acknowledged", "receipt", "receipt-missed", "unacknowledged")
# A retry's detail: "attempt 2: 451 4.3.0 busy; next 2026-12-01T08:20:00Z" (outcomes._retry).
_DEFERRED = re.compile(r"attempt (?P<number>\d+): (?P<reply>.*); next (?P<next>\S+)", re.S)
# A re-send's: "<spool key>: 250 ..." (outcomes._sent_in, _closed).
_RESENT = re.compile(r"[^\s:]+: (?P<reply>.*)", re.S)
# An acknowledgement's: "receipt NO-2026-000009", a later one's "again: NO-2026-000009".
_RECEIPT = re.compile(r"(?:receipt|again:) (?P<reference>\S+)")
# A queue action that moved the state: "released by olaf: ..." (to queued), "dropped by ..."
_BY_OPERATOR = re.compile(r"(?P<action>released|dropped) by ")
LIMIT = 1000  # events of one message at most (a retry policy gives up long before)


@dataclass(frozen=True)
class AttemptLine:
    at: datetime
    outcome: str  # one of ATTEMPTS
    reply: str  # the partner server's reply code and text, or the error
    number: int | None = None  # the attempt's number, for a retry
    next_try: datetime | None = None  # when the retry was planned
    quarantined: bool = False  # the item was set aside for an operator


@dataclass(frozen=True)
class QueueAction:
    at: datetime
    action: str  # released | dropped | retry-now
    detail: str  # who did it and why, as they gave it


@dataclass(frozen=True)
class ReceiptLine:
    at: datetime  # when the receipt was recorded
    reference: str  # the receipt's own Reference
    ledger_id: int | None  # the receipt's row (None: not found)
    signer: str | None  # the fingerprint its signature was verified with at receipt
    again: bool  # a second receipt for the same message


@dataclass(frozen=True)
class AnswerLine:
    ledger_id: int
    at: datetime
    form: str
    reference: str
    desk: str | None  # the desk it went to: whether the user may open it


@dataclass(frozen=True)
class DeliveryHistory:
    attempts: tuple[AttemptLine, ...]
    queue: tuple[QueueAction, ...]
    receipts: tuple[ReceiptLine, ...]
    receipt_notes: tuple[tuple[datetime, str, str], ...]  # receipt-missed, unacknowledged
    answers: tuple[AnswerLine, ...]

    @property
    def quarantined(self) -> bool:
        """Whether the last attempt set the item aside and no operator acted on it since."""
        if not self.attempts or not self.attempts[-1].quarantined:
            return False
        last = self.attempts[-1].at
        return not any(action.at >= last for action in self.queue)


def history(
    tx: Transaction, message_id: int, *, partner: str, reference: str, receipt_form: str
) -> DeliveryHistory:
    """The delivery history of our message ``message_id`` (to ``partner``, our ``reference``);
    ``receipt_form``: the form of receipts (they are not answers). Three reads by index: the
    message's events, the receipts they name, the partner's messages in reply to it."""
    rows = tx.connection.execute(
        select(events.c.at, events.c.kind, events.c.detail)
        .where(events.c.message_id == message_id)
        .order_by(events.c.id)
        .limit(LIMIT)
    ).all()
    attempts: list[AttemptLine] = []
    queue: list[QueueAction] = []
    named: list[tuple[datetime, str, bool]] = []
    notes: list[tuple[datetime, str, str]] = []
    for row in rows:
        at, kind, detail = as_utc(row.at), row.kind, row.detail
        by_operator = _BY_OPERATOR.match(detail)
        if by_operator is not None and kind in ("queued", "failed"):
            queue.append(QueueAction(at, by_operator["action"], detail))
        elif kind in ATTEMPTS:
            attempts.append(_attempt(at, kind, detail))
        elif kind in QUEUE_ACTIONS:
            queue.append(QueueAction(at, kind, detail))
        elif kind in ("acknowledged", "receipt"):
            found = _RECEIPT.fullmatch(detail)
            if found is not None:
                named.append((at, found["reference"], kind == "receipt"))
        elif kind in RECEIPT_EVENTS:
            notes.append((at, kind, detail))
    return DeliveryHistory(
        attempts=tuple(attempts),
        queue=tuple(queue),
        receipts=_receipts(tx, partner, named),
        receipt_notes=tuple(notes),
        answers=_answers(tx, partner, reference, receipt_form),
    )


def _attempt(at: datetime, kind: str, detail: str) -> AttemptLine:
    quarantined = kind in QUARANTINED
    if kind == "deferred":
        found = _DEFERRED.fullmatch(detail)
        if found is not None:
            return AttemptLine(
                at,
                kind,
                found["reply"],
                number=int(found["number"]),
                next_try=_instant(found["next"]),
            )
    elif kind.startswith("resen"):
        found = _RESENT.fullmatch(detail)
        if found is not None:
            return AttemptLine(at, kind, found["reply"], quarantined=quarantined)
    return AttemptLine(at, kind, detail, quarantined=quarantined)


def _receipts(
    tx: Transaction, partner: str, named: list[tuple[datetime, str, bool]]
) -> tuple[ReceiptLine, ...]:
    """The receipts the events name, each with its row (by the unique direction, partner and
    reference) and the fingerprint its signature was verified with."""
    if not named:
        return ()
    rows = tx.connection.execute(
        select(messages.c.id, messages.c.reference, messages.c.signer, messages.c.created_at).where(
            messages.c.direction == "inbound",
            messages.c.partner == partner,
            messages.c.reference.in_(sorted({reference for _, reference, _ in named})),
        )
    ).all()
    by_reference = {row.reference: row for row in rows}
    lines = []
    for at, reference, again in named:
        row = by_reference.get(reference)
        lines.append(
            ReceiptLine(
                at=as_utc(row.created_at) if row is not None else at,
                reference=reference,
                ledger_id=int(row.id) if row is not None else None,
                signer=row.signer if row is not None else None,
                again=again,
            )
        )
    return tuple(lines)


def _answers(
    tx: Transaction, partner: str, reference: str, receipt_form: str
) -> tuple[AnswerLine, ...]:
    """The partner's messages in reply to ours (by the index on partner and InReplyTo)."""
    rows = tx.connection.execute(
        select(
            messages.c.id,
            messages.c.created_at,
            messages.c.form,
            messages.c.reference,
            messages.c.desk,
        )
        .where(
            messages.c.partner == partner,
            messages.c.in_reply_to == reference,
            messages.c.direction == "inbound",
            messages.c.form != receipt_form,
        )
        .order_by(messages.c.id)
        .limit(LIMIT)
    ).all()
    return tuple(
        AnswerLine(int(row.id), as_utc(row.created_at), row.form, row.reference, row.desk)
        for row in rows
    )


def _instant(text: str) -> datetime | None:
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None
