"""The inbound stages inside the SMTP transaction, in order: open, validate, dedupe, commit."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime

from gateway.core.clock import Clock
from gateway.core.config import Config, Partner
from gateway.core.errors import (
    BadSignature,
    ConflictingReference,
    GatewayError,
    InvalidForm,
    MalformedMessage,
    StoreUnavailable,
    UnknownSender,
)
from gateway.core.stagecpu import INTAKE, StageCpu
from gateway.crypto.openpgp import GnuPG
from gateway.crypto.sealing import Opened, open_message
from gateway.desks.maildir import choose_desk
from gateway.forms.catalogue import FormSpec
from gateway.forms.xmlforms import FormHeader, FormValidator, Validation
from gateway.inbound.carryover import Carryover
from gateway.search import index
from gateway.store.audit import AuditLog
from gateway.store.bodies import NewBody
from gateway.store.groupcommit import GroupCommit, Received
from gateway.store.ledger import Ledger, NewMessage
from gateway.store.spool import Spool
from gateway.store.states import InboundState
from gateway.store.unit import LedgerConflict, LedgerError
from gateway.tracking.deadlines import reply_deadline

log = logging.getLogger("gateway.inbound")
_SAFE_KEY = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Accepted:
    """A message we took responsibility for: on disk and in the ledger (or already there)."""

    ledger_id: int
    reference: str
    duplicate: bool
    partner: str = ""  # its partner's code and its form's, for the metrics
    form: str = ""


@dataclass(frozen=True)
class _Checked:
    partner: Partner
    opened: Opened
    validation: Validation
    form: FormSpec
    header: FormHeader

    def audit_fields(self) -> dict[str, str]:
        """What the audit log records of this message: codes, Reference and digest only."""
        return {
            "partner": self.partner.code,
            "form": self.form.code,
            "reference": self.header.reference,
            "digest": self.opened.content_sha256,
        }


class Pipeline:
    """Everything that must hold before we answer 250. Blocking: run it off the event loop."""

    def __init__(
        self,
        *,
        config: Config,
        gpg: GnuPG,
        validator: FormValidator,
        ledger: Ledger,
        spool: Spool,
        audit: AuditLog,
        clock: Clock,
        cpu: StageCpu | None = None,
        carried: Carryover | None = None,
        bodies_in_ledger: bool = False,
    ) -> None:
        self.config = config
        # [store] bodies = "database": the message's bytes go into the ledger with its row, in
        # one commit, and no spool file is written before the 250.
        self.bodies_in_ledger = bodies_in_ledger
        self.gpg = gpg
        self.validator = validator
        self.ledger = ledger
        self.spool = spool
        self.audit = audit
        self.clock = clock
        self.cpu = cpu or StageCpu()
        self.carried = Carryover(max_entries=0) if carried is None else carried  # kept if shared
        self.records = GroupCommit(ledger, audit, clock)

    def accept(self, mail_from: str, raw: bytes) -> Accepted:
        """Run every stage. Raise the GatewayError that is the SMTP reply, audited, or return once
        the message is durable; nothing of a refused message is kept.

        Whatever the message makes a stage raise is a refusal (5xx): a sender retries a 4xx for
        days. Only our own trouble (the store, the disk, gpg that cannot run) is a 4xx."""
        with self.cpu.timing(INTAKE):
            return self._accept(mail_from, raw)

    def _accept(self, mail_from: str, raw: bytes) -> Accepted:
        raw_sha256 = hashlib.sha256(raw).hexdigest()
        partner = self.config.partner_by_address(mail_from)
        if partner is None:
            self.audit.append("rejected", digest=raw_sha256, reason=UnknownSender.summary)
            raise UnknownSender()
        try:
            checked = self._checked(partner, raw)
            return self._commit(checked, raw, raw_sha256)
        except GatewayError as error:
            self._audit_refusal(partner, raw_sha256, error)
            raise
        except Exception:
            log.exception("unexpected failure while storing a message from %s", partner.code)
            trouble = StoreUnavailable("local error, try again later")
            self._audit_refusal(partner, raw_sha256, trouble)
            raise trouble from None

    def _audit_refusal(self, partner: Partner, raw_sha256: str, error: GatewayError) -> None:
        try:
            self.audit.append(
                "rejected",
                partner=partner.code,
                digest=raw_sha256,
                reason=f"{error.enhanced} {type(error).__name__}",
            )
            self.ledger.record_refusal(partner.code, raw_sha256, error)  # the duty desk's notice
        except Exception as failure:
            log.error("cannot audit a refusal: %s", type(failure).__name__)
            raise StoreUnavailable() from None
        log.debug("refused from %s: %s %s", partner.code, error.enhanced, type(error).__name__)

    def _checked(self, partner: Partner, raw: bytes) -> _Checked:
        """The checks of what the partner sent: anything they raise that is not one of our
        refusals was caused by the input (a parser's own error), and is refused as malformed."""
        try:
            return self._check(partner, raw)
        except GatewayError:
            raise
        except Exception as error:  # RecursionError, UnicodeError, ValueError... from parsers
            log.warning(
                "malformed message from %s: %s in a parser", partner.code, type(error).__name__
            )
            raise MalformedMessage("the message cannot be read") from None

    # ------------------------------------------------------------------ the stages

    def _check(self, partner: Partner, raw: bytes) -> _Checked:
        opened = open_message(
            self.gpg, normalise_line_ends(raw), partner.fingerprint, self.config.intake
        )
        validation = self.validator.validate(opened.payload.form)
        validation.raise_for_errors()
        form = validation.form
        if form is None:
            raise InvalidForm(f"{validation.root} is not a form of the catalogue")
        header = validation.header()
        if form.channel not in (partner.channel, "any"):
            raise InvalidForm(f"form {form.code} is not exchanged on the {partner.channel} channel")
        if header.sender != partner.code:
            raise BadSignature(
                f"the form says it is from {header.sender}, signed by {partner.code}"
            )
        ours = self.config.identity.bureaux.get(partner.channel)
        if header.recipient != ours:
            raise InvalidForm(f"the form is addressed to {header.recipient}, we are {ours}")
        listed = sorted((name, sha) for name, _, sha in validation.attachment_refs())
        attached = sorted((item.filename, item.sha256) for item in opened.payload.attachments)
        if listed != attached:
            raise InvalidForm("the attachments do not match the form's Attachment list")
        return _Checked(partner, opened, validation, form, header)

    def _commit(self, checked: _Checked, raw: bytes, raw_sha256: str) -> Accepted:
        """Spool the message, then record it. No read comes first to look for an earlier copy:
        the ledger's unique key finds it (the very same bytes, already spooled, are found at
        the spool's door), and a duplicate or a conflict is told apart only then."""
        partner, header = checked.partner, checked.header
        desk = choose_desk(
            self.config.routes, partner.channel, checked.form.code, header.priority, partner.code
        )
        now = self.clock.now()
        key = f"{partner.code}.{_SAFE_KEY.sub('_', header.reference)[:32]}.{raw_sha256[:16]}"
        # The raw message as received (our proof of what the partner sent) and the verified
        # entity, in one durable write: delivery must not depend on verifying again later,
        # when the partner's key may have expired.
        meta = {
            "partner": partner.code,
            "reference": header.reference,
            "form": checked.form.code,
            "content_sha256": checked.opened.content_sha256,
            "received_at": now.isoformat(),
            "raw_length": len(raw),
        }
        body: NewBody | None = None
        if self.bodies_in_ledger:
            body = NewBody(raw + checked.opened.entity, len(raw))
        else:
            try:
                self.spool.put(key, raw + checked.opened.entity, meta)
            except FileExistsError:  # these very bytes: recorded before, or in another session
                earlier = self._dedupe(checked)
                if earlier is not None:
                    return earlier
                raise StoreUnavailable(
                    "the same message is being received in another session"
                ) from None
        entries = index.rows_for_intake(checked.validation)
        try:
            # Committed with the records of the sessions that finish at the same time: one
            # transaction and one sync for them all; the 250 waits for that commit.
            ledger_id = self.records.commit(
                Received(
                    NewMessage(
                        direction="inbound",
                        partner=partner.code,
                        channel=partner.channel,
                        form=checked.form.code,
                        reference=header.reference,
                        in_reply_to=header.in_reply_to,
                        message_id=checked.opened.envelope.message_id[:255],
                        priority=header.priority,
                        content_sha256=checked.opened.content_sha256,
                        raw_sha256=raw_sha256,
                        state=InboundState.RECEIVED,
                        spool_key=key,
                        desk=desk,
                        signer=checked.opened.verified.signer,
                        signed_at=checked.opened.verified.signed_at,
                        alert_article=header.alert_article,
                    ),
                    event_detail=f"spooled {key}",
                    audit=checked.audit_fields(),
                    reply_due=self._reply_due(checked, now),
                    index=entries,
                    body=body,
                )
            )
        except LedgerConflict:
            self._unspool(key)
            raced = self._dedupe(checked)  # recorded before, or by another session a moment ago
            if raced is None:
                raise StoreUnavailable() from None
            return raced
        except LedgerError as error:
            self._unspool(key)
            log.error("ledger unavailable: %s", type(error).__name__)
            raise StoreUnavailable() from None
        except Exception:
            self._unspool(key)  # no 250 for it: nothing of it may stay
            raise
        self.carried.put(key, checked.opened.payload, checked.validation)
        log.debug("received %s %s from %s", checked.form.code, header.reference, partner.code)
        return Accepted(
            ledger_id,
            header.reference,
            duplicate=False,
            partner=partner.code,
            form=checked.form.code,
        )

    def _unspool(self, key: str) -> None:
        """Take back the spool item of a message whose record was not committed (none was
        written when the ledger keeps the bodies: its transaction took the body with it)."""
        if not self.bodies_in_ledger:
            self.spool.delete(key, "queued")

    def _dedupe(self, checked: _Checked) -> Accepted | None:
        """The same signed content again is a duplicate; the same Reference with other content
        is a conflict, refused and audited as an alert."""
        existing = self.ledger.find("inbound", checked.partner.code, checked.header.reference)
        if existing is None:
            return None
        if existing.content_sha256 != checked.opened.content_sha256:
            self.audit.append(
                "alert.conflict", reason="same Reference, other content", **checked.audit_fields()
            )
            raise ConflictingReference(
                f"{checked.header.reference} was already received with other content"
            )
        with self.ledger.transaction() as tx:
            self.ledger.event_in(tx, existing.id, "duplicate", "same content again")
        self.audit.append("duplicate", **checked.audit_fields())
        return Accepted(
            existing.id,
            existing.reference,
            duplicate=True,
            partner=existing.partner,
            form=existing.form,
        )

    def _reply_due(
        self, checked: _Checked, received_at: datetime
    ) -> tuple[datetime, datetime] | None:
        """The reply our desk owes, as fixed UTC instants (due, first action) from the form's
        policy; None when the form expects no reply."""
        planned = reply_deadline(
            checked.form,
            checked.header.priority,
            checked.validation.values(checked.form.reply.condition_paths),
            received_at,
            self.config.deadlines,
        )
        return None if planned is None else (planned.due, planned.next_action_at)


def normalise_line_ends(raw: bytes) -> bytes:
    """Bare CR and bare LF become CRLF: aiosmtpd passes them through (only CRLF.CRLF ends DATA).
    The signed content is inside the ciphertext, so this never touches what is verified. A
    message with CRLF line ends only (every message from a partner's gateway) is not copied."""
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") == crlf and raw.count(b"\r") == crlf:
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
