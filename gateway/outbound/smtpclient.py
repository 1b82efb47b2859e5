"""The SMTP client of outbound delivery, the only importer of aiosmtplib: routes, sessions with
STARTTLS and verified certificates, one message over a kept session, the NOOP check of a session
kept idle between passes, replies made into Attempts.

A session requires STARTTLS when its route requires TLS, and the server's certificate is verified
against the route's CA file or the system's store; nothing is said in clear to such a server but
EHLO. What a try came to is an :class:`Attempt`: 250 is ``sent``; 5xx to MAIL, RCPT or DATA is
``rejected``; any other reply, a network, TLS or time failure is ``retry``.
"""

from __future__ import annotations

import functools
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
from aiosmtplib.email import quote_address

from gateway.core.config import Config
from gateway.core.errors import ConfigError

WORDS_LIMIT = 500  # the partner's reply text quoted in a notice
SUMMARY_LIMIT = 300  # our own one-line account of an attempt (events, audit reasons)
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?=\s|$)")
_ADDRESS = re.compile(r"[\x21-\x7e]{3,254}")

Verdict = Literal["sent", "retry", "rejected", "refused", "failed"]
FINAL: frozenset[str] = frozenset({"sent", "rejected", "refused", "failed"})


def partner_words(text: str, limit: int = WORDS_LIMIT) -> str:
    """A partner's reply text as a notice may quote it: one line, no control characters."""
    # Replies are nearly always printable already ("2.0.0 Ok: queued as ..."): two calls each
    # on every message sent, so the character by character pass is kept for those that are not.
    if not text.isprintable():
        text = "".join(char if char.isprintable() else " " for char in text)
    return " ".join(text.split())[:limit]


def header_is_clean(message: bytes) -> bool:
    """No bare CR, bare LF or NUL in the header section (up to the first empty line)."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    rest = head.replace(b"\r\n", b"")
    return not any(char in rest for char in (b"\r", b"\n", b"\x00"))


def address_is_clean(address: object) -> bool:
    """An envelope address of printable ASCII only: no space, CR, LF or other control."""
    return isinstance(address, str) and bool(_ADDRESS.fullmatch(address))


# ---------------------------------------------------------------------------- what happened


@dataclass(frozen=True)
class Attempt:
    """What one try of one item came to. ``summary`` is ours, one line of codes and plain words
    (no address): it goes to logs, events and the audit. ``words`` is the partner's reply text,
    cleaned, for the spool's ``last_error`` and the desk's notice only."""

    verdict: Verdict
    summary: str
    code: int | None = None
    words: str = ""

    @property
    def error(self) -> str:
        """The ``last_error`` of the item: our summary and, if any, what the partner said."""
        return f"{self.summary}: {self.words}"[:WORDS_LIMIT] if self.words else self.summary

    def to_meta(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "summary": self.summary,
            "code": self.code,
            "words": self.words,
        }

    @classmethod
    def from_meta(cls, data: object) -> Attempt | None:
        if not isinstance(data, dict) or data.get("verdict") not in FINAL:
            return None
        code = data.get("code")
        return cls(
            verdict=data["verdict"],
            summary=str(data.get("summary", ""))[:SUMMARY_LIMIT],
            code=code if isinstance(code, int) else None,
            words=partner_words(str(data.get("words", ""))),
        )


def _reply(code: int, message: str, stage: str, *, in_transaction: bool) -> Attempt:
    """An SMTP reply other than success: 5xx inside a transaction is final, the rest transient."""
    enhanced = _ENHANCED.match(partner_words(message, 20))
    summary = f"{code} {enhanced.group()}" if enhanced else str(code)
    verdict: Verdict = "rejected" if in_transaction and 500 <= code < 600 else "retry"
    return Attempt(verdict, f"{summary} at {stage}", code, partner_words(f"{code} {message}"))


def _failure(exc: BaseException, stage: str) -> Attempt:
    """A failure below the SMTP replies (network, TLS, time): always worth another try."""
    cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPConnectError) else exc
    if isinstance(cause, ConnectionRefusedError):
        summary = "connection refused"
    elif isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        summary = f"timed out at {stage}"
    elif isinstance(cause, ssl.SSLCertVerificationError):
        summary = f"TLS certificate not accepted: {cause.verify_message or cause.reason}"
    elif isinstance(cause, ssl.SSLError):
        summary = f"TLS failed: {cause.reason or type(cause).__name__}"
    elif isinstance(cause, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        summary = f"connection lost at {stage}"
    elif isinstance(cause, OSError):
        summary = f"network error at {stage}: {cause.strerror or type(cause).__name__}"
    else:
        summary = f"SMTP error at {stage}: {type(exc).__name__}"
    return Attempt("retry", partner_words(summary, SUMMARY_LIMIT))


class Unreachable(Exception):
    """No session could be opened: everything queued for that route waits for the next try."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.summary)
        self.attempt = attempt


# ---------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Route:
    """Where mail goes: a partner's own server, or the relay."""

    host: str
    port: int
    require_tls: bool
    context: ssl.SSLContext


@dataclass(frozen=True)
class Routes:
    """The routes of a configuration: one per partner, and the relay's (notices to desks go
    only there). Loading a CA store costs ~20 ms, so each CA file gets one SSLContext."""

    partners: dict[str, Route]
    relay: Route | None

    @classmethod
    def of(cls, config: Config) -> Routes:
        """ConfigError when a CA file cannot be loaded."""
        source = str(config.source or "configuration")
        contexts: dict[Path | None, ssl.SSLContext] = {}

        def context(cafile: Path | None, key: str) -> ssl.SSLContext:
            if cafile not in contexts:
                try:
                    contexts[cafile] = tls_context(cafile)
                except (OSError, ssl.SSLError) as exc:
                    reason = getattr(exc, "strerror", None) or str(exc)
                    raise ConfigError(
                        source, key, f"cannot load the CA certificates: {reason}"
                    ) from None
            return contexts[cafile]

        relay = None
        if config.relay is not None:
            relay = Route(
                config.relay.host.strip("[]"),
                config.relay.port,
                config.relay.require_tls,
                context(config.relay.tls_ca, "smtp.relay.tls_ca"),
            )
        partners = {}
        for index, partner in enumerate(config.partners):
            partners[partner.code] = relay or Route(
                partner.smtp_host.strip("[]"),
                partner.smtp_port,
                partner.require_tls,
                context(partner.tls_ca, f"partners[{index}].tls_ca"),
            )
        return cls(partners, relay)


def tls_context(cafile: Path | None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and host name against ``cafile``
    (PEM) or the system's store; TLS 1.2 at least. OSError or ssl.SSLError when it cannot load."""
    made = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    made.minimum_version = ssl.TLSVersion.TLSv1_2
    return made


def ca_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot serve as a partner's ``tls_ca`` (unreadable, not PEM, no
    certificate in it); None when it can."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if b"-----BEGIN CERTIFICATE-----" not in text:
        return "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        return f"its certificates cannot be read: {exc.reason or exc}"
    if not context.cert_store_stats().get("x509"):
        return "it holds no certificate"
    return None


# ---------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class TlsCheck:
    """What `gateway partners check` found at a partner's SMTP server: whether it answered,
    offered STARTTLS and completed it with a certificate verified for its host name, until when
    that certificate is valid; ``problem`` names the first thing that failed."""

    reached: bool = False
    starttls: bool = False
    verified: bool = False
    protocol: str | None = None
    not_after: datetime | None = None
    problem: str | None = None


async def check_tls(
    host: str, port: int, context: ssl.SSLContext, local_hostname: str, timeout: float
) -> TlsCheck:
    """Connect, EHLO, STARTTLS with the certificate checks delivery makes, EHLO again, QUIT.
    Nothing is sent beyond that."""
    client = aiosmtplib.SMTP(
        hostname=host.strip("[]"),
        port=port,
        local_hostname=local_hostname,
        start_tls=False,
        tls_context=context,
        timeout=timeout,
    )
    stage, reached, offered = "connect", False, False
    try:
        await client.connect()
        reached, stage = True, "EHLO"
        await _hello(client)
        if not client.supports_extension("starttls"):
            return TlsCheck(reached=True, problem="STARTTLS not offered")
        offered, stage = True, "STARTTLS"
        await client.starttls()
        ssl_object = client.get_transport_info("ssl_object")
        if ssl_object is None:
            return TlsCheck(reached=True, starttls=True, problem="TLS not established")
        peer = ssl_object.getpeercert()
        not_after = peer.get("notAfter") if peer else None
        stage = "EHLO"
        await _hello(client)
        return TlsCheck(
            reached=True,
            starttls=True,
            verified=True,
            protocol=ssl_object.version(),
            not_after=(
                datetime.fromtimestamp(ssl.cert_time_to_seconds(str(not_after)), UTC)
                if not_after
                else None
            ),
        )
    except aiosmtplib.SMTPResponseException as reply:
        attempt = _reply(reply.code, reply.message, stage, in_transaction=False)
        return TlsCheck(reached=reached, starttls=offered, problem=attempt.error)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return TlsCheck(reached=reached, starttls=offered, problem=_failure(exc, stage).summary)
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()


# ---------------------------------------------------------------------------- sessions


class Session:
    """One SMTP session, kept for several messages as an MTA does."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self._client = client

    @classmethod
    async def open(cls, route: Route, local_hostname: str, timeout: float) -> Session:
        """A session ready for MAIL: greeting, EHLO, and STARTTLS (verified) when offered; when
        TLS is required and not offered, nothing else is said. Raises Unreachable."""
        client = aiosmtplib.SMTP(
            hostname=route.host,
            port=route.port,
            local_hostname=local_hostname,
            start_tls=False,  # we decide below, after EHLO: required means required
            tls_context=route.context,
            timeout=timeout,
        )
        stage = "connect"
        try:
            await client.connect()
            stage = "EHLO"
            await _hello(client)
            if client.supports_extension("starttls"):
                stage = "STARTTLS"
                await client.starttls()  # the certificate and host name are checked here
                if client.get_transport_info("ssl_object") is None:
                    raise Unreachable(Attempt("retry", "TLS not established"))
                stage = "EHLO"
                await _hello(client)
            elif route.require_tls:
                raise Unreachable(Attempt("retry", "STARTTLS not offered"))
        except Unreachable:
            client.close()
            raise
        except aiosmtplib.SMTPResponseException as reply:
            client.close()
            attempt = _reply(reply.code, reply.message, stage, in_transaction=False)
            raise Unreachable(attempt) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise Unreachable(_failure(exc, stage)) from None
        return cls(client)

    async def send(self, sender: str, recipient: str, payload: bytes) -> tuple[Attempt, bool, str]:
        """MAIL, RCPT, DATA: (what came of it, whether the session can carry another message,
        the stage reached)."""
        client = self._client
        stage = "MAIL"
        try:
            options = [f"SIZE={len(payload)}"] if client.supports_extension("size") else []
            await _mail(client, sender, options)
            stage = "RCPT"
            await _rcpt(client, recipient)
            stage = "DATA"
            response = await client.data(payload)
        except aiosmtplib.SMTPResponseException as reply:
            attempt = _reply(reply.code, reply.message, stage, in_transaction=True)
            if reply.code == 421 or not client.is_connected:
                return attempt, False, stage
            try:
                await client.rset()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                return attempt, False, stage
            return attempt, True, stage
        except ValueError:  # an address aiosmtplib will not put on a command line
            return Attempt("refused", "refused: an address not fit for SMTP"), False, stage
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return _failure(exc, stage), False, stage
        enhanced = _ENHANCED.match(partner_words(response.message, 20))
        code = f"{response.code} {enhanced.group()}" if enhanced else str(response.code)
        words = partner_words(f"{response.code} {response.message}")
        return Attempt("sent", code, response.code, words), True, stage

    async def ready(self, timeout: float) -> bool:
        """Whether a session kept idle since an earlier pass can carry another message: still
        connected, and answering NOOP with 250 within ``timeout``. The partner may have closed
        it meanwhile (its idle timeout, a restart); nothing of a message has been said on it."""
        if not self._client.is_connected:
            return False
        try:
            await self._client.noop(timeout=timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            return False
        return self._client.is_connected

    @property
    def connected(self) -> bool:
        return self._client.is_connected

    async def quit(self) -> None:
        """QUIT politely; a session that cannot is just closed."""
        if not self._client.is_connected:
            return
        try:
            await self._client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._client.close()

    def close(self) -> None:
        """Drop the connection at once."""
        self._client.close()


@functools.lru_cache(maxsize=256)
def _quoted(address: str) -> bytes:
    """An envelope address as aiosmtplib's ``mail`` and ``rcpt`` put it on the command line (its
    own ``quote_address``: ``email.utils.parseaddr``, then its check against smuggled
    parameters), kept: a gateway sends from one address to a few partners' (bounded: others
    are quoted again). ValueError as there for an address that cannot go on a command line."""
    return quote_address(address).encode("ascii")


async def _mail(client: aiosmtplib.SMTP, sender: str, options: list[str]) -> None:
    """``client.mail(sender, options=options)``, the address quoted once per address rather than
    once per message (two parses of 7 to 11 us a message on the event loop, with RCPT)."""
    if client.is_ehlo_or_helo_needed:  # never after Session.open; mail() says EHLO first
        await client.mail(sender, options=options)
        return
    line = [b"FROM:" + _quoted(sender), *(option.encode("ascii") for option in options)]
    response = await client.execute_command(b"MAIL", *line)
    if response.code != 250:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)


async def _rcpt(client: aiosmtplib.SMTP, recipient: str) -> None:
    """``client.rcpt(recipient)``, the address quoted as in ``_mail``."""
    if client.is_ehlo_or_helo_needed:
        await client.rcpt(recipient)
        return
    response = await client.execute_command(b"RCPT", b"TO:" + _quoted(recipient))
    if response.code not in (250, 251):
        raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)


async def _hello(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()  # no extensions then: no STARTTLS, no SIZE
