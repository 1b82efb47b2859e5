"""What came of delivery attempts, recorded: the ledger, the audit chain, the spool and, when it
went wrong, a notice to the desk. Runs in a worker thread, a batch of outcomes at a time.

- sent (250): the ledger row to ``sent``, the receipt deadline opens, a reply closes the reply
  deadline of what it answers, the audit entry; all committed before the item goes to done/
  (its bytes are re-sent as they are if no receipt comes);
- retry: the item back in the queue with its next attempt's instant, as the retry policy
  (``retry.py``) decides, until it gives up: then failed;
- rejected, refused, failed: the desk told first, then the ledger and the audit, then the item to
  quarantine.

An outcome that cannot be recorded (database away) is kept in the item's metadata (``outcome``)
and recorded by a later pass, without sending again.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from gateway.core import messagelog
from gateway.core.clock import Clock
from gateway.core.config import Config
from gateway.core.errors import GatewayError
from gateway.core.tally import ATTEMPTS, Tally, code
from gateway.desks import notices
from gateway.desks.notices import MAIL_KIND, Notice
from gateway.forms.catalogue import FormCatalogue
from gateway.outbound.jobs import Job
from gateway.outbound.retry import RetryPolicy, iso
from gateway.outbound.smtpclient import FINAL, SUMMARY_LIMIT, Attempt
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger
from gateway.store.spool import Spool, SpoolItem
from gateway.store.states import OutboundState
from gateway.store.unit import LedgerError, Transaction
from gateway.tracking.matching import Matcher

log = logging.getLogger("gateway.delivery")
_NONE = timedelta(0)


class Recorder:
    """Settles batches of (job, attempt) for the Courier."""

    def __init__(
        self,
        *,
        config: Config,
        ledger: Ledger,
        spool: Spool,
        audit: AuditLog,
        clock: Clock,
        rng: random.Random,
        catalogue: FormCatalogue,
        tally: Tally | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.spool = spool
        self.audit = audit
        self.clock = clock
        self.tally = tally or Tally()
        self.matcher = Matcher(ledger, audit, catalogue, self.tally)
        self.retry = RetryPolicy(config.outbound, rng)

    def settle_batch(self, batch: list[tuple[Job, Attempt]]) -> None:
        """Record what came of the attempts: the messages sent in one transaction, the retries'
        ledger events in one more, the rest one by one. If the shared transaction of the sent
        ones fails, each is tried on its own."""
        now = self.clock.now()
        decided = [(job, self._decide(job, attempt, now)) for job, attempt in batch]
        for job, attempt in decided:
            partner = code(job.partner.code if job.partner else "")
            self.tally.count(ATTEMPTS, partner, attempt.verdict)
        sent = [(job, attempt) for job, attempt in decided if attempt.verdict == "sent"]
        together = False
        if len(sent) > 1:
            try:
                self._sent(sent, now)
                together = True
            except (GatewayError, OSError, LedgerError) as error:
                log.warning("settling %d sent messages together failed: %s", len(sent), error)
        deferred: list[tuple[int, str, str]] = []
        for job, attempt in decided:
            if not (together and attempt.verdict == "sent"):
                deferred += self._settle(job, attempt, now)
        self._deferred(deferred)

    def _settle(self, job: Job, attempt: Attempt, now: datetime) -> list[tuple[int, str, str]]:
        """Record what came of one attempt; a retry's ledger event is returned, for the batch's
        transaction. When recording fails (a database or disk away), a final outcome is kept in
        the item's metadata so that the next pass settles it without sending again; a retry is
        simply put back."""
        try:
            if attempt.verdict == "sent":
                self._sent([(job, attempt)], now)
            elif attempt.verdict == "retry":
                return self._retry(job, attempt, now)
            else:
                self._closed(job, attempt, now)
        except (GatewayError, OSError, LedgerError) as error:
            log.error("cannot settle %s (%s): %s", job.item.key, attempt.summary, error)
            self._keep(job, attempt, now)
        return []

    def _deferred(self, events: list[tuple[int, str, str]]) -> None:
        """The retries' "deferred" events, in one transaction: with a partner down, a pass puts
        back every item queued for it. The spool holds the truth of a retry, so a failure here
        costs the events only."""
        if not events:
            return
        try:
            with self.ledger.transaction() as tx:
                self.ledger.events_in(tx, events)
        except LedgerError as error:
            log.warning("no deferred events for %d retries: %s", len(events), error)

    def _decide(self, job: Job, attempt: Attempt, now: datetime) -> Attempt:
        """A retry the policy gives up on becomes a failure."""
        if attempt.verdict != "retry":
            return attempt
        why = self.retry.give_up(job.item.meta, now)
        if why is None:
            return attempt
        summary = f"{why}: {attempt.summary}"
        return Attempt("failed", summary[:SUMMARY_LIMIT], attempt.code, attempt.words)

    def _sent(self, sent: list[tuple[Job, Attempt]], now: datetime) -> None:
        """Messages the server took (250): state moves, events, receipt deadlines and audit
        entries of the whole batch in one transaction of a few statements, then the items to
        done/ with one directory sync. Notices by mail have nothing in the ledger."""
        recorded = [(job, attempt) for job, attempt in sent if job.kind != MAIL_KIND]
        if recorded:
            with self.ledger.transaction() as tx:
                self._sent_in(tx, recorded, now)
        try:
            stuck = self.spool.finish([job.item for job, _ in sent])
        except (GatewayError, OSError) as error:  # recorded as sent: a restart finishes them
            log.error("%d sent items moved to done/ without a sync: %s", len(sent), error)
            return
        for item in stuck:  # the ledger says sent: the next pass moves it without sending it
            self._release(item)
        if log.isEnabledFor(logging.INFO):
            left = {item.key for item in stuck}
            for job, attempt in sent:
                if job.item.key not in left:
                    _told(job, "sent", attempt.summary)

    def _sent_in(self, tx: Transaction, sent: list[tuple[Job, Attempt]], now: datetime) -> None:
        """The ledger and audit side of ``_sent`` in the caller's transaction (audit last)."""
        moved = self.ledger.move_many_in(
            tx,
            [(job.row.id, attempt.summary) for job, attempt in sent if job.row is not None],
            OutboundState.SENT,
            expected=(OutboundState.QUEUED,),
        )
        forms = [job for job, _ in sent if job.row is not None and job.row.id in moved]
        self.ledger.open_deadlines_in(
            tx,
            [
                (job.row.id, now + (job.partner.receipt_window if job.partner else _NONE))
                for job in forms
                if job.row is not None and job.kind == "form"
            ],
            kind="receipt",
            owed_by="partner",
        )
        for job in forms:
            if job.row is not None and job.kind == "form" and job.row.in_reply_to:
                self.matcher.reply_sent_in(tx, job.row)
        self.ledger.events_in(
            tx,
            [
                (job.original.id, "resent", f"{job.item.key}: {attempt.summary}")
                for job, attempt in sent
                if job.row is None and job.original is not None
            ],
        )
        self.audit.append_many_in(
            tx,
            [
                ("sent", {"reason": f"{job.kind} {job.item.key}", **job.audit_fields()})
                for job, _ in sent
                if job.row is None or job.row.id in moved
            ],
        )

    def _retry(self, job: Job, attempt: Attempt, now: datetime) -> list[tuple[int, str, str]]:
        """Put the item back with its next attempt's time; the "deferred" event it owes."""
        retry = self.retry.next_try(job.item.meta, attempt.error, now)
        self.spool.requeue(job.item, retry.meta)
        _told(
            job,
            "deferred",
            f"{attempt.summary}; attempt {retry.attempts}, "
            f"next in {retry.delay.total_seconds():.0f} s",
        )
        subject = job.subject
        if subject is None:
            return []
        detail = f"attempt {retry.attempts}: {attempt.summary}; next {retry.meta['not_before']}"
        return [(subject.id, "deferred", detail)]

    def _closed(self, job: Job, attempt: Attempt, now: datetime) -> None:
        """Rejected by the partner, out of time, or refused by us: quarantine, ledger, notice.
        A notice by mail that fails is logged and set aside: nothing in the ledger, and no
        notice about a notice."""
        state = OutboundState.REJECTED if attempt.verdict == "rejected" else OutboundState.FAILED
        if job.kind == MAIL_KIND:
            self.spool.set_aside(job.item, f"{state}: {attempt.summary}")
            log.error("notice %s for %s %s: %s", job.item.key, job.peer, state, attempt.error)
            return
        self._notify(job, state, attempt, now)  # first: posting twice leaves one notice
        with self.ledger.transaction() as tx:
            moved = True
            if job.row is not None:
                moved = self.ledger.set_state_in(
                    tx, job.row.id, state, attempt.summary, expected=(OutboundState.QUEUED,)
                )
            elif job.original is not None:
                detail = f"{job.item.key}: {attempt.summary}"
                self.ledger.event_in(tx, job.original.id, f"resend-{state}", detail)
            if moved:
                self.audit.append_in(tx, state, reason=attempt.summary, **job.audit_fields())
        self.spool.set_aside(job.item, f"{state}: {attempt.summary}")
        if attempt.verdict == "refused":
            log.error("refused to send %s (a fault upstream): %s", job.item.key, attempt.summary)
        else:
            log.warning("%s %s: %s", job.item.key, state, attempt.summary)

    def _keep(self, job: Job, attempt: Attempt, now: datetime) -> None:
        """Settling failed: keep a final outcome in the metadata, or at least put the item back."""
        if attempt.verdict in FINAL:
            meta = {
                **job.item.meta,
                "outcome": attempt.to_meta(),
                "not_before": iso(now + self.config.outbound.retry_first),
            }
            try:
                self.spool.requeue(job.item, meta)
                return
            except (GatewayError, OSError) as error:
                log.error("cannot keep the outcome of %s: %s", job.item.key, error)
        self._release(job.item)

    def _release(self, item: SpoolItem) -> None:
        try:
            self.spool.requeue(item)
        except (GatewayError, OSError, ValueError) as exc:
            log.error("%s stays claimed until the next start: %s", item.key, exc)

    def _notify(self, job: Job, state: str, attempt: Attempt, now: datetime) -> None:
        desk = self._desk(job)
        fields = job.audit_fields()
        what = "receipt" if job.kind == "receipt" else f"form {fields['form']}".strip()
        if job.kind == "resend":
            what = f"re-sent {what}"
        reference, partner = fields["reference"] or job.item.key, fields["partner"] or "?"
        if desk is None:
            log.error("no desk to tell that %s %s to %s is %s", what, reference, partner, state)
            return
        if attempt.verdict == "rejected":
            subject = f"{what} {reference} to {partner} rejected"
            lines = [
                f"The partner's mail server refused the {what} {reference} for {partner} "
                f"({attempt.summary}). It will not be sent again as it is.",
                "",
                f"The partner's server replied: {attempt.words}",
            ]
        elif attempt.verdict == "refused":
            subject = f"{what} {reference} to {partner} not sent"
            lines = [
                f"The gateway did not send the {what} {reference} for {partner}: "
                f"{attempt.summary.removeprefix('refused: ')}.",
                "This is a fault in the gateway or its configuration: tell its operator.",
            ]
        else:
            subject = f"{what} {reference} to {partner} not delivered"
            lines = [
                f"The {what} {reference} could not be delivered to {partner}: {attempt.summary}.",
                "No further attempts will be made.",
            ]
            if attempt.words:
                lines += ["", f"The partner's server last replied: {attempt.words}"]
        lines += ["", f"The sealed message is kept in the outbound quarantine as {job.item.key}."]
        notice = Notice(
            kind=state,
            key=f"{state}.{job.item.key}",
            subject=subject,
            body="\n".join(lines) + "\n",
            reference=fields["reference"] or None,
        )
        notices.post(self.config, desk, notice, now)

    def _desk(self, job: Job) -> str | None:
        """The desk that owns the message; the duty desk for receipts and ownerless ones."""
        names = {desk.name for desk in self.config.desks}
        subject = job.subject
        if job.kind != "receipt" and subject is not None and subject.desk in names:
            return subject.desk
        duty = self.config.deadlines.duty_desk
        return duty if duty in names else None


def _told(job: Job, outcome: str, detail: str) -> None:
    """The log line of an attempt: a message's (its Reference, partner, form), or a notice's."""
    subject = job.subject
    if subject is None:
        log.info("%s to %s: %s: %s", job.item.key, job.peer, outcome, detail)
        return
    messagelog.event(
        "outbound",
        outcome,
        reference=subject.reference,
        partner=job.partner.code if job.partner else job.peer,
        form=subject.form,
        detail=detail,
    )
