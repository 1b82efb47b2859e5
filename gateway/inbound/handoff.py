"""After the 250: hand each received message to its desk exactly once, and queue its receipt."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime

from gateway.core.clock import Clock
from gateway.core.config import Config
from gateway.core.errors import GatewayError
from gateway.core.stagecpu import DESK, RECEIPT, StageCpu
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.crypto import pgpmime
from gateway.crypto.openpgp import GnuPG
from gateway.desks.maildir import Delivery, deliver, render
from gateway.forms.xmlforms import FormValidator, Validation
from gateway.inbound.retry import HandoffRetry
from gateway.store import lookups
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, MessageRow, NewMessage
from gateway.store.spool import Spool, SpoolItem
from gateway.store.states import InboundState, OutboundState
from gateway.store.unit import Transaction
from gateway.tracking.matching import Matcher
from gateway.tracking.receipts import ReceiptFacts, ack_form, mdn_entity

log = logging.getLogger("gateway.desks")

ORPHAN_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Progress:
    """What one run of the hand-off did: the items done and, when it stopped because it was told
    to hold, the instant (wall clock, seconds) the item it left was spooled."""

    done: int
    held_since: float | None = None


@dataclass(frozen=True)
class Spooled:
    """A received item of the inbound spool, split back into its two parts."""

    raw: bytes
    entity: bytes

    @classmethod
    def of(cls, item: SpoolItem) -> Spooled:
        payload = item.payload()
        length = int(item.meta["raw_length"])
        return cls(payload[:length], payload[length:])


class Handoff:
    """Works through the inbound spool: desk delivery, receipt, then the item is done.

    Every step is idempotent, so a crash anywhere only means the item is claimed again after
    recovery: the Maildir name and the receipt's spool key are fixed by the ledger id.
    """

    def __init__(
        self,
        *,
        config: Config,
        gpg: GnuPG,
        validator: FormValidator,
        ledger: Ledger,
        inbound: Spool,
        outbound: Spool,
        audit: AuditLog,
        clock: Clock,
        cpu: StageCpu | None = None,
    ) -> None:
        self.config = config
        self.cpu = cpu or StageCpu()
        self.gpg = gpg
        self.validator = validator
        self.ledger = ledger
        self.inbound = inbound
        self.outbound = outbound
        self.audit = audit
        self.clock = clock
        self.matcher = Matcher(ledger, audit)
        self.retry = HandoffRetry(inbound)

    def run_once(self) -> int:
        """Hand off everything waiting; returns how many items were done."""
        return self.run().done

    def run(self, hold: Callable[[float], bool] | None = None) -> Progress:
        """Hand off what is waiting, oldest first. Before each item ``hold`` (if given) is asked
        with the seconds the item has waited: True leaves it and the rest for a later run."""
        done = 0
        seen: set[str] = set()  # each item once per run: one that waits never blocks the rest
        while fresh := [(key, at) for key, at in self.inbound.queued() if key not in seen]:
            for key, spooled_at in fresh:
                if hold is not None and hold(time.time() - spooled_at):
                    return Progress(done, spooled_at)
                seen.add(key)
                try:
                    claimed = self.inbound.claim([key])
                except ValueError:  # a file whose name is no spool key: not ours to touch
                    log.error("ignoring %s in the inbound spool: not a spool key", key[:80])
                    continue
                for item in claimed:  # none when another worker took it meanwhile
                    try:
                        handled = self.handle(item)
                    except (GatewayError, OSError, LookupError) as error:
                        log.error("hand-off of %s failed: %s", item.key, type(error).__name__)
                        self.retry.failed(item, error)
                        continue
                    # Idempotent: an item a crash leaves in cur/ too is handled again as a no-op.
                    if handled and not self.inbound.finish([item], sync_cur=False):
                        done += 1
        return Progress(done)

    def set_aside_orphans(self) -> int:
        """At start-up, before any session: an inbound item without a ledger row was spooled by
        a process that died before its commit, so its sender got no 250 and will send again.
        Set it aside (quarantine keeps it for a look) so that the re-sent message is taken."""
        orphans = 0
        for key, _ in self.inbound.queued():
            try:
                if self._row(key) is not None:
                    continue
                claimed = self.inbound.claim([key])
            except ValueError:  # a file whose name is no spool key: not ours to touch
                continue
            for item in claimed:
                log.warning("setting aside %s: spooled but never recorded", item.key)
                self.inbound.set_aside(item, "spooled but never recorded")
                orphans += 1
        return orphans

    def handle(self, item: SpoolItem) -> bool:
        """Deliver and receipt one item; False when it is not due (its ledger row is not there)."""
        with self.cpu.timing(DESK):
            row, receipt = self._desk(item)
        if row is not None and receipt is not None:
            with self.cpu.timing(RECEIPT):
                self._queue_receipt(row, receipt)
        return row is not None

    def _desk(self, item: SpoolItem) -> tuple[MessageRow | None, MessageRow | None]:
        """The desk's part of ``handle``: the item's row (None when not due) and the receipt's
        row when the receipt is still to be sealed and queued."""
        row = self._row(item.key)
        if row is None:
            # Spooled a moment ago and its ledger commit is on its way, or it never came (the
            # sender got no 250). Never delete here: wait, then set it aside for an operator.
            received = datetime.fromisoformat(str(item.meta["received_at"]))
            if self.clock.now() - received < ORPHAN_AFTER:
                self.inbound.requeue(item)
                return None, None
            log.error("setting aside %s: spooled but never recorded", item.key)
            self.inbound.set_aside(item, "spooled but never recorded")
            return None, None
        spooled = Spooled.of(item)
        payload = pgpmime.parse_entity(spooled.entity)
        validation = self.validator.validate(payload.form)
        validation.raise_for_errors()
        if row.form == RECEIPT_FORM:
            # A receipt for a message of ours: matched, never put on a desk, never receipted.
            if row.state == InboundState.RECEIVED:
                values = validation.values(("OriginalReference", "ContentSHA256"))
                self.matcher.receipt_received(
                    row, values.get("OriginalReference", ""), values.get("ContentSHA256", "")
                )
            return row, None
        desk = (
            self._deliver(row, payload, validation) if row.state == InboundState.RECEIVED else None
        )
        if row.in_reply_to is not None:
            self.matcher.reply_received(row)
        return row, self._record(row, desk)

    def _row(self, spool_key: str) -> MessageRow | None:
        return self.ledger.by_spool_key(spool_key)

    def _deliver(self, row: MessageRow, payload: pgpmime.Payload, validation: Validation) -> str:
        """The desk's copy into its Maildir (once: the name is fixed by the ledger id)."""
        form = self.validator.catalogue.get(row.form)
        partner = self.config.partner(row.partner)
        desk = self.config.desk(row.desk or "")
        message = render(
            Delivery(
                partner=partner.code,
                partner_address=partner.address,
                channel=row.channel,
                form=form.code,
                title=form.title,
                header=validation.header(),
                outline=tuple(validation.outline()),
                form_xml=payload.form,
                attachments=payload.attachments,
                reply_due=self._reply_due(row.id),
                received_at=row.created_at,
                desk=desk.name,
                desk_email=desk.email,
            )
        )
        path = deliver(desk.maildir, f"{row.id}.{row.reference}", message)
        log.debug("delivered %s %s to desk %s (%s)", row.form, row.reference, desk.name, path.name)
        return desk.name

    def _record(self, row: MessageRow, desk: str | None) -> MessageRow | None:
        """One transaction for what the ledger keeps of the hand-off: the move to delivered
        (guarded, so two workers cannot both make it) with its audit line, and the receipt's row.
        Returns the receipt's row, or None when the receipt is queued already."""
        key = f"receipt.{row.id}"
        queued = self.outbound.exists(key)
        receipt = None
        with self.ledger.transaction() as tx:
            if not queued:
                receipt = self._receipt_row_in(tx, row) or self._new_receipt_in(tx, row, key)
            if desk is not None and self.ledger.set_state_in(
                tx,
                row.id,
                InboundState.DELIVERED,
                f"desk {desk}",
                expected=(InboundState.RECEIVED,),
            ):
                self.audit.append_in(
                    tx,
                    "delivered",
                    partner=row.partner,
                    form=row.form,
                    reference=row.reference,
                    reason=f"desk {desk}",
                )
        return receipt

    def _reply_due(self, ledger_id: int) -> datetime | None:
        with self.ledger.reading() as tx:
            return lookups.deadline_due(tx, ledger_id, "reply")

    def queue_receipt(self, row: MessageRow) -> str:
        """Seal the receipt for ``row`` and put it in the outbound queue, once. Its ledger row is
        committed first and its spool key and Message-ID are fixed by the received message, so
        a retry after a crash rebuilds the same receipt rather than a second one."""
        key = f"receipt.{row.id}"
        if self.outbound.exists(key):
            return key
        receipt = self._record(row, None)
        if receipt is None:
            return key
        return self._queue_receipt(row, receipt)

    def _new_receipt_in(self, tx: Transaction, row: MessageRow, key: str) -> MessageRow:
        """Number and record the receipt for ``row`` (state queued) in the caller's transaction."""
        now = self.clock.now()
        reference = self.ledger.next_reference_in(tx, self.config.identity.country, now.year)
        receipt_id = self.ledger.record_in(
            tx,
            NewMessage(
                direction="outbound",
                partner=row.partner,
                channel=row.channel,
                form=RECEIPT_FORM,
                reference=reference,
                in_reply_to=row.reference,
                message_id=f"<receipt.{row.id}.{reference}@{self.config.listen.hostname}>",
                priority="normal",
                content_sha256="",
                raw_sha256="",
                state=OutboundState.QUEUED,
                spool_key=key,
            ),
            f"receipt for {row.reference}",
        )
        return self.ledger.get_in(tx, receipt_id)

    def _queue_receipt(self, row: MessageRow, existing: MessageRow) -> str:
        """Seal the receipt whose ledger row is ``existing`` and put it in the outbound queue."""
        key = f"receipt.{row.id}"
        partner = self.config.partner(row.partner)
        now = self.clock.now()
        facts = ReceiptFacts(
            our_bureau=self.config.identity.bureaux[row.channel],
            partner_bureau=partner.code,
            our_address=self.config.identity.address,
            our_host=self.config.listen.hostname,
            reference=existing.reference,
            original_reference=row.reference,
            original_message_id=row.message_id,
            content_sha256=row.content_sha256,
            received_at=row.created_at,
            created=existing.created_at,
        )
        ack = ack_form(facts)
        self.validator.validate(ack).raise_for_errors()
        envelope = pgpmime.Envelope(
            sender=self.config.identity.address,
            recipient=partner.address,
            subject=pgpmime.subject("any", "ACK", existing.reference),
            message_id=existing.message_id,
            date=format_datetime(now),
        )
        sealed = pgpmime.wrap_encrypted(
            self.gpg.sign_encrypt(mdn_entity(facts, ack), partner.fingerprint), envelope
        )
        self.outbound.put(
            key,
            sealed,
            {
                "to": partner.address,
                "partner": partner.code,
                "reference": existing.reference,
                "kind": "receipt",
                "message_id": existing.message_id,
            },
        )
        log.debug("receipt %s queued for %s %s", existing.reference, row.partner, row.reference)
        return existing.reference

    def resend_receipt(self, row: MessageRow) -> None:
        """A duplicate arrived: queue the same receipt once more (same bytes, same Message-ID).
        If the first receipt is not queued yet, the pending hand-off queues it: nothing to do."""
        try:
            original = self.outbound.get(f"receipt.{row.id}")
        except KeyError:
            return
        if original.path.parent == self.outbound.quarantine:
            return  # set aside (rejected, or for an operator): not sent again by itself
        for attempt in range(1, 1000):
            key = f"receipt.{row.id}.again.{attempt}"
            if self.outbound.exists(key):
                continue
            try:
                self.outbound.put(key, original.payload(), original.meta)
            except FileExistsError:  # another hand-off worker took this number a moment ago
                continue
            return

    def _receipt_row_in(self, tx: Transaction, row: MessageRow) -> MessageRow | None:
        found = lookups.answer_id(tx, "outbound", row.partner, RECEIPT_FORM, row.reference)
        return self.ledger.get_in(tx, found) if found is not None else None
