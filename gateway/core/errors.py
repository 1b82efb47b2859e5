"""Exceptions of the gateway, each with its SMTP reply, RFC 3463 code and transient flag."""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose.

    Each subclass states what it means on the wire: the SMTP reply code, the RFC 3463
    enhanced status code and whether the sender may try again. The SMTP reply, the desk
    notice and the audit line are all derived from these attributes.
    """

    smtp_code: ClassVar[int] = 451
    enhanced: ClassVar[str] = "4.3.0"
    transient: ClassVar[bool] = True
    summary: ClassVar[str] = "local error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.summary)
        self.detail = detail or self.summary

    def smtp_reply(self) -> str:
        """The reply line an SMTP server sends for this error, e.g. ``550 5.6.0 ...``."""
        text = " ".join(self.detail.split())  # never a CR or LF inside a reply line
        return f"{self.smtp_code} {self.enhanced} {text}"


class ConfigError(GatewayError):
    """The configuration (or a file it names) is unusable; the gateway refuses to start."""

    smtp_code = 451
    enhanced = "4.3.5"
    transient = True
    summary = "configuration error"

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {reason}")


class SchemaSetError(ConfigError):
    """A schema set failed to load: a missing file or import, or an XSD that does not compile."""


class RejectedError(GatewayError):
    """Base of the permanent refusals of a message: the sender must not send it again as is."""

    smtp_code = 550
    enhanced = "5.7.0"
    transient = False
    summary = "message refused"


class TLSRequired(RejectedError):
    smtp_code = 530
    enhanced = "5.7.0"
    summary = "must issue a STARTTLS command first"


class UnknownSender(RejectedError):
    smtp_code = 550
    enhanced = "5.7.1"
    summary = "sender is not a known partner"


class OutsideNetworks(UnknownSender):
    summary = "the partner does not send from this address"


class RelayDenied(RejectedError):
    smtp_code = 550
    enhanced = "5.7.1"
    summary = "relaying denied"


class MessageTooBig(RejectedError):
    smtp_code = 552
    enhanced = "5.3.4"
    summary = "message too big"


class DecryptedTooBig(MessageTooBig):
    """The decrypted content passes its cap, or expands from the ciphertext more than allowed
    (a compression bomb): gpg is stopped as soon as it does."""

    summary = "the decrypted content is too big"


class MalformedMessage(RejectedError):
    """The message cannot be taken apart: MIME structure over its limits (depth, parts, headers,
    boundaries) or a structure the parser cannot read. Input never draws a 4xx."""

    smtp_code = 550
    enhanced = "5.6.0"
    summary = "malformed message"


class SessionRefused(GatewayError):
    """A session refused or cut off before any message: too many sessions (from one address, or
    in all), too many commands that make no progress. The client may come back later."""

    smtp_code = 421
    enhanced = "4.7.0"
    transient = True
    summary = "too many sessions, try again later"


class IdleTooLong(SessionRefused):
    enhanced = "4.4.2"
    summary = "idle too long, closing"


class SessionTooLong(SessionRefused):
    enhanced = "4.4.2"
    summary = "session time limit reached"


class TooManyRecipients(GatewayError):
    smtp_code = 452
    enhanced = "4.5.3"
    transient = True
    summary = "too many recipients"


class CannotDecrypt(RejectedError):
    smtp_code = 550
    enhanced = "5.7.5"
    summary = "cannot decrypt the message"


class BadSignature(RejectedError):
    smtp_code = 550
    enhanced = "5.7.7"
    summary = "bad or unexpected signature"


class NotPgpMime(RejectedError):
    """Not a PGP/MIME message as RFC 3156 defines it: inline PGP, cleartext parts, wrong layout."""

    smtp_code = 550
    enhanced = "5.6.1"
    summary = "message must be PGP/MIME multipart/encrypted"


class NotForUs(CannotDecrypt):
    summary = "the message is not encrypted to our key"


class NotIntegrityProtected(CannotDecrypt):
    summary = "the message is not integrity protected (no MDC or AEAD)"


class DamagedCiphertext(CannotDecrypt):
    summary = "the ciphertext is damaged"


class NotSigned(BadSignature):
    summary = "the message is not signed"


class SeveralSignatures(BadSignature):
    summary = "exactly one signature is required"


class SignatureMismatch(BadSignature):
    summary = "the signature does not match the signed content"


class UnknownSigner(BadSignature):
    summary = "signed by an unknown key"


class UnexpectedSigner(BadSignature):
    summary = "not signed by the key pinned for this partner"


class SignerKeyExpired(BadSignature):
    summary = "the signing key has expired"


class SignerKeyRevoked(BadSignature):
    summary = "the signing key is revoked"


class ConflictingReference(RejectedError):
    smtp_code = 550
    enhanced = "5.7.1"
    summary = "reference already received with other content"


class InvalidForm(RejectedError):
    """The document is not a valid form: not XML, hostile XML, unknown form or schema errors."""

    smtp_code = 550
    enhanced = "5.6.0"
    summary = "invalid form"


class KeyUnusable(RejectedError):
    """A key cannot be used: ours to sign, or a partner's to encrypt to (missing, expired, revoked).

    Raised before anything is sent; nothing is ever signed with another key or sent in clear.
    """

    smtp_code = 554
    enhanced = "5.7.0"
    summary = "key unusable"


class BadPassphrase(KeyUnusable):
    """Our secret key is there but the configured passphrase (or its absence) does not unlock it."""

    summary = "the passphrase does not unlock our key"


class CannotStart(GatewayError):
    """Something outside the configuration keeps the gateway from starting: its SMTP address is
    taken, another gateway holds the spool, the database cannot be reached. The command exits 1
    with this one line."""

    smtp_code = 421
    enhanced = "4.3.0"
    transient = True
    summary = "cannot start"


class LedgerOutdated(GatewayError):
    """The ledger's schema is not the one this gateway needs (older, never made, or unknown): the
    command refuses, exit 2, with one line that names the command to run when there is one."""

    smtp_code = 421
    enhanced = "4.3.0"
    transient = True
    summary = "the ledger's schema is not this gateway's"

    def __init__(self, detail: str, *, upgradable: bool) -> None:
        super().__init__(detail)
        self.upgradable = upgradable

    def line(self, config_file: str | None) -> str:
        """The one line: the reason and, when an upgrade is the remedy, the command for it."""
        if not self.upgradable:
            return self.detail
        option = f"-c {config_file} " if config_file else ""
        return f"{self.detail}: run `gateway {option}db upgrade`"


class StoreUnavailable(GatewayError):
    smtp_code = 451
    enhanced = "4.3.0"
    transient = True
    summary = "cannot store the message now, try again later"


class StorageFull(StoreUnavailable):
    smtp_code = 452
    enhanced = "4.3.1"
    summary = "insufficient system storage, try again later"


class SubmissionRefused(RejectedError):
    """A handler's form cannot be sent as it is: unknown partner, a form of another channel, an
    InReplyTo that names nothing we received, a Reference that is not ours or already used.
    Nothing was queued; the command exits 1 with this reason."""

    smtp_code = 554
    enhanced = "5.6.0"
    summary = "form not sent"


class IllegalTransition(Exception):
    """A state change its machine's transition table does not list: a fault in the code, never
    an answer to a partner (no SMTP reply). Raised before anything is written."""

    def __init__(self, machine: str, source: str, target: str, why: str = "") -> None:
        self.machine = machine
        self.source = source
        self.target = target
        reason = why or "not in the transition table"
        super().__init__(f"illegal {machine} transition {source} -> {target}: {reason}")


class SearchRefused(RejectedError):
    """A search that cannot run as asked: empty, too long, an unknown kind, no purpose. Nothing
    was searched or logged; the command exits 1 with this reason, the API answers 400."""

    smtp_code = 554
    enhanced = "5.5.4"
    summary = "search refused"


class ReportTooLarge(SearchRefused):
    """A data-subject report with more exchanges than its output takes (the console's PDF):
    refused before anything is recorded; narrow it, or make it with `gateway subject-report`."""

    summary = "report too large"


class DeskUnavailable(GatewayError):
    """The desks' mail store (Dovecot, by LMTP or IMAP) cannot take or show a copy now: not
    reachable, a temporary (4xx) answer, a connection lost. The copy is tried again later."""

    smtp_code = 451
    enhanced = "4.4.1"
    transient = True
    summary = "the desks' mail store is not available, try again later"


class DeskRefused(GatewayError):
    """The desks' mail store refused a copy for good (a 5xx LMTP answer: no such mailbox, over
    quota for good, a message it will not store). The item is set aside for an operator."""

    smtp_code = 550
    enhanced = "5.1.1"
    transient = False
    summary = "the desks' mail store refused the copy"
