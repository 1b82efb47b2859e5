"""A handler's form into the outbound queue: check, number, sign and encrypt, record, spool."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from gateway.core.clock import Clock
from gateway.core.config import Config, Partner
from gateway.core.errors import KeyUnusable, StoreUnavailable, SubmissionRefused
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.crypto import pgpmime
from gateway.crypto.openpgp import GnuPG
from gateway.crypto.pgpmime import Attachment
from gateway.desks.maildir import choose_desk
from gateway.forms.catalogue import FormSpec
from gateway.forms.xmlforms import FormHeader, FormValidator, Validation
from gateway.search import index
from gateway.store import bodies, lookups, search_rows
from gateway.store.audit import AuditLog
from gateway.store.grouping import ToGroup, group_safely_in, grouping_references
from gateway.store.ledger import Ledger, NewMessage
from gateway.store.search_rows import Where
from gateway.store.spool import Spool
from gateway.store.states import OutboundState
from gateway.store.unit import LedgerError, Transaction
from gateway.tracking.deadlines import reply_deadline

log = logging.getLogger("gateway.outbound")


@dataclass(frozen=True)
class Submitted:
    """A form in the outbound queue: recorded as ``queued`` and durable in the spool."""

    ledger_id: int
    reference: str
    partner: str
    form: str
    spool_key: str
    message_id: str


# Written in the transaction that queues a form, with what the submission became: a caller's
# own record of it (the API's idempotency key) commits with the form or not at all.
AlsoIn = Callable[[Transaction, Submitted], None]


@dataclass(frozen=True)
class _Checked:
    form: FormSpec
    header: FormHeader
    partner: Partner
    validation: Validation
    numbered: bool  # the gateway assigns the Reference
    original: bytes  # the form as the handler wrote it
    attachments: tuple[Attachment, ...]
    created: str  # Created, where the handler left it out
    desk: str  # the desk that sends it (and is told what becomes of it)
    origin: str = ""


class Submitter:
    """Everything that must hold before a handler's form may leave, then the queueing itself.

    Blocking (gpg, the ledger, fsync): run it off the event loop."""

    def __init__(
        self,
        *,
        config: Config,
        gpg: GnuPG,
        validator: FormValidator,
        ledger: Ledger,
        outbound: Spool,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self.config = config
        # [store] bodies = "database": the sealed message is committed to the ledger with its
        # row, and the node that takes it (leases) puts it into its own outbound spool.
        self.bodies_in_ledger = config.store.bodies == "database"
        self.gpg = gpg
        self.validator = validator
        self.ledger = ledger
        self.outbound = outbound
        self.audit = audit
        self.clock = clock

    def submit(
        self,
        form: bytes,
        attachments: Sequence[Attachment] = (),
        *,
        desk: str | None = None,
        origin: str = "",
        also_in: AlsoIn | None = None,
    ) -> Submitted:
        """Queue ``form`` for its recipient. Raises InvalidForm (FormRefused: every error, one
        per line), SubmissionRefused or KeyUnusable, with nothing queued; StoreUnavailable when
        the ledger or the disk cannot take it. ``origin`` (no personal data: a desk and a digest)
        goes into the ledger's first event, so that a submission can be found again after a
        crash. ``also_in`` is called inside the queueing transaction once the form is recorded;
        what it raises rolls the submission back and is raised again (a LedgerError of its own
        as StoreUnavailable)."""
        if desk is not None:
            self.config.desk(desk)  # KeyError for an unknown desk: a usage error
        now = self.clock.now()
        created = _instant(now)
        placeholder = f"{self.config.identity.country}-{now.year}-000000"
        checked = self._check(
            form, tuple(attachments), created=created, placeholder=placeholder, desk=desk, now=now
        )
        checked = dataclasses.replace(checked, origin=origin)
        try:
            return self._queue(checked, now, also_in)
        except LedgerError as error:
            log.error("ledger unavailable: %s", type(error).__name__)
            raise StoreUnavailable("the ledger cannot take the form now; try again") from None

    # ------------------------------------------------------------------ checks

    def _check(
        self,
        original: bytes,
        attachments: tuple[Attachment, ...],
        *,
        created: str,
        placeholder: str,
        desk: str | None,
        now: datetime,
    ) -> _Checked:
        document = self.validator.complete_header(original, created=created, reference=placeholder)
        validation = self.validator.validate(document)
        if not validation.valid:
            raise validation.refusal(self.config.xml.max_errors)
        form = validation.form
        if form is None:
            raise SubmissionRefused(f"{validation.root} is not a form of the catalogue")
        if form.code == RECEIPT_FORM:
            raise SubmissionRefused(f"{form.code} forms are made by the gateway, not by handlers")
        header = validation.header()
        partner = self.config.partner_by_bureau(header.recipient)
        if partner is None:
            raise SubmissionRefused(
                f"unknown partner {header.recipient}: no such bureau configured"
            )
        if form.channel not in (partner.channel, "any"):
            raise SubmissionRefused(
                f"form {form.code} is a {form.channel} form; {partner.code} is a "
                f"{partner.channel} partner"
            )
        ours = self.config.identity.bureaux.get(partner.channel)
        if header.sender != ours:
            raise SubmissionRefused(
                f"the form says it is from {header.sender}; on the {partner.channel} channel we "
                f"are {ours or 'not configured'}"
            )
        self._check_key(partner, now)
        if header.in_reply_to is not None and (
            self.ledger.find("inbound", partner.code, header.in_reply_to) is None
        ):
            raise SubmissionRefused(
                f"InReplyTo {header.in_reply_to} names no message we received from {partner.code}"
            )
        numbered = header.reference == placeholder
        if not numbered:
            self._check_own_reference(header.reference)
        listed = sorted((name, sha) for name, _, sha in validation.attachment_refs())
        attached = sorted((item.filename, item.sha256) for item in attachments)
        if listed != attached:
            raise SubmissionRefused(
                "the attached files do not match the form's Attachment list (name and SHA-256)"
            )
        owner = desk or choose_desk(
            self.config.routes, partner.channel, form.code, header.priority, partner.code
        )
        return _Checked(
            form, header, partner, validation, numbered, original, attachments, created, owner
        )

    def _check_key(self, partner: Partner, now: datetime) -> None:
        key = self.gpg.key(partner.fingerprint)
        if key is None:
            raise KeyUnusable(
                f"no key for {partner.code} in our keyring (pinned {partner.fingerprint}): "
                "import it with `gateway keys import`"
            )
        if key.revoked:
            raise KeyUnusable(f"the key of {partner.code} ({partner.fingerprint}) is revoked")
        if not key.usable_at(now):
            raise KeyUnusable(f"the key of {partner.code} ({partner.fingerprint}) has expired")

    def _check_own_reference(self, reference: str) -> None:
        country = self.config.identity.country
        if not reference.startswith(f"{country}-"):
            raise SubmissionRefused(
                f"Reference {reference} is not one of ours ({country}-...): leave it out and "
                "the gateway assigns one"
            )
        if any(row.direction == "outbound" for row in self.ledger.by_reference(reference)):
            raise SubmissionRefused(f"Reference {reference} was already used")

    # ------------------------------------------------------------------ queueing

    def _queue(self, checked: _Checked, now: datetime, also_in: AlsoIn | None) -> Submitted:
        spooled: str | None = None
        try:
            with self.ledger.transaction() as tx:
                spooled = self._queue_in(tx, checked, now, also_in)
        except BaseException:
            # The commit failed or never came: take the item back, nothing is queued.
            if spooled is not None:
                self.outbound.delete(spooled, "queued")
            raise
        row = self.ledger.by_spool_key(spooled)
        if row is None:
            raise StoreUnavailable("the queued form was not recorded")
        log.info("queued %s %s for %s", row.form, row.reference, row.partner)
        return Submitted(row.id, row.reference, row.partner, row.form, spooled, row.message_id)

    def _queue_in(
        self, tx: Transaction, checked: _Checked, now: datetime, also_in: AlsoIn | None = None
    ) -> str:
        """Number, seal, record and spool the form inside ``tx``'s transaction; returns
        the spool key."""
        partner, form, header = checked.partner, checked.form, checked.header
        reference = self._next_reference(tx, now) if checked.numbered else header.reference
        document = self.validator.complete_header(
            checked.original, created=checked.created, reference=reference
        )
        validation = self.validator.validate(document)
        validation.raise_for_errors()
        message_id = (
            f"<{reference}.{secrets.token_hex(6)}@{self.config.listen.hostname or 'gateway'}>"
        )
        entity = pgpmime.build_entity(document, checked.attachments)
        envelope = pgpmime.Envelope(
            sender=self.config.identity.address,
            recipient=partner.address,
            subject=pgpmime.subject(partner.channel, form.code, reference),
            message_id=message_id,
            date=format_datetime(now.astimezone(UTC)),
        )
        sealed = pgpmime.wrap_encrypted(
            self.gpg.sign_encrypt(entity, partner.fingerprint), envelope
        )
        content_sha256 = hashlib.sha256(entity).hexdigest()
        key = f"form.{reference}"
        ledger_id = self.ledger.record_in(
            tx,
            NewMessage(
                direction="outbound",
                partner=partner.code,
                channel=partner.channel,
                form=form.code,
                reference=reference,
                in_reply_to=header.in_reply_to,
                message_id=message_id,
                priority=header.priority,
                content_sha256=content_sha256,
                raw_sha256=hashlib.sha256(sealed).hexdigest(),
                state=OutboundState.QUEUED,
                spool_key=key,
                desk=checked.desk,
                alert_article=header.alert_article,
            ),
            " ".join(filter(None, (f"queued for {partner.code}", checked.origin))),
        )
        self._open_reply_deadline(tx, ledger_id, form, validation, now)
        indexed = index.index_rows(validation.entities())
        search_rows.add_in(
            tx, Where(ledger_id, "outbound", partner.code, checked.desk, form.code), indexed, now
        )
        group_safely_in(
            tx,
            ToGroup(
                ledger_id,
                partner.code,
                form.code,
                reference,
                header.in_reply_to,
                checked.desk,
                grouping_references([(row.kind, row.role, row.key) for row in indexed]),
            ),
            now,
        )
        if also_in is not None:
            also_in(
                tx,
                Submitted(ledger_id, reference, partner.code, form.code, key, message_id),
            )
        self.audit.append_in(
            tx,
            "queued",
            partner=partner.code,
            form=form.code,
            reference=reference,
            digest=content_sha256,
        )
        # Spooled last inside the transaction: if the commit fails the item is taken back;
        # if the process dies before the commit, delivery finds no row and sets it aside.
        self._take_spool_key(tx, key, ledger_id)
        if self.bodies_in_ledger:
            bodies.add_in(tx, bodies.body_rows([ledger_id], [bodies.NewBody(sealed, len(sealed))]))
            return key
        self.outbound.put(
            key,
            sealed,
            {
                "to": partner.address,
                "partner": partner.code,
                "reference": reference,
                "form": form.code,
                "kind": "form",
                "message_id": message_id,
                "ledger_id": ledger_id,
                "queued_at": now.isoformat(),
            },
        )
        return key

    def _take_spool_key(self, tx: Transaction, key: str, ledger_id: int) -> None:
        """Make room for ``key`` in the outbound spool. Called under the audit chain's lock, so
        every other submission has committed or not yet spooled: a row of another message with
        this key is a hand-written Reference queued meanwhile; an item that no row names was
        left by a submission that never committed (nobody was told it is queued): discarded,
        it neither blocks this form nor goes out as this form's message."""
        other = lookups.spool_key_holder(tx, key, besides=ledger_id)
        if other is not None:
            raise SubmissionRefused(f"Reference {other} was already used")
        if self.outbound.delete(key, "queued"):
            log.warning("discarded %s, left by a submission that did not commit", key)

    def _next_reference(self, tx: Transaction, now: datetime) -> str:
        """The next number of our country's sequence that no form of ours carries yet (a
        handler may have written one of ours by hand)."""
        while True:
            reference = self.ledger.next_reference_in(tx, self.config.identity.country, now.year)
            if not lookups.reference_taken(tx, "outbound", reference):
                return reference

    def _open_reply_deadline(
        self,
        tx: Transaction,
        ledger_id: int,
        form: FormSpec,
        validation: Validation,
        now: datetime,
    ) -> None:
        """The reply the partner owes us, from the form's policy, as a fixed UTC instant."""
        header = validation.header()
        planned = reply_deadline(
            form,
            header.priority,
            validation.values(form.reply.condition_paths),
            now,
            self.config.deadlines,
        )
        if planned is None:
            return
        self.ledger.open_deadline_in(
            tx,
            ledger_id,
            kind="reply",
            owed_by="partner",
            due=planned.due,
            next_action_at=planned.next_action_at,
        )


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
