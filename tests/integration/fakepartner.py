"""A partner's SMTP server for the delivery tests: aiosmtpd on port 0 in the test's own loop, with
or without STARTTLS, that records what it receives and answers what the test tells it to.

    partner = FakePartner(tls=server_context(cert, key))
    await partner.start()
    partner.fail("data", "451 4.3.0 try again later")  # the next DATA gets 451, then all is well
    partner.fail("connect", "421 4.3.2 busy", times=3)
    partner.fail("data", DROP)  # cut the connection in the middle of DATA
    partner.fail("mail", DROP)  # cut it when MAIL comes
    partner.fail("noop", "421 4.4.2 idle too long")  # what a kept session hears when checked
    partner.close_sessions()  # close idle connections, as a server's idle timeout does
    await partner.stop(); ...; await partner.start()  # down (refused), then up on the same port
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

DROP = "drop"
STAGES = ("connect", "noop", "mail", "rcpt", "data")


@dataclass(frozen=True)
class Received:
    """One message as the partner took it: the envelope, the bytes, whether under TLS."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool


@dataclass
class Pki:
    """A test CA, a server certificate it signed (for 127.0.0.1 and mx.partner.example), and a
    self-signed certificate that chains to nothing the client trusts."""

    ca: Path
    cert: Path
    key: Path
    stranger_cert: Path
    stranger_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(folder: Path) -> Pki:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Test Partner CA",
             "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    key, csr, cert = folder / "mx.key", folder / "mx.csr", folder / "mx.crt"
    _openssl("req", *ec, "-subj", "/CN=mx.partner.example", "-keyout", str(key), "-out", str(csr))
    extensions = folder / "mx.ext"
    extensions.write_text("subjectAltName=DNS:mx.partner.example,IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip
    stranger_cert, stranger_key = folder / "stranger.crt", folder / "stranger.key"
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=mx.partner.example",
             "-addext", "subjectAltName=DNS:mx.partner.example,IP:127.0.0.1",
             "-keyout", str(stranger_key), "-out", str(stranger_cert))  # fmt: skip
    return Pki(ca, cert, key, stranger_cert, stranger_key)


def certificate_from_ca(pki: Pki, name: str, days: int) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 from the test CA of ``pki``, valid ``days`` days from
    now (negative: expired that many days ago); its (certificate, key) files beside the CA's."""
    folder = pki.ca.parent
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    _openssl("req", *ec, "-subj", "/CN=mx.partner.example", "-keyout", str(key), "-out", str(csr))
    extensions = folder / f"{name}.ext"
    extensions.write_text("subjectAltName=DNS:mx.partner.example,IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki.ca), "-CAkey", str(folder / "ca.key"),
        "-CAcreateserial", "-days", str(days), "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


@dataclass
class FakePartner:
    """The partner's server. ``tls`` None: STARTTLS is not offered. ``data_delay``: seconds the
    server waits before answering DATA (to make sessions overlap)."""

    tls: ssl.SSLContext | None = None
    data_delay: float = 0.0
    port: int = 0
    received: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # MAIL, RCPT, DATA, STARTTLS as seen
    connects: int = 0  # TCP connections accepted, greeted or not
    connections: int = 0  # SMTP sessions (greeted with 220)
    open_sessions: int = 0
    max_concurrent: int = 0
    noops: int = 0  # NOOP commands received
    quits: int = 0  # QUIT commands received
    faults: dict[str, deque[str]] = field(default_factory=lambda: {s: deque() for s in STAGES})
    _server: asyncio.Server | None = None
    _protocols: set[asyncio.BaseProtocol] = field(default_factory=set)

    def fail(self, stage: str, reply: str, times: int = 1) -> None:
        """Answer ``reply`` (or DROP the connection) at ``stage`` the next ``times`` times."""
        if stage not in STAGES:
            raise ValueError(f"stage is one of {STAGES}")
        self.faults[stage].extend([reply] * times)

    def take(self, stage: str) -> str | None:
        return self.faults[stage].popleft() if self.faults[stage] else None

    async def start(self) -> None:
        """Listen on 127.0.0.1: on a free port the first time, on the same port after stop()."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host="127.0.0.1", port=self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and cut open sessions: connections are refused until start()."""
        if self._server is not None:
            self._server.close()
            for protocol in list(self._protocols):
                transport = getattr(protocol, "transport", None)
                if transport is not None:
                    transport.abort()
            await self._server.wait_closed()
            self._server = None

    def close_sessions(self) -> None:
        """Close every open session from the server's side (TLS close, FIN), as a server does
        with clients idle past its timeout; the server goes on listening."""
        for protocol in list(self._protocols):
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.close()

    def session_opened(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocols.add(protocol)
        self.connections += 1
        self.open_sessions += 1
        self.max_concurrent = max(self.max_concurrent, self.open_sessions)

    def session_closed(self, protocol: asyncio.BaseProtocol) -> None:
        if protocol in self._protocols:
            self._protocols.discard(protocol)
            self.open_sessions -= 1

    def _protocol(self) -> asyncio.BaseProtocol:
        self.connects += 1
        greeting = self.take("connect")
        if greeting is not None:
            return _Refuser(greeting)
        return _PartnerSMTP(
            self,
            _Recorder(self),
            hostname="mx.partner.example",
            ident="fake partner",
            tls_context=self.tls,
            data_size_limit=1 << 20,
            decode_data=False,
        )


class _Refuser(asyncio.Protocol):
    """A server that greets with an error (e.g. 421) and hangs up."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        if self.greeting != DROP:
            transport.write(f"{self.greeting}\r\n".encode())
        transport.close()


class _PartnerSMTP(SMTP):
    """aiosmtpd's server, counting sessions and able to drop a connection in the middle of DATA."""

    def __init__(self, partner: FakePartner, handler: Any, **options: Any) -> None:
        super().__init__(handler, **options)
        self.partner = partner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:  # not the second call made by STARTTLS
            self.partner.session_opened(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.partner.session_closed(self)
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        if self.partner.faults["data"] and self.partner.faults["data"][0] == DROP:
            self.partner.take("data")
            self.partner.commands.append("DATA")
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")  # the first line of the message, then cut
            assert isinstance(self.transport, asyncio.Transport)
            self.transport.abort()
            return
        await super().smtp_DATA(arg)


class _Recorder:
    """The aiosmtpd handler: faults first, then record and accept."""

    def __init__(self, partner: FakePartner) -> None:
        self.partner = partner

    def handle_STARTTLS(self, server: Any, session: Any, envelope: Any) -> bool:
        self.partner.commands.append("STARTTLS")
        return True

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        self.partner.noops += 1
        return self.partner.take("noop") or "250 2.0.0 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.partner.quits += 1
        return "221 2.0.0 bye"

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.partner.commands.append("MAIL")
        fault = self.partner.take("mail")
        if fault == DROP:
            server.transport.abort()  # the connection cut as MAIL came
            return "421 4.4.2 closing"  # never heard: the connection is gone
        if fault is not None:
            return fault
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.partner.commands.append("RCPT")
        fault = self.partner.take("rcpt")
        if fault is not None:
            return fault
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.partner.commands.append("DATA")
        if self.partner.data_delay:
            await asyncio.sleep(self.partner.data_delay)
        fault = self.partner.take("data")
        if fault is not None:
            return fault
        self.partner.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                tls=session.ssl is not None,
            )
        )
        return "250 2.0.0 accepted"
