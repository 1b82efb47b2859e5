"""The SMTP server partners deliver to: session policy on aiosmtpd, the pipeline inside DATA."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Executor
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway import __version__
from gateway.core import messagelog
from gateway.core.config import Config, IPNetwork, in_networks
from gateway.core.errors import (
    ConfigError,
    GatewayError,
    IdleTooLong,
    MalformedMessage,
    MessageTooBig,
    OutsideNetworks,
    RelayDenied,
    SessionRefused,
    SessionTooLong,
    TLSRequired,
    TooManyRecipients,
    UnknownSender,
)
from gateway.core.tally import ACCEPTED, REFUSED, TIME_TO_250, Tally, code
from gateway.inbound.pipeline import Accepted, Pipeline
from gateway.inbound.smtp_data import ChunkedData

log = logging.getLogger("gateway.smtp")

IDENT = f"IPC Gateway {__version__}"
MAX_RECIPIENTS = 1
# NOOP, RSET, HELP or VRFY in a row, and refused MAIL or RCPT in a session, before it is closed.
MAX_WITHOUT_PROGRESS = 10
MAX_REFUSED_COMMANDS = 20  # as Postfix's smtpd_hard_error_limit
# Addresses remembered as partners' because they delivered from them (the oldest forgotten).
LEARNED_ADDRESSES = 4096
# A client refused sessions again and again gets one audit line a minute, with the count.
SESSION_AUDIT_EVERY = 60.0
_TOO_BIG = MessageTooBig().smtp_reply()


class Limits:
    """Per-server session limits and the sessions that are open, by client address and in all.

    Strangers may hold at most ``max_sessions - reserved`` sessions: the rest are kept for the
    addresses of partners (their configured ``networks``, and the addresses partners delivered
    from since the start). No address may hold more than ``per_address`` sessions."""

    def __init__(
        self,
        *,
        max_sessions: int,
        idle_timeout: float,
        session_timeout: float,
        per_address: int | None = None,
        reserved: int = 0,
        partner_networks: Sequence[IPNetwork] = (),
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.session_timeout = session_timeout
        self.per_address = per_address or max_sessions
        self.reserved = reserved
        self.partner_networks = tuple(partner_networks)
        self.open = 0
        self.by_address: Counter[str] = Counter()
        self._learned: OrderedDict[str, None] = OrderedDict()
        self.in_data = 0
        self.last_data_end = 0.0  # time.monotonic() when a DATA last ended
        self.drained = asyncio.Event()
        self.drained.set()

    def admit(self, address: str) -> str | None:
        """Count a new session from ``address``, or say why it cannot start."""
        if self.by_address[address] >= self.per_address:
            return "too many sessions from your address"
        if self.open >= self.max_sessions or (
            self.open >= self.max_sessions - self.reserved and not self.is_partner(address)
        ):
            return "too many sessions"
        self.open += 1
        self.by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self.open -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]

    def is_partner(self, address: str) -> bool:
        """Whether ``address`` is a partner's: in its networks, or one it delivered from."""
        return address in self._learned or in_networks(address, self.partner_networks)

    def learn(self, address: str) -> None:
        """A partner delivered from ``address``: it may use the reserved sessions from now on."""
        self._learned[address] = None
        self._learned.move_to_end(address)
        while len(self._learned) > LEARNED_ADDRESSES:
            self._learned.popitem(last=False)

    def busy(self, quiet: float) -> bool:
        """Whether a session is inside DATA, or one left it less than ``quiet`` seconds ago (a
        sender's next message is on its way). Safe to ask from any thread."""
        return self.in_data > 0 or time.monotonic() - self.last_data_end < quiet


class GatewaySMTP(ChunkedData):
    """aiosmtpd's SMTP with our replies and limits: sessions per address and in all, session
    time, progress, size, refusals per session; DATA read in pieces (``ChunkedData``)."""

    def __init__(self, handler: Handler, limits: Limits, **kwargs: Any) -> None:
        super().__init__(handler, timeout=limits.idle_timeout, **kwargs)
        self.handler = handler
        self.limits = limits
        self.client = ""  # the client's IP address
        self._counted = False
        self._in_greeting = False
        self._deadline: asyncio.TimerHandle | None = None
        self._last_progress = time.monotonic()
        self._stalling = False  # the command being handled makes no progress
        self._without_progress = 0  # such commands in a row
        self._refused = 0  # refused MAIL and RCPT commands in this session
        self._last_status = ""

    def _cb_client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super()._cb_client_connected(reader, writer)
        # Idle means no progress: aiosmtpd restarts its timer on every command, so a NOOP every
        # 59 s would hold a session for ever. Progress is noted here, when the next line is
        # asked for (as soon as the one before it was handled): every command but NOOP, RSET,
        # HELP and VRFY; in DATA, every line ended in what arrives (data_received). The timer,
        # when it fires, counts from there.
        read_line = reader.readuntil

        def readuntil(separator: bytes = b"\n") -> Coroutine[Any, Any, bytes]:
            if self._stalling:
                self._stalling = False
            else:
                self._last_progress = time.monotonic()
            return read_line(separator)

        setattr(reader, "readuntil", readuntil)  # noqa: B010

    def data_received(self, data: bytes) -> None:
        # DATA is read in pieces (smtp_data.read_data), not a line at a time: a line ended in
        # what arrives is progress there, as aiosmtpd's asking for the next line was.
        if self.reading_data and b"\r\n" in data:
            self._last_progress = time.monotonic()
        super().data_received(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this again with the TLS transport after STARTTLS: count a session once.
        first = not self._counted
        if first:
            peer = transport.get_extra_info("peername")
            self.client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            refusal = self.limits.admit(self.client)
            if refusal is not None:
                super().connection_made(transport)
                self.handler.session_refused(self.client, refusal)
                if isinstance(transport, asyncio.WriteTransport):
                    transport.write(_line(SessionRefused(f"{refusal}, try again later")))
                transport.close()
                return
            self._counted = True
        super().connection_made(transport)
        if first:
            self._deadline = self.loop.call_later(self.limits.session_timeout, self._session_over)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.limits.release(self.client)
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(error)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd restarts the idle timer for every command; the running one is kept instead
        (``_timeout_cb`` measures from the last progress): a NOOP must not extend a session."""
        handle = self._timeout_handle
        if duration is None and handle is not None and not handle.cancelled():
            return
        super()._reset_timeout(duration)

    def _timeout_cb(self) -> None:
        """No progress for too long: say so (aiosmtpd closes without a word). If there was
        progress since the timer started, wait for what is left from then on."""
        idle = time.monotonic() - self._last_progress
        if idle < self.limits.idle_timeout:
            self._reset_timeout(self.limits.idle_timeout - idle)
            return
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            log.info("idle timeout: closing")
            transport.write(_line(IdleTooLong()))
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def _no_progress(self) -> bool:
        """Count a command that makes no progress; False once there were too many in a row
        (the session is then closed)."""
        self._stalling = True
        self._without_progress += 1
        if self._without_progress <= MAX_WITHOUT_PROGRESS:
            return True
        self.handler.session_refused(self.client, "too many commands without progress")
        await self.push(SessionRefused("too many commands without progress, closing").smtp_reply())
        self._close()
        return False

    async def smtp_NOOP(self, arg: str) -> None:
        if await self._no_progress():
            await super().smtp_NOOP(arg)

    async def smtp_RSET(self, arg: str) -> None:
        if await self._no_progress():
            await super().smtp_RSET(arg)

    async def smtp_HELP(self, arg: str) -> None:
        if await self._no_progress():
            await super().smtp_HELP(arg)

    async def smtp_VRFY(self, arg: str) -> None:
        if await self._no_progress():
            await super().smtp_VRFY(arg)

    async def smtp_MAIL(self, arg: str) -> None:
        await super().smtp_MAIL(arg)
        await self._after_transaction_command()

    async def smtp_RCPT(self, arg: str) -> None:
        await super().smtp_RCPT(arg)
        await self._after_transaction_command()

    async def _after_transaction_command(self) -> None:
        if self._last_status.startswith("2"):
            self._without_progress = 0
            return
        if not self._last_status.startswith("5"):
            return
        self._refused += 1
        if self._refused >= MAX_REFUSED_COMMANDS:
            self.handler.session_refused(self.client, "too many refused commands")
            await self.push(SessionRefused("too many refused commands, closing").smtp_reply())
            self._close()

    def _close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    async def smtp_EHLO(self, arg: str) -> None:
        self._in_greeting = True  # RFC 2034: no enhanced codes in EHLO and HELO replies
        try:
            await super().smtp_EHLO(arg)
        finally:
            self._in_greeting = False

    async def smtp_HELO(self, arg: str) -> None:
        self._in_greeting = True
        try:
            await super().smtp_HELO(arg)
        finally:
            self._in_greeting = False

    def _session_over(self) -> None:
        """A session that outlives the limit (a client trickling DATA) is cut off."""
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            log.warning("session time limit reached: closing")
            transport.write(_line(SessionTooLong()))
            transport.close()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parser, with a short way for the plain ``<local@domain>`` of
        every partner's MAIL and RCPT (the email package's header parser costs more than the
        rest of the command): the same address and rest, or aiosmtpd's own answer."""
        plain = _PLAIN_ANGLE_ADDRESS.match(arg)
        if plain is None or "(" in arg:
            return super()._getaddr(arg)
        address = plain.group("address")
        local_part = address.rpartition("@")[0]
        if self.local_part_limit and len(local_part) > self.local_part_limit:
            return None, None
        return address, arg[plain.end() :]

    async def push(self, status: AnyStr) -> None:
        # aiosmtpd's own replies carry no RFC 3463 code; every reply of ours does.
        if isinstance(status, str) and not self._in_greeting:
            if status.startswith(_AIOSMTPD_DATA_REFUSALS):  # it never calls handle_DATA then
                mail_from = self.envelope.mail_from if self.envelope else None
                self.handler.data_refused(self.client, status, mail_from or "")
            status = with_enhanced_code(status)
            self._last_status = status
        await super().push(status)


def with_enhanced_code(status: str) -> str:
    """Add the RFC 3463 code a reply of aiosmtpd's lacks (ours carry theirs already)."""
    if status.startswith("552 Error"):
        return _TOO_BIG
    code, separator, text = status.partition(" ")
    if separator != " " or code not in _ENHANCED or _HAS_ENHANCED.match(text):
        return status
    return f"{code} {_ENHANCED[code]} {text}"


_ENHANCED = {
    "221": "2.0.0",
    "250": "2.0.0",
    "421": "4.3.2",
    "451": "4.3.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "550": "5.0.0",
    "554": "5.0.0",
}
# What aiosmtpd answers by itself at the end of a DATA it did not take: too big, line too long.
_AIOSMTPD_DATA_REFUSALS = ("552 Error", "500 Line too long")
_HAS_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}( |$)")
# A dot-atom address in angle brackets, white space around: what GatewaySMTP._getaddr parses
# itself (anything else, comments included, goes to aiosmtpd's parser).
_PLAIN_ANGLE_ADDRESS = re.compile(
    r"[ \t]*<(?P<address>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*"
)


class Handler:
    """The aiosmtpd handler: who may send, to whom, and what happens to the data."""

    def __init__(
        self,
        config: Config,
        pipeline: Pipeline,
        executor: Executor,
        after: Callable[[Accepted], None],
        limits: Limits,
        *,
        tally: Tally | None = None,
    ) -> None:
        self.config = config
        self.tally = tally or Tally()
        self.pipeline = pipeline
        self.executor = executor
        self.after = after
        self.limits = limits
        # Per client address: when its last session refusal was audited, and refusals since.
        self._session_refusals: dict[str, tuple[float, int]] = {}

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Advertise enhanced status codes; no AUTH: partners are known by address and key."""
        session.host_name = hostname
        kept = [line for line in responses if not line[4:].upper().startswith("AUTH")]
        return [*kept[:-1], "250-ENHANCEDSTATUSCODES", kept[-1]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        partner = self.config.partner_by_address(address)
        if partner is None:
            log.info("refused MAIL from an unknown sender")
            return self._refuse(UnknownSender(), _client(server))
        if partner.require_tls and session.ssl is None:
            return self._refuse(TLSRequired(), _client(server), partner.code)
        if not partner.sends_from(_client(server)):
            log.info("refused MAIL as %s from outside its networks", partner.code)
            return self._refuse(OutsideNetworks(), _client(server), partner.code)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() != self.config.identity.address.lower():
            partner = self.config.partner_by_address(envelope.mail_from or "")
            return self._refuse(RelayDenied(), _client(server), partner.code if partner else "")
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return TooManyRecipients().smtp_reply()
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if len(raw) > self.config.listen.max_message_bytes:
            return _TOO_BIG
        self.limits.in_data += 1
        self.limits.drained.clear()
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            accepted = await loop.run_in_executor(
                self.executor, self.pipeline.accept, envelope.mail_from or "", raw
            )
        except GatewayError as error:
            partner = self.config.partner_by_address(envelope.mail_from or "")
            reason = type(error).__name__
            self.tally.count(REFUSED, code(partner.code if partner else ""), reason)
            messagelog.event(
                "inbound",
                "refused",
                partner=partner.code if partner else "",
                detail=f"{error.smtp_code} {error.enhanced} {reason}",
                to_reply=time.perf_counter() - started,
            )
            return error.smtp_reply()
        finally:
            self.limits.in_data -= 1
            self.limits.last_data_end = time.monotonic()
            if self.limits.in_data == 0:
                self.limits.drained.set()
        took = time.perf_counter() - started
        self.tally.count(ACCEPTED, code(accepted.partner), code(accepted.form))
        self.tally.observe(TIME_TO_250, took, code(accepted.partner))
        messagelog.event(
            "inbound",
            "duplicate, receipt sent again" if accepted.duplicate else "accepted",
            reference=accepted.reference,
            partner=accepted.partner,
            form=accepted.form,
            to_250=took,
        )
        self.limits.learn(_client(server))
        self.after(accepted)
        status = "duplicate, already accepted" if accepted.duplicate else "accepted"
        return f"250 2.0.0 {status} {accepted.reference}"

    # ------------------------------------------------------------------ refusals, audited

    def _refuse(self, error: GatewayError, client: str, partner: str = "") -> str:
        """The reply for a refused command, its audit line (and, for a partner, the record
        the duty desk's notice is made from) written off the event loop."""
        self._audit(error, client, partner)
        return error.smtp_reply()

    def data_refused(self, client: str, status: str, mail_from: str) -> None:
        """aiosmtpd refused a DATA by itself (too big, a line too long): audited here."""
        error = MessageTooBig() if status.startswith("552") else MalformedMessage("line too long")
        partner = self.config.partner_by_address(mail_from)
        self._audit(error, client, partner.code if partner else "")

    def session_refused(self, client: str, why: str) -> None:
        """A session refused or cut off: audited at most once a minute per client address,
        with the count of the others."""
        now = time.monotonic()
        since, count = self._session_refusals.get(client, (now, 0))
        if count and now - since < SESSION_AUDIT_EVERY:
            self._session_refusals[client] = (since, count + 1)
            return
        if len(self._session_refusals) > LEARNED_ADDRESSES:
            self._session_refusals.clear()
        self._session_refusals[client] = (now, 1)
        more = f" (and {count - 1} more since the last line)" if count > 1 else ""
        self._submit(
            lambda: self.pipeline.audit.append(
                "session.refused", reason=f"4.7.0 {why} {client}{more}"
            )
        )

    def _audit(self, error: GatewayError, client: str, partner: str) -> None:
        self.tally.count(REFUSED, code(partner), type(error).__name__)

        def write() -> None:
            reason = f"{error.enhanced} {type(error).__name__} {client}"
            self.pipeline.audit.append("rejected", partner=partner, reason=reason)
            if partner:
                self.pipeline.ledger.record_refusal(partner, "", error)

        self._submit(write)

    def _submit(self, write: Callable[[], object]) -> None:
        def run() -> None:
            try:
                write()
            except Exception:
                log.exception("cannot audit a refusal")

        try:
            self.executor.submit(run)
        except RuntimeError:  # stopping: the workers are gone
            log.warning("a refusal during shutdown was not audited")


def _line(error: GatewayError) -> bytes:
    """An error's reply as a line written straight to the transport (outside a command)."""
    return error.smtp_reply().encode("ascii", "replace") + b"\r\n"


def _client(server: SMTP) -> str:
    return server.client if isinstance(server, GatewaySMTP) else ""


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server's STARTTLS context from the configured certificate, TLS 1.2 at least."""
    listen = config.listen
    if listen.tls_cert is None or listen.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(listen.tls_cert), str(listen.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            str(config.source or "configuration"),
            "smtp.listen.tls_cert",
            f"cannot load the certificate and key: {getattr(exc, 'strerror', None) or exc}",
        ) from None
    return context


def protocol_factory(config: Config, handler: Handler, limits: Limits) -> Callable[[], SMTP]:
    context = tls_context(config)
    listen = config.listen

    def make() -> SMTP:
        return GatewaySMTP(
            handler,
            limits,
            data_size_limit=listen.max_message_bytes,
            hostname=listen.hostname,
            ident=IDENT,
            tls_context=context,
            enable_SMTPUTF8=False,
            decode_data=False,
        )

    return make
