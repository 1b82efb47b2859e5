"""After the 250: hand each received message to its desk exactly once, with the cross-check
against earlier exchanges on its copy, and queue its receipt."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime

from gateway.core import crashpoints
from gateway.core.clock import Clock
from gateway.core.config import Config
from gateway.core.errors import DeskRefused, GatewayError
from gateway.core.stagecpu import DESK, RECEIPT, StageCpu
from gateway.core.tally import Tally
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.crypto import pgpmime
from gateway.crypto.openpgp import GnuPG
from gateway.desks.maildir import Delivery, render
from gateway.desks.setup import open_sink
from gateway.desks.sink import DeskCopy, DeskSink, copy_message_id, copy_name
from gateway.forms.xmlforms import FormValidator, Validation
from gateway.inbound.carryover import Carryover
from gateway.inbound.retry import HandoffRetry
from gateway.search import crosscheck
from gateway.store import crosscheck_rows, lookups
from gateway.store.audit import AuditLog
from gateway.store.bodies import Spooled
from gateway.store.crosscheck_walk import EarlierHit
from gateway.store.ledger import Ledger, MessageRow, NewMessage
from gateway.store.spool import Spool, SpoolItem
from gateway.store.states import InboundState, OutboundState
from gateway.store.unit import LedgerError, LedgerUnavailable, Transaction
from gateway.tracking.matching import Matcher
from gateway.tracking.receipts import ReceiptFacts, ack_form, mdn_entity

log = logging.getLogger("gateway.desks")

ORPHAN_AFTER = timedelta(minutes=10)
# Items handed off together: one read of the ledger, one transaction, one sync of done/.
HANDOFF_BATCH = 32


@dataclass(frozen=True)
class Progress:
    """What one run of the hand-off did: the items done and, when it stopped because it was told
    to hold, the instant (wall clock, seconds) the item it left was spooled."""

    done: int
    held_since: float | None = None


@dataclass(frozen=True)
class _Ready:
    """A claimed item past its checks and its desk copy, waiting for the batch's transaction:
    ``desk`` names the desk it was delivered to now (None: not now, or not for a desk),
    ``receipt`` whether a receipt is owed for it; ``first`` that this is its first hand-off
    (this process's intake carried it over, and no attempt took it since), so that no copy of
    it can be on a desk yet."""

    item: SpoolItem
    row: MessageRow
    desk: str | None
    receipt: bool
    first: bool = False
    hits: tuple[EarlierHit, ...] | None = None  # the cross-check's, None: not checked


class Handoff:
    """Works through the inbound spool: desk delivery, receipt, then the item is done.

    Items go in batches of up to ``HANDOFF_BATCH``: one read of the ledger for their rows and
    reply deadlines, the desk copies, one transaction for what the ledger keeps of them all (the
    moves to delivered with their audit lines, the receipts' rows), then each receipt sealed and
    queued, and the batch moved to done/ with one sync. Every step is idempotent, so a crash
    anywhere only means the items are claimed again after recovery: the Maildir name and the
    receipt's spool key are fixed by the ledger id, and the receipt's row is found again by the
    Reference it answers.
    """

    # With several nodes (the bodies in the ledger): ``feed(n)`` takes (leases) at most n
    # received messages into this node's inbound spool and returns their keys with the instant
    # each was received, oldest first, which the run hands off at once; ``hold_receipts``
    # leases the receipts it records to it in their transaction. None: one node, nothing to take.
    feed: Callable[[int], list[tuple[str, datetime]]] | None = None
    hold_receipts: Callable[[Transaction, list[int]], None] | None = None
    # Whether no other process can hand off the same message: then a first hand-off writes its
    # desk copy without looking for an earlier one. Not with several nodes, where a node that
    # stalled past its lease may meet another that took its work over.
    exclusive = True
    # Whether a handed-off item stays in done/ (the proof of what came, until the retention
    # purge); not when the ledger keeps the bytes, whose purge runs on one node only.
    keep_done = True

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
        carried: Carryover | None = None,
        receipts_queued: Callable[[], None] | None = None,
        tally: Tally | None = None,
        sink: DeskSink | None = None,
    ) -> None:
        self.config = config
        self.sink = sink if sink is not None else open_sink(config)
        self._feeding = threading.Lock()
        # Told (from the hand-off's thread) when a batch's receipts are queued: delivery can
        # start on them while the next batch is handed off.
        self.receipts_queued = receipts_queued
        self.cpu = cpu or StageCpu()
        self.carried = carried if carried is not None else Carryover()
        self.gpg = gpg
        self.validator = validator
        self.ledger = ledger
        self.inbound = inbound
        self.outbound = outbound
        self.audit = audit
        self.clock = clock
        self.matcher = Matcher(ledger, audit, validator.catalogue, tally)
        self.retry = HandoffRetry(inbound)

    def run_once(self) -> int:
        """Hand off everything waiting; returns how many items were done."""
        return self.run().done

    def run(self, hold: Callable[[float], bool] | None = None, *, share: int = 1) -> Progress:
        """Hand off what is waiting, oldest first. Before each item ``hold`` (if given) is asked
        with the seconds the item has waited: True leaves it and the rest for a later run.
        ``share``: how many runs go side by side; each takes batches of at most its share of
        what waits, so that one's gpg runs overlap another's Python.

        With ``feed`` (several nodes) the run first takes work from the ledger, its share of a
        batch at a time, and hands each off as soon as it is taken, never held: a lease taken
        is work started. It takes no further one when ``hold`` would hold the newest message of
        the last (the next are newer still): the other nodes, or a later run, take the rest."""
        done = 0
        seen: set[str] = set()  # each item once per run: one that waits never blocks the rest
        feed, share = self.feed, max(1, share)
        size = max(1, HANDOFF_BATCH // share)  # its share of a batch: the runs gpg side by side
        while feed is not None:
            with self._feeding:  # the runs side by side take disjoint batches
                taken = feed(size)
            keys = [key for key, _ in taken]
            seen.update(keys)
            done += self._hand_off(keys)
            if len(taken) < size:
                break
            waited = (self.clock.now() - taken[-1][1]).total_seconds()
            if hold is not None and hold(waited):
                return Progress(done, time.time() - waited)
        while fresh := [(key, at) for key, at in self.inbound.queued() if key not in seen]:
            size = max(1, min(HANDOFF_BATCH, len(fresh) // share))
            batch: list[str] = []
            for key, spooled_at in fresh:
                if hold is not None and hold(time.time() - spooled_at):
                    return Progress(done + self._hand_off(batch), spooled_at)
                seen.add(key)
                batch.append(key)
                if len(batch) >= size:
                    done += self._hand_off(batch)
                    batch = []
            done += self._hand_off(batch)
        return Progress(done)

    def _hand_off(self, keys: list[str]) -> int:
        """Claim these items and hand them off; returns how many were done."""
        if not keys:
            return 0
        try:
            claimed = self.inbound.claim(keys)
        except ValueError:  # a file whose name is no spool key: not ours to touch
            claimed = []
            for key in keys:
                try:
                    claimed += self.inbound.claim([key])
                except ValueError:
                    log.error("ignoring %s in the inbound spool: not a spool key", key[:80])
        if not claimed:  # none when another worker took them meanwhile
            return 0
        handled = self.handle_many(claimed)
        if not handled:
            return 0
        if not self.keep_done:  # the ledger keeps the bytes: no copy stays on this node
            return len(handled) - len(self.inbound.discard(handled))
        # Idempotent: an item a crash leaves in cur/ too is handled again as a no-op.
        return len(handled) - len(self.inbound.finish(handled, sync_cur=False))

    def set_aside_orphans(self) -> int:
        """At start-up, before any session: an inbound item without a ledger row was spooled by
        a process that died before its commit, so its sender got no 250 and will send again.
        Set it aside (quarantine keeps it for a look) so that the re-sent message is taken."""
        orphans = 0
        queued = [key for key, _ in self.inbound.queued()]
        with self.ledger.reading() as tx:
            recorded = self.ledger.by_spool_keys_in(tx, queued)
        for key in queued:
            if key in recorded:
                continue
            try:
                claimed = self.inbound.claim([key])
            except ValueError:  # a file whose name is no spool key: not ours to touch
                continue
            for item in claimed:
                log.warning("setting aside %s: spooled but never recorded", item.key)
                self.inbound.set_aside(item, "spooled but never recorded")
                orphans += 1
        return orphans

    def handle(self, item: SpoolItem) -> bool:
        """Deliver and receipt one claimed item; False when it is not done (not due yet, or its
        hand-off failed and it was put back)."""
        return bool(self.handle_many([item]))

    def handle_many(self, items: list[SpoolItem]) -> list[SpoolItem]:
        """Deliver and receipt claimed items; returns those done. The others went back to the
        queue (not due yet, or their hand-off failed: the retry policy counts it) or were set
        aside."""
        with self.cpu.timing(DESK, count=len(items)):
            prepared = self._prepare(items)
            try:
                receipts = self._record(prepared)
            except LedgerError as error:
                return self._one_by_one(prepared, error)
        with self.cpu.timing(RECEIPT, count=len(receipts)):
            # Sealed one by one, then spooled together: one sync of the outbound queue.
            self.outbound.put_many([self._seal_receipt(row, receipt) for row, receipt in receipts])
            for _, receipt in receipts:
                log.debug("receipt %s queued", receipt.reference)
        if receipts and self.receipts_queued is not None:
            self.receipts_queued()
        return [ready.item for ready in prepared]

    def _one_by_one(self, prepared: list[_Ready], error: LedgerError) -> list[SpoolItem]:
        """The batch's transaction failed: each item on its own, so that one whose records
        fail is counted (or waits, when the ledger is away) and the others go through."""
        if len(prepared) == 1:
            ready = prepared[0]
            log.error("hand-off of %s failed: %s", ready.item.key, type(error).__name__)
            if isinstance(error, LedgerUnavailable):
                self.inbound.requeue(ready.item)  # our passing trouble: no attempt counted
            else:  # counted; the class only: the driver's text may quote the row's values
                self.retry.failed(ready.item, RuntimeError(f"ledger: {type(error).__name__}"))
            return []
        done: list[SpoolItem] = []
        for ready in prepared:
            try:
                receipts = self._record([ready])
            except LedgerError as alone:
                done += self._one_by_one([ready], alone)
                continue
            for row, receipt in receipts:
                self._queue_receipt(row, receipt)
            done.append(ready.item)
        return done

    def _prepare(self, items: list[SpoolItem]) -> list[_Ready]:
        """Everything before the batch's transaction: the rows (one read), each item's form
        checked again (or as the intake left it), the receipts of ours matched, the desk copies
        made (one write of each desk's Maildir for the batch), replies matched to what they
        answer. An item that is not due or fails is put back here and left out."""
        with self.ledger.reading() as tx:
            rows = self.ledger.by_spool_keys_in(tx, [item.key for item in items])
            dues = lookups.deadlines_due(tx, [row.id for row in rows.values()], "reply")
        checked = self._cross_check(list(rows.values()))
        opened: list[tuple[_Ready, bytes | None]] = []
        for item in items:
            row = rows.get(item.key)
            if row is None:
                self._not_recorded(item)
                continue
            try:
                opened.append(self._open(item, row, dues.get(row.id), checked.get(row.id)))
            except (GatewayError, OSError, LookupError) as error:
                self._failed(item, error)
        prepared = self._deliver(opened)
        ready: list[_Ready] = []
        for one in prepared:
            try:
                if one.desk is not None and one.row.in_reply_to is not None:
                    self.matcher.reply_received(one.row)
            except (GatewayError, OSError, LookupError) as error:
                self._failed(one.item, error)
                continue
            ready.append(one)
        return ready

    def _cross_check(self, rows: list[MessageRow]) -> dict[int, tuple[EarlierHit, ...]]:
        """The cross-check of each message about to go to its desk, by ledger id, from the index
        entries written at its acceptance (one read for the batch). A fault leaves the message
        unchecked: logged, and it goes to its desk without the section."""
        due = [
            row for row in rows if row.state == InboundState.RECEIVED and row.form != RECEIPT_FORM
        ]
        checked: dict[int, tuple[EarlierHit, ...]] = {}
        if not due:
            return checked
        try:
            with self.ledger.reading() as tx:
                found = crosscheck.check_many(tx, [row.id for row in due])
            checked = {row.id: tuple(found.get(row.id, ())) for row in due}
        except (LedgerError, GatewayError) as error:
            # The class only: the driver's text may quote the values searched for.
            log.error("cross-check of a batch failed: %s", type(error).__name__)
            return {}
        return checked

    def _failed(self, item: SpoolItem, error: Exception) -> None:
        log.error("hand-off of %s failed: %s", item.key, type(error).__name__)
        self.retry.failed(item, error)

    def _not_recorded(self, item: SpoolItem) -> None:
        """An item without its ledger row: spooled a moment ago and its ledger commit is on its
        way, or it never came (the sender got no 250). Never delete here: wait, then set it
        aside for an operator."""
        received = datetime.fromisoformat(str(item.meta["received_at"]))
        if self.clock.now() - received < ORPHAN_AFTER:
            self.inbound.requeue(item)
            return
        log.error("setting aside %s: spooled but never recorded", item.key)
        self.inbound.set_aside(item, "spooled but never recorded")

    def _open(
        self,
        item: SpoolItem,
        row: MessageRow,
        reply_due: datetime | None,
        hits: tuple[EarlierHit, ...] | None = None,
    ) -> tuple[_Ready, bytes | None]:
        """The item's form, checked, and the desk's copy to write (None: none to write now)."""
        # Taken once: an item carried over was checked by this process's intake and never
        # handed off (a retry, or an item after a restart, finds nothing here).
        checked = self.carried.take(item.key)
        first = checked is not None
        if checked is None:  # not from this process's intake (a restart): read it again
            payload = pgpmime.parse_entity(Spooled.of(item).entity)
            validation = self.validator.validate(payload.form)
            validation.raise_for_errors()
        else:
            payload, validation = checked
        if row.form == RECEIPT_FORM:
            # A receipt for a message of ours: matched, never put on a desk, never receipted.
            if row.state == InboundState.RECEIVED:
                values = validation.values(("OriginalReference", "ContentSHA256"))
                self.matcher.receipt_received(
                    row, values.get("OriginalReference", ""), values.get("ContentSHA256", "")
                )
            return _Ready(item, row, desk=None, receipt=False), None
        if row.state != InboundState.RECEIVED:
            return _Ready(item, row, desk=None, receipt=True), None
        desk = self.config.desk(row.desk or "")
        copy = self._render(row, payload, validation, reply_due, hits or ())
        return _Ready(item, row, desk.name, receipt=True, first=first, hits=hits), copy

    def _deliver(self, opened: list[tuple[_Ready, bytes | None]]) -> list[_Ready]:
        """The desks' copies through the desk sink (Maildir or LMTP), once each: name and
        Message-ID are fixed by the ledger id; returns the items whose copies are there (or had
        none). A copy the sink refused for good sets its item aside at once."""
        copies: list[tuple[_Ready, DeskCopy]] = []
        for ready, data in opened:
            if data is not None and ready.desk is not None:
                name = copy_name(ready.row.id, ready.row.reference)
                message_id = copy_message_id(
                    ready.row.id, ready.row.reference, self.config.listen.hostname
                )
                copies.append(
                    (ready, DeskCopy(self.config.desk(ready.desk), name, message_id, data))
                )
        failed: set[str] = set()
        if copies:
            outcomes = self.sink.deliver(
                [copy for _, copy in copies],
                unseen={copy.name for ready, copy in copies if ready.first and self.exclusive},
            )
            for (ready, _), error in zip(copies, outcomes, strict=True):
                if error is None:
                    continue
                failed.add(ready.item.key)
                if isinstance(error, DeskRefused):
                    self.retry.refused(ready.item, error)
                else:
                    self._failed(ready.item, error)
            log.debug("delivered %d desk copies", len(copies) - len(failed))
        crashpoints.reached(crashpoints.DESK_DELIVERED)
        return [ready for ready, _ in opened if ready.item.key not in failed]

    def _render(
        self,
        row: MessageRow,
        payload: pgpmime.Payload,
        validation: Validation,
        reply_due: datetime | None,
        hits: tuple[EarlierHit, ...] = (),
    ) -> bytes:
        """The desk's copy of the message, with the cross-check's hits its desk may read."""
        form = self.validator.catalogue.get(row.form)
        partner = self.config.partner(row.partner)
        desk = self.config.desk(row.desk or "")
        domain = self.config.listen.hostname
        own, elsewhere = crosscheck.seen_by(hits, desk.name)
        return render(
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
                reply_due=reply_due,
                received_at=row.created_at,
                desk=desk.name,
                desk_email=desk.email,
                message_id=copy_message_id(row.id, row.reference, domain),
                earlier=tuple(crosscheck.describe(hit) for hit in own),
                earlier_elsewhere=elsewhere,
                earlier_capped=crosscheck.capped(hits),
            )
        )

    def _record(self, prepared: list[_Ready]) -> list[tuple[MessageRow, MessageRow]]:
        """One transaction for what the ledger keeps of the batch's hand-off: the moves to
        delivered (guarded, so two workers cannot both make one) with their audit lines, and the
        receipts' rows. Returns (message, receipt row) for each receipt still to be queued."""
        owed = [
            ready.row
            for ready in prepared
            if ready.receipt and not self.outbound.exists(f"receipt.{ready.row.id}")
        ]
        moves = [(ready.row.id, f"desk {ready.desk}") for ready in prepared if ready.desk]
        if not owed and not moves:
            return []
        with self.ledger.transaction() as tx:
            receipts = self._receipt_rows_in(tx, owed)
            moved = self.ledger.move_many_in(
                tx, moves, InboundState.DELIVERED, expected=(InboundState.RECEIVED,)
            )
            self.audit.append_many_in(
                tx,
                [
                    (
                        "delivered",
                        {
                            "partner": ready.row.partner,
                            "form": ready.row.form,
                            "reference": ready.row.reference,
                            "reason": _delivered_reason(ready),
                        },
                    )
                    for ready in prepared
                    if ready.row.id in moved
                ],
            )
            checked = [ready for ready in prepared if ready.row.id in moved and ready.hits]
            if checked:
                crosscheck_rows.add_in(
                    tx, [(ready.row.id, ready.hits or ()) for ready in checked], self.clock.now()
                )
        return [(row, receipts[row.id]) for row in owed]

    def _receipt_rows_in(self, tx: Transaction, owed: list[MessageRow]) -> dict[int, MessageRow]:
        """The receipt's row for each of ``owed``, by the message's ledger id: the one recorded
        before (a retry), or a new one, numbered and recorded (state queued)."""
        found = lookups.answer_ids(
            tx, "outbound", RECEIPT_FORM, [(row.partner, row.reference) for row in owed]
        )
        receipts = {
            row.id: self.ledger.get_in(tx, found[(row.partner, row.reference)])
            for row in owed
            if (row.partner, row.reference) in found
        }
        new = [row for row in owed if row.id not in receipts]
        if not new:
            return receipts
        now = self.clock.now()
        references = self.ledger.next_references_in(
            tx, self.config.identity.country, now.year, len(new)
        )
        recorded = self.ledger.record_many_in(
            tx,
            [
                (
                    NewMessage(
                        direction="outbound",
                        partner=row.partner,
                        channel=row.channel,
                        form=RECEIPT_FORM,
                        reference=reference,
                        in_reply_to=row.reference,
                        message_id=(
                            f"<receipt.{row.id}.{reference}@{self.config.listen.hostname}>"
                        ),
                        priority="normal",
                        content_sha256="",
                        raw_sha256="",
                        state=OutboundState.QUEUED,
                        spool_key=f"receipt.{row.id}",
                    ),
                    f"receipt for {row.reference}",
                )
                for row, reference in zip(new, references, strict=True)
            ],
        )
        receipts.update((row.id, receipt) for row, receipt in zip(new, recorded, strict=True))
        if self.hold_receipts is not None:
            self.hold_receipts(tx, [receipt.id for receipt in recorded])
        return receipts

    def queue_receipt(self, row: MessageRow) -> str:
        """Seal the receipt for ``row`` and put it in the outbound queue, once. Its ledger row is
        committed first and its spool key and Message-ID are fixed by the received message, so
        a retry after a crash rebuilds the same receipt rather than a second one."""
        key = f"receipt.{row.id}"
        if self.outbound.exists(key):
            return key
        with self.ledger.transaction() as tx:
            receipt = self._receipt_rows_in(tx, [row])[row.id]
        return self._queue_receipt(row, receipt)

    def _queue_receipt(self, row: MessageRow, existing: MessageRow) -> str:
        """Seal the receipt whose ledger row is ``existing`` and put it in the outbound queue."""
        self.outbound.put(*self._seal_receipt(row, existing))
        log.debug("receipt %s queued for %s %s", existing.reference, row.partner, row.reference)
        return existing.reference

    def _seal_receipt(
        self, row: MessageRow, existing: MessageRow
    ) -> tuple[str, bytes, dict[str, str]]:
        """The receipt whose ledger row is ``existing``, sealed: its spool key, message and
        metadata, for the outbound queue."""
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
        meta = {
            "to": partner.address,
            "partner": partner.code,
            "reference": existing.reference,
            "kind": "receipt",
            "message_id": existing.message_id,
        }
        return key, sealed, meta

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


def _delivered_reason(ready: _Ready) -> str:
    """The audit line of a delivery: the desk, and when the cross-check found earlier
    exchanges, how many on the desk and elsewhere (never what matched)."""
    if not ready.hits:
        return f"desk {ready.desk}"
    own, elsewhere = crosscheck.seen_by(ready.hits, ready.desk or "")
    return f"desk {ready.desk}; earlier exchanges: {len(own)} on the desk, {elsewhere} elsewhere"
