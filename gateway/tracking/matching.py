"""Receipts and replies matched to the messages they answer: the moves of the message states and
the deadlines they meet, each in one transaction with its audit entry.

- a partner's receipt acknowledges our message it names (and meets its receipt deadline), if the
  digest it quotes is the digest of what we signed;
- a partner's form in reply to one of ours answers it (and meets its reply and receipt
  deadlines: a reply proves receipt);
- our reply, once sent, answers the partner's message (and meets the reply deadline our desk had);
- a request for clarification (a form whose policy ``pauses``) answers nothing: it pauses the
  reply deadline of the message it is about, ours when the partner asks (from its receipt), the
  partner's message's when we ask (from its sending); the answer to the clarification, once
  received or sent, answers the clarification and resumes that deadline with the time it had
  left. A reply that comes while its deadline is paused meets it all the same.
"""

from __future__ import annotations

import logging
from datetime import datetime

from gateway.core import messagelog
from gateway.core.tally import TIME_TO_RECEIPT, TIME_TO_REPLY, Tally
from gateway.forms.catalogue import FormCatalogue
from gateway.store import deadline_rows, lookups
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, MessageHead, MessageRow
from gateway.store.states import DeadlineState, InboundState, OutboundState
from gateway.store.unit import Transaction
from gateway.tracking.deadline_notices import iso_text, span_text, time_left

log = logging.getLogger("gateway.tracking")


class Matcher:
    """Matches what answers a message to it, in the ledger and the audit chain."""

    def __init__(
        self,
        ledger: Ledger,
        audit: AuditLog,
        catalogue: FormCatalogue,
        tally: Tally | None = None,
    ) -> None:
        self.ledger = ledger
        self.audit = audit
        self.catalogue = catalogue
        self.tally = tally or Tally()

    def pauses(self, form: str) -> bool:
        """Whether ``form`` asks for clarification of the form it replies to."""
        return form in self.catalogue and self.catalogue.get(form).reply.pauses

    def receipt_received(self, row: MessageRow, original_reference: str, digest: str) -> None:
        """A partner's receipt (its OriginalReference and ContentSHA256): the message it names
        must be ours, sent to that partner, with the digest of what we signed; then that message
        is acknowledged and its receipt deadline met. Anything else is audited and dropped. A
        second receipt changes nothing."""
        original = self.ledger.find("outbound", row.partner, original_reference)
        with self.ledger.transaction() as tx:
            self.ledger.set_state_in(
                tx,
                row.id,
                InboundState.DELIVERED,
                "receipt processed",
                expected=(InboundState.RECEIVED,),
            )
            if original is None or original.content_sha256 != digest:
                why = "names no message of ours" if original is None else "digest differs"
                self.ledger.event_in(tx, row.id, "unmatched", f"receipt {why}; dropped")
                self.audit.append_in(
                    tx,
                    "receipt.unmatched",
                    partner=row.partner,
                    form=row.form,
                    reference=row.reference,
                    digest=row.content_sha256,
                    reason=f"receipt for {original_reference[:40]} {why}",
                )
                log.warning("receipt %s from %s %s", row.reference, row.partner, why)
                return
            acknowledged = self.ledger.set_state_in(
                tx,
                original.id,
                OutboundState.ACKNOWLEDGED,
                f"receipt {row.reference}",
                expected=(OutboundState.QUEUED, OutboundState.SENT, OutboundState.UNACKNOWLEDGED),
            )
            self.ledger.close_deadline_in(
                tx, original.id, "receipt", DeadlineState.MET, f"receipt {row.reference}"
            )
            if acknowledged:
                self.audit.append_in(
                    tx,
                    "acknowledged",
                    partner=row.partner,
                    form=original.form,
                    reference=original.reference,
                    digest=digest,
                    reason=f"receipt {row.reference}",
                )
            else:
                self.ledger.event_in(tx, original.id, "receipt", f"again: {row.reference}")
        if acknowledged:
            self._timed(
                TIME_TO_RECEIPT,
                "acknowledged",
                "to_receipt",
                ours=original,
                answer=row,
                what="receipt",
            )

    def reply_received(self, row: MessageRow) -> None:
        """A form that answers one of ours: that message is answered and its reply deadline
        met (a reply also proves receipt). Once: the moves only happen from the states before."""
        asked = self.ledger.find("outbound", row.partner, row.in_reply_to or "")
        if asked is None:
            return
        if self.pauses(row.form):
            with self.ledger.transaction() as tx:
                self._pause_in(tx, asked, row, row.created_at)
            return
        with self.ledger.transaction() as tx:
            if self.pauses(asked.form) and asked.in_reply_to:
                # the answer to our clarification: the partner's request waits no more
                about = lookups.message_id(tx, "inbound", row.partner, asked.in_reply_to)
                if about is not None:
                    self._resume_in(tx, self.ledger.get_in(tx, int(about)), row)
            self._resume_in(tx, asked, row, quiet=True)
            answered = self.ledger.set_state_in(
                tx,
                asked.id,
                OutboundState.ANSWERED,
                f"reply {row.form} {row.reference}",
                expected=(
                    OutboundState.QUEUED,
                    OutboundState.SENT,
                    OutboundState.ACKNOWLEDGED,
                    OutboundState.UNACKNOWLEDGED,
                ),
            )
            if not answered:
                return
            for kind in ("reply", "receipt"):
                self.ledger.close_deadline_in(
                    tx, asked.id, kind, DeadlineState.MET, f"reply {row.reference}"
                )
            self.audit.append_in(
                tx,
                "answered",
                partner=row.partner,
                form=asked.form,
                reference=asked.reference,
                reason=f"reply {row.form} {row.reference}",
            )
        self._timed(
            TIME_TO_REPLY, "answered", "to_reply", ours=asked, answer=row, what=f"reply {row.form}"
        )

    def reply_sent_in(self, tx: Transaction, row: MessageHead) -> None:
        """Our reply ``row`` went out (in the caller's transaction): the partner's message it
        answers is answered, and the reply deadline our desk had is met."""
        found = lookups.message_id(tx, "inbound", row.partner, row.in_reply_to or "")
        if found is None:
            log.warning("%s answers %s, which is not in the ledger", row.reference, row.in_reply_to)
            return
        asked = self.ledger.get_in(tx, int(found))
        if self.pauses(row.form):
            self._pause_in(tx, asked, row, self.ledger.clock.now())
            return
        if self.pauses(asked.form) and asked.in_reply_to:
            # the answer to the partner's clarification: our request waits no more
            about = lookups.message_id(tx, "outbound", row.partner, asked.in_reply_to)
            if about is not None:
                self._resume_in(tx, self.ledger.get_in(tx, int(about)), row)
        self._resume_in(tx, asked, row, quiet=True)
        reason = f"answered by {row.reference}"
        self.ledger.set_state_in(
            tx,
            int(found),
            InboundState.ANSWERED,
            reason,
            expected=(InboundState.RECEIVED, InboundState.DELIVERED),
        )
        self.ledger.close_deadline_in(tx, int(found), "reply", DeadlineState.MET, reason)

    def _pause_in(
        self,
        tx: Transaction,
        about: MessageRow,
        clarification: MessageRow | MessageHead,
        at: datetime,
    ) -> None:
        """The reply deadline of ``about`` waits for the answer to ``clarification``."""
        paused = deadline_rows.pause_in(tx, about.id, "reply", at)
        if paused is None:
            self.ledger.event_in(
                tx, about.id, "clarification", f"{clarification.reference}: no open reply deadline"
            )
            return
        detail = (
            f"reply deadline paused by {clarification.form} {clarification.reference}: "
            f"{time_left(paused.due, at)}"
        )
        self.ledger.event_in(tx, about.id, "deadline-paused", detail)
        self.audit.append_in(
            tx,
            "deadline.paused",
            partner=about.partner,
            form=about.form,
            reference=about.reference,
            reason=detail[:300],
        )
        log.info(
            "%s %s reply deadline paused by %s",
            about.form,
            about.reference,
            clarification.reference,
        )

    def _resume_in(
        self,
        tx: Transaction,
        about: MessageRow,
        answer: MessageRow | MessageHead,
        *,
        quiet: bool = False,
    ) -> None:
        """The reply deadline of ``about``, if paused, runs again with the time it had left.
        ``quiet``: a reply that is about to meet it (no audit line of its own then, the event
        says it)."""
        resumed = deadline_rows.resume_in(tx, about.id, "reply", self.ledger.clock.now())
        if resumed is None:
            return
        detail = (
            f"reply deadline resumed by {answer.form} {answer.reference} after "
            f"{span_text(resumed.waited)}, due {iso_text(resumed.due)}"
        )
        self.ledger.event_in(tx, about.id, "deadline-resumed", detail)
        if quiet:
            return
        self.audit.append_in(
            tx,
            "deadline.resumed",
            partner=about.partner,
            form=about.form,
            reference=about.reference,
            reason=detail[:300],
        )
        log.info(
            "%s %s reply deadline resumed by %s", about.form, about.reference, answer.reference
        )

    def _timed(
        self,
        metric: str,
        outcome: str,
        timing: str,
        *,
        ours: MessageRow,
        answer: MessageRow,
        what: str,
    ) -> None:
        """The time from our message to the partner's ``answer`` (a receipt or a reply): into
        ``metric`` and the message's log line."""
        took = max((answer.created_at - ours.created_at).total_seconds(), 0.0)
        self.tally.observe(metric, took, answer.partner, ours.form)
        messagelog.event(
            "outbound",
            outcome,
            reference=ours.reference,
            partner=answer.partner,
            form=ours.form,
            detail=f"{what} {answer.reference}",
            **{timing: took},
        )
