"""Desk copies by LMTP to Dovecot (RFC 2033), each once: the only code that speaks LMTP.

Python's ``smtplib.LMTP``, in the hand-off's own thread: the hand-off is synchronous and runs
in a worker thread already, so a blocking client costs no event loop anything, and smtplib
bounds what it reads (a reply line of at most 8,192 bytes, a timeout on every read). One
recipient per transaction: RFC 2033 answers DATA once per accepted recipient, and smtplib reads
one reply to DATA, which with one recipient is that recipient's. A 2xx is delivered, a 4xx
(and a lost connection or a timeout) is DeskUnavailable, tried again later, a 5xx is
DeskRefused, set aside for an operator.

Idempotence: a copy that an earlier attempt may have delivered (one the caller does not name
``unseen``) is looked for first over IMAP by its Message-ID (``imapcheck``); found, it is not
sent again. So a crash between Dovecot's 250 and the ledger's record, or a reply to DATA lost
on the way, never leaves two copies on a desk.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Collection, Sequence
from types import TracebackType

from gateway.core.config import DeskDelivery
from gateway.core.errors import DeskRefused, DeskUnavailable, GatewayError
from gateway.desks.imapcheck import CopyFinder, read_password
from gateway.desks.sink import DeskCopy

log = logging.getLogger("gateway.desks")

_LINE_END = re.compile(rb"\r?\n")
Outcome = GatewayError | OSError | None


class ConnectionLost(DeskUnavailable):
    """The LMTP session broke (closed, reset, timed out): nothing more goes on it."""


def verdict(step: str, code: int, text: bytes | str) -> GatewayError | None:
    """What an LMTP reply means: None for 2xx, DeskUnavailable for 4xx, DeskRefused otherwise."""
    if 200 <= code < 300:
        return None
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    detail = f"LMTP {step}: {code} {' '.join(words.split())[:200]}"
    return DeskUnavailable(detail) if 400 <= code < 500 else DeskRefused(detail)


class LmtpSession:
    """One LMTP connection: LHLO once, then one transaction per copy."""

    def __init__(
        self, address: str, hostname: str, timeout: float, tls: ssl.SSLContext | None = None
    ) -> None:
        """Connect and LHLO; over TCP with ``tls``, STARTTLS (refused: DeskUnavailable, never
        on in clear) and LHLO again."""
        host, port = (address, 0) if address.startswith("/") else _split(address)
        try:
            self.client = smtplib.LMTP(host, port, local_hostname=hostname, timeout=timeout)
        except (smtplib.SMTPException, OSError) as error:
            raise DeskUnavailable(f"LMTP {address}: {type(error).__name__}: {error}") from error
        try:
            self._hello(address)
            if tls is not None and port:
                if not self.client.has_extn("starttls"):
                    raise DeskUnavailable(f"LMTP {address} offers no STARTTLS: not sent in clear")
                self.client.starttls(context=tls)
                self._hello(address)
        except (smtplib.SMTPException, OSError, ssl.SSLError) as error:
            self.client.close()
            raise DeskUnavailable(f"LMTP {address}: {type(error).__name__}: {error}") from error
        except DeskUnavailable:
            self.close()
            raise

    def _hello(self, address: str) -> None:
        code, text = self.client.ehlo()
        if (refused := verdict("LHLO", code, text)) is not None:
            raise DeskUnavailable(f"{address}: {refused}")

    def send(self, mailbox: str, data: bytes) -> None:
        """One copy to ``mailbox``: MAIL FROM:<>, RCPT TO, DATA (CRLF line ends). Raises
        DeskUnavailable or DeskRefused; after a refusal the session is reset for the next."""
        try:
            for step in ("MAIL FROM", "RCPT TO", "DATA"):
                try:
                    code, text = self._command(step, mailbox, data)
                except smtplib.SMTPResponseException as answer:
                    code, text = answer.smtp_code, answer.smtp_error
                if (refused := verdict(step, code, text)) is not None:
                    self.client.rset()
                    raise refused
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            raise ConnectionLost(f"LMTP connection lost: {type(error).__name__}") from error

    def _command(self, step: str, mailbox: str, data: bytes) -> tuple[int, bytes | str]:
        if step == "MAIL FROM":
            return self.client.mail("")
        if step == "RCPT TO":
            return self.client.rcpt(mailbox)
        return self.client.data(_LINE_END.sub(b"\r\n", data))

    def close(self) -> None:
        try:
            self.client.quit()
        except (smtplib.SMTPException, OSError):
            self.client.close()

    def __enter__(self) -> LmtpSession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LmtpSink:
    """The DeskSink of [desk_delivery] method = "lmtp": one LMTP session per call, the copies
    that may be there already looked for over IMAP first (one session per mailbox)."""

    def __init__(self, settings: DeskDelivery, hostname: str) -> None:
        if settings.lmtp is None:
            raise ValueError('[desk_delivery] method = "lmtp" needs lmtp')
        self.address = settings.lmtp
        self.settings = settings
        self.hostname = hostname
        self.finder = CopyFinder(settings, read_password(settings))
        self.tls = (
            ssl.create_default_context(cafile=settings.tls_ca)
            if settings.lmtp_tls and settings.lmtp_socket is None
            else None
        )

    def deliver(self, copies: Sequence[DeskCopy], *, unseen: Collection[str] = ()) -> list[Outcome]:
        outcome: list[Outcome] = [None] * len(copies)
        to_send = self._not_found(copies, unseen, outcome)
        if not to_send:
            return outcome
        timeout = self.settings.timeout.total_seconds()
        try:
            session = LmtpSession(self.address, self.hostname, timeout, self.tls)
        except DeskUnavailable as error:
            for index in to_send:
                outcome[index] = error
            return outcome
        with session:
            for position, index in enumerate(to_send):
                copy = copies[index]
                try:
                    session.send(copy.desk.mailbox_user, copy.data)
                except DeskRefused as error:
                    log.error("desk copy %s refused by LMTP: %s", copy.name, error)
                    outcome[index] = error
                except DeskUnavailable as error:
                    log.warning("desk copy %s not delivered by LMTP: %s", copy.name, error)
                    outcome[index] = error
                    if isinstance(error, ConnectionLost):  # the rest cannot go on this session
                        for rest in to_send[position + 1 :]:
                            outcome[rest] = error
                        break
        return outcome

    def _not_found(
        self, copies: Sequence[DeskCopy], unseen: Collection[str], outcome: list[Outcome]
    ) -> list[int]:
        """The copies to send: those named ``unseen``, and the others that IMAP does not find
        (those it finds are left done; those it cannot look for get its error)."""
        by_mailbox: dict[str, list[int]] = {}
        for index, copy in enumerate(copies):
            if copy.name not in unseen:
                by_mailbox.setdefault(copy.desk.mailbox_user, []).append(index)
        found: set[int] = set()
        for mailbox, indexes in by_mailbox.items():
            try:
                present = self.finder.present(mailbox, [copies[i].message_id for i in indexes])
            except GatewayError as error:
                for index in indexes:
                    outcome[index] = error
                continue
            for index in indexes:
                if copies[index].message_id in present:
                    log.info(
                        "desk copy %s is on its desk already: not sent again", copies[index].name
                    )
                    found.add(index)
        return [
            index for index in range(len(copies)) if index not in found and outcome[index] is None
        ]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
