"""The SMTP server partners deliver to: session policy on aiosmtpd, the pipeline inside DATA."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway import __version__
from gateway.config import Config
from gateway.errors import (
    ConfigError,
    GatewayError,
    MessageTooBig,
    RelayDenied,
    TLSRequired,
    UnknownSender,
)
from gateway.inbound.pipeline import Accepted, Pipeline

log = logging.getLogger("gateway.smtp")

IDENT = f"IPC Gateway {__version__}"
MAX_RECIPIENTS = 1
_TOO_BIG = MessageTooBig().smtp_reply()


class Limits:
    """Per-server session limits and the count of sessions that are open or inside DATA."""

    def __init__(self, *, max_sessions: int, idle_timeout: float, session_timeout: float) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.session_timeout = session_timeout
        self.open = 0
        self.in_data = 0
        self.last_data_end = 0.0  # time.monotonic() when a DATA last ended
        self.drained = asyncio.Event()
        self.drained.set()

    def busy(self, quiet: float) -> bool:
        """Whether a session is inside DATA, or one left it less than ``quiet`` seconds ago (a
        sender's next message is on its way). Safe to ask from any thread."""
        return self.in_data > 0 or time.monotonic() - self.last_data_end < quiet


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP with our replies and limits: concurrent sessions, session time, size."""

    def __init__(self, handler: Handler, limits: Limits, **kwargs: Any) -> None:
        super().__init__(handler, timeout=limits.idle_timeout, **kwargs)
        self.limits = limits
        self._counted = False
        self._in_greeting = False
        self._deadline: asyncio.TimerHandle | None = None
        self._last_read = time.monotonic()

    def _cb_client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super()._cb_client_connected(reader, writer)
        # aiosmtpd restarts its idle timer on command lines only: a sender that keeps sending
        # DATA lines is not idle. Every line asked for is noted (a line is asked for as soon as
        # the one before it came) and the timer, when it fires, counts from the last one.
        # Restarting the timer itself for every line cost a timer handle per line.
        read_line = reader.readuntil

        def readuntil(separator: bytes = b"\n") -> Coroutine[Any, Any, bytes]:
            self._last_read = time.monotonic()
            return read_line(separator)

        setattr(reader, "readuntil", readuntil)  # noqa: B010

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this again with the TLS transport after STARTTLS: count a session once.
        first = not self._counted
        if first:
            self._counted = True
            self.limits.open += 1
        super().connection_made(transport)
        if not first:
            return
        if self.limits.open > self.limits.max_sessions:
            log.warning("too many sessions (%d): refusing one", self.limits.open)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(b"421 4.7.0 too many sessions, try again later\r\n")
            transport.close()
            return
        self._deadline = self.loop.call_later(self.limits.session_timeout, self._session_over)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.limits.open -= 1
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        """Idle too long: say so (aiosmtpd closes without a word). Not idle if a line was read
        since the timer started: then it waits for what is left from that line on."""
        idle = time.monotonic() - self._last_read
        if idle < self.limits.idle_timeout:
            self._reset_timeout(self.limits.idle_timeout - idle)
            return
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            log.info("idle timeout: closing")
            transport.write(b"421 4.4.2 idle too long, closing\r\n")
        super()._timeout_cb()  # type: ignore[no-untyped-call]

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
            transport.write(b"421 4.4.2 session time limit reached\r\n")
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
            await super().push(with_enhanced_code(status))
            return
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
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.executor = executor
        self.after = after
        self.limits = limits

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
            return UnknownSender().smtp_reply()
        if partner.require_tls and session.ssl is None:
            return TLSRequired().smtp_reply()
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
            return RelayDenied().smtp_reply()
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients"
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
            return error.smtp_reply()
        except Exception:
            log.exception("unexpected failure in the pipeline")
            return "451 4.3.0 local error, try again later"
        finally:
            self.limits.in_data -= 1
            self.limits.last_data_end = time.monotonic()
            if self.limits.in_data == 0:
                self.limits.drained.set()
        log.debug(
            "250 for %s in %.0f ms", accepted.reference, (time.perf_counter() - started) * 1000
        )
        self.after(accepted)
        status = "duplicate, already accepted" if accepted.duplicate else "accepted"
        return f"250 2.0.0 {status} {accepted.reference}"


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
