"""The partner's side of bench/inbound.py, in a process of its own: the SMTP clients that send
the messages, the partner's server that takes our receipts, and the bare sink (a).

bench/inbound.py starts :func:`serve` with multiprocessing's spawn method and drives it over a
pipe, one command and one answer at a time, so that the process that hosts the gateway runs the
gateway alone: what these clients and servers cost (TLS, SMTP, the sink's writes) is counted
here, in this process's own CPU, which each answer reports, and never as the gateway's. The
process stops when told to, when the pipe closes, and when its parent dies (Linux's
``PR_SET_PDEATHSIG``), so a benchmark that fails or is killed leaves no load generator behind.

Commands (a tuple, the name first) and their answers:

- ``("connect", port, clients)``: open ``clients`` connections with STARTTLS, kept until
  ``close``; answers ``("connected",)``.
- ``("send", indices)``: the messages at ``indices`` (of those given at start) through the open
  connections, each taking the next message as soon as it has its reply; answers ``("sent",
  Sent)``.
- ``("close",)``: QUIT on the open connections; ``("closed",)``.
- ``("cpu",)``: this process's CPU seconds so far; ``("cpu", seconds)``.
- ``("stop",)``: close the servers and end; ``("stopped", receipts taken, messages sunk,
  STARTTLS handshakes of the receipts' sessions)``.

A command that fails answers ``("error", traceback)``; the process goes on to the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import signal
import ssl
import sys
import time
import traceback
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiosmtplib
import benchkit

OUR_ADDRESS = "sirene@ro.example"
PARTNER_ADDRESS = "sirene@no.example"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class Message:
    reference: str
    raw: bytes  # the whole PGP/MIME message, as sent over SMTP
    entity: bytes  # the signed MIME entity inside: what a decryption must give back


@dataclass(frozen=True)
class Setup:
    """What the process needs from the start: the messages and where to listen."""

    cert: Path  # the gateway's certificate, also used by the sink and the partner's server
    key: Path
    sink_folder: Path  # (a) writes each message here
    partner_port: int  # where the gateway's configuration says the partner's server listens
    size_limit: int  # the sink's, as the gateway's
    messages: list[Message]


@dataclass(frozen=True)
class Sent:
    """One ``send``: when it started (``time.monotonic``, the same clock in every process on
    Linux), how long until the last reply, each message's time to its reply and the reply, and
    this process's CPU seconds before and after."""

    start: float
    elapsed: float
    latencies: list[float]
    replies: list[str]
    cpu_before: float
    cpu_after: float


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, all its threads."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


class SinkHandler:
    """(a): each message to its own file, fsynced, then 250. The file I/O runs off the loop, in
    a pool of the size of the gateway's, so that the sink is not held back by its clients."""

    def __init__(self, folder: Path, executor: Executor) -> None:
        self.folder = folder
        self.executor = executor
        self.count = 0

    def _write(self, name: str, data: bytes) -> None:
        fd = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        name = f"{self.count:06d}.eml"
        data: bytes = envelope.original_content or b""
        await asyncio.get_running_loop().run_in_executor(self.executor, self._write, name, data)
        return "250 2.0.0 stored"


class PartnerHandler:
    """The partner's server, which takes our receipts (under TLS) and counts them, and the
    STARTTLS handshakes the courier made for them."""

    def __init__(self) -> None:
        self.receipts = 0
        self.handshakes = 0

    def handle_STARTTLS(self, server: Any, session: Any, envelope: Any) -> bool:
        self.handshakes += 1
        return True

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if session.ssl is None:
            raise AssertionError("a receipt outside TLS")
        self.receipts += 1
        return "250 2.0.0 receipt taken"


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The servers' STARTTLS context, made as the gateway makes its own (TLS 1.2 at least)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


async def connected(port: int, context: ssl.SSLContext) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=True, tls_context=context, timeout=120
    )
    await client.connect()
    if client.get_transport_info("ssl_object") is None:
        raise AssertionError("the session is not under TLS")
    return client


class LoadGenerator:
    """The clients and the two servers, on this process's event loop."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.client_context = ssl.create_default_context(cafile=str(setup.cert))
        self.sink_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sink")
        self.sink = SinkHandler(setup.sink_folder, self.sink_pool)
        self.partner = PartnerHandler()
        self.servers: list[asyncio.Server] = []
        self.sessions: list[aiosmtplib.SMTP] = []

    async def start(self) -> int:
        """Start the sink on a port of its own and the partner's server on the configured one;
        both with the gateway's certificate and STARTTLS. Returns the sink's port."""
        context = server_context(self.setup.cert, self.setup.key)
        sink = await benchkit.starttls_server(
            self.sink, context, "sink.ro.example", size=self.setup.size_limit
        )
        partner = await benchkit.starttls_server(
            self.partner, context, "mx.no.example", port=self.setup.partner_port
        )
        self.servers = [sink, partner]
        return int(sink.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self.close()
        for server in self.servers:
            server.close()
            await server.wait_closed()
        self.sink_pool.shutdown(wait=True)

    async def connect(self, port: int, clients: int) -> None:
        await self.close()
        self.sessions = [await connected(port, self.client_context) for _ in range(clients)]

    async def close(self) -> None:
        sessions, self.sessions = self.sessions, []
        for client in sessions:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()

    async def send(self, indices: list[int]) -> Sent:
        """The messages through the open connections, as fast as the replies come."""
        if not self.sessions:
            raise AssertionError("send before connect")
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in indices:
            queue.put_nowait(index)
        latencies: dict[int, float] = {}
        replies: dict[int, str] = {}

        async def worker(client: aiosmtplib.SMTP) -> None:
            while not queue.empty():
                index = queue.get_nowait()
                message = self.setup.messages[index]
                sent = time.perf_counter()
                _errors, reply = await client.sendmail(PARTNER_ADDRESS, [OUR_ADDRESS], message.raw)
                latencies[index] = time.perf_counter() - sent
                replies[index] = reply

        cpu_before = cpu_seconds()
        start = time.monotonic()
        await asyncio.gather(*(worker(client) for client in self.sessions))
        elapsed = time.monotonic() - start
        cpu_after = cpu_seconds()
        return Sent(
            start=start,
            elapsed=elapsed,
            latencies=[latencies[i] for i in indices],
            replies=[replies[i] for i in indices],
            cpu_before=cpu_before,
            cpu_after=cpu_after,
        )


def die_with_parent() -> None:
    """Have the kernel kill this process when the one that started it dies, however it dies."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(1)


def serve(pipe: Connection, setup: Setup) -> None:
    """The process's main: answer the commands on ``pipe`` until ``stop`` or its end."""
    die_with_parent()
    asyncio.run(_serve(pipe, setup))


async def _serve(pipe: Connection, setup: Setup) -> None:
    generator = LoadGenerator(setup)
    try:
        pipe.send(("ready", await generator.start()))
    except Exception:
        pipe.send(("error", traceback.format_exc()))
        return
    try:
        while True:
            try:
                command = await asyncio.to_thread(pipe.recv)
            except EOFError:  # the parent is gone
                return
            if command[0] == "stop":
                break
            try:
                pipe.send(await answer(generator, command))
            except Exception:
                pipe.send(("error", traceback.format_exc()))
    finally:
        await generator.stop()
    pipe.send(
        ("stopped", generator.partner.receipts, generator.sink.count, generator.partner.handshakes)
    )


async def answer(generator: LoadGenerator, command: tuple[Any, ...]) -> tuple[Any, ...]:
    match command:
        case ("connect", int(port), int(clients)):
            await generator.connect(port, clients)
            return ("connected",)
        case ("send", list(indices)):
            return ("sent", await generator.send(indices))
        case ("close",):
            await generator.close()
            return ("closed",)
        case ("cpu",):
            return ("cpu", cpu_seconds())
    raise ValueError(f"unknown command {command!r}")
