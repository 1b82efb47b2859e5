"""Benchmark: outbound delivery by the Courier against aiosmtplib alone, to one STARTTLS sink.

All sides send to the same in-process aiosmtpd sink (STARTTLS required, a self-signed
certificate that the partner's ``tls_ca`` names, a handler that only records), in the same run:

- (a) forms sealed by the gateway (sign + encrypt with python-gnupg, 2 threads), each recorded
  ``queued`` in a SQLite ledger and put in the durable outbound spool as ``gateway send`` does,
  then delivered by ``Courier.run_once``: timed from the first seal to the last ledger update;
- (b) the Courier alone on ``--count`` already-sealed spool items: claim, STARTTLS sessions
  (``connections_per_partner``, each kept for several messages), MAIL/RCPT/DATA, then for each
  message the ledger move to ``sent``, the receipt deadline, the audit entry and the spool move
  to done/, all durable (SQLite synchronous=FULL, fsync);
- baseline: aiosmtplib alone sending the same sealed bytes to the same sink over the same number
  of connections, opened with STARTTLS inside the timing and kept for several messages, one
  SSLContext for all: no spool, no ledger.

One Courier serves every pass, as in the service: its sessions stay open between passes for
``--keep-sessions`` (``[outbound] keep_sessions``, default PT30S), so after the warm-up its passes
start on sessions already open (a NOOP each); ``--keep-sessions PT0S`` opens them in every pass,
as the baseline does. The STARTTLS handshakes the sink completed in (a) and (b) are reported.

Each round runs the three in turn on fresh items; rates are medians over the rounds. The sink
and the clients share this process and its event loop, as the baseline's do: on 2 cores the
SMTP work of both ends fills one core, and whatever the Courier does in its thread besides
(claims, ledger, audit, spool moves) competes with it for the GIL, so (b) / baseline is about
SMTP / (SMTP + recording) in CPU per message.

Measured here (2 cores, 300 messages, 2 connections; ratio (b) / baseline): at first 0.19-0.25
(413/s against 1625/s), about 6 statements per message and a directory fsync per move, in
threads; recorded in batches (one UPDATE ... RETURNING, one INSERT each for events, receipt
deadlines and audit entries, one directory sync for the moves to done/, each item read once):
0.33; claims ahead of the sessions and records in batches of about 64: 0.57-0.61; few large
batches (claims growing to 256, records every 512 messages or 1 s, and at the end of a pass):
0.77-0.79; lighter reads (the heads of ledger rows, the queue scanned and read with os calls):
0.79-0.87 over six runs. A pass of 1,500 messages, whose records overlap its sending, ~0.77.

    .venv/bin/python bench/outbound.py [--count 300] [--rounds 3] [--connections 2]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import resource
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiosmtplib
from benchkit import write_results
from sqlalchemy import Engine, func, select

from gateway.core import config as configuration
from gateway.core.clock import SystemClock
from gateway.core.config import BUILTIN_FORMS
from gateway.crypto import pgpmime, sealing
from gateway.crypto.openpgp import GnuPG
from gateway.forms.catalogue import FormCatalogue
from gateway.outbound import delivery
from gateway.outbound.delivery import Courier
from gateway.store import schema
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, NewMessage, make_engine, messages
from gateway.store.spool import Spool
from gateway.store.states import OutboundState

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
import benchkit  # noqa: E402
import gpgkit  # noqa: E402

SEAL_WORKERS = 2
# The aim of issue 18: the Courier at 0.9 of bare aiosmtplib.
TARGETS = {"delivery_over_aiosmtplib": 0.9}
OUR_ADDRESS = "sirene@ro.example"
PARTNER_ADDRESS = "sirene@no.example"
FORM = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()
CATALOGUE = FormCatalogue.load([(BUILTIN_FORMS, "builtin")])
REFERENCE = re.compile(rb"<Reference>[^<]*</Reference>")


@dataclass
class Sink:
    """(what every side sends to): records envelope and bytes, answers 250."""

    received: list[tuple[str, tuple[str, ...], bytes]] = field(default_factory=list)
    handshakes: int = 0  # STARTTLS handshakes completed

    def handle_STARTTLS(self, server: Any, session: Any, envelope: Any) -> bool:
        self.handshakes += 1
        return True

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if session.ssl is None:
            raise AssertionError("a message outside TLS")
        data = bytes(envelope.original_content or b"")
        self.received.append((envelope.mail_from, tuple(envelope.rcpt_tos), data))
        return "250 2.0.0 recorded"


@dataclass
class World:
    """Everything made before timing: folders, keys, certificate, configuration, the parts."""

    base: Path
    homes: list[Path]
    config: configuration.Config
    gpg: GnuPG
    partner_fingerprint: str
    engine: Engine
    ledger: Ledger
    audit: AuditLog
    spool: Spool
    cert: Path
    next_number: int = 1

    def courier(self) -> Courier:
        return Courier(
            config=self.config,
            ledger=self.ledger,
            spool=self.spool,
            audit=self.audit,
            clock=SystemClock(),
            catalogue=CATALOGUE,
        )

    def numbers(self, count: int) -> list[int]:
        first, self.next_number = self.next_number, self.next_number + count
        return list(range(first, first + count))


def write_config(
    base: Path,
    gnupg_home: Path,
    *,
    ours: str,
    partner: str,
    port: int,
    connections: int,
    keep_sessions: str,
) -> configuration.Config:
    cert = base / "sink.crt"
    path = base / "gateway.toml"
    path.write_text(f"""
[identity]
country = "RO"
address = "{OUR_ADDRESS}"
bureaux = {{ sirene = "RO-SIRENE" }}

[paths]
gnupg_home = "{gnupg_home}"
spool = "{base / "spool"}"

[openpgp]
fingerprint = "{ours}"

[smtp.listen]
hostname = "gateway.ro.example"

[[partners]]
code = "NO-SIRENE"
channel = "sirene"
country = "NO"
address = "{PARTNER_ADDRESS}"
smtp_host = "127.0.0.1"
smtp_port = {port}
fingerprint = "{partner}"
tls_ca = "{cert}"

[[desks]]
name = "sirene"
maildir = "{base / "desks" / "sirene"}"

[outbound]
connections_per_partner = {connections}
timeout = "PT60S"
keep_sessions = "{keep_sessions}"
""")
    return configuration.load(path)


def build_world(base: Path, homes: list[Path], port: int, args: argparse.Namespace) -> World:
    gateway_home, partner_home = gpgkit.new_home(), gpgkit.new_home()
    homes += [gateway_home, partner_home]
    gpg = GnuPG(gateway_home)
    ours = gpg.generate("RO-SIRENE", OUR_ADDRESS)
    partner = gpgkit.make_key(partner_home, f"NO <{PARTNER_ADDRESS}>")
    gpg.import_partner_key(gpgkit.export(partner_home, partner))
    config = write_config(
        base,
        gateway_home,
        ours=ours,
        partner=partner,
        port=port,
        connections=args.connections,
        keep_sessions=args.keep_sessions,
    )
    config.paths.spool.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url)
    schema.upgrade(engine)
    clock = SystemClock()
    return World(
        base=base,
        homes=homes,
        config=config,
        gpg=gpg,
        partner_fingerprint=partner,
        engine=engine,
        ledger=Ledger(engine, clock),
        audit=AuditLog(engine, clock),
        spool=Spool(config.paths.spool / "outbound"),
        cert=base / "sink.crt",
    )


# ---------------------------------------------------------------------------------- queueing


def seal(world: World, number: int) -> tuple[str, bytes]:
    """Our form number ``number``, signed and encrypted to the partner, as PGP/MIME."""
    reference = f"RO-2026-{number:06d}"
    form = REFERENCE.sub(f"<Reference>{reference}</Reference>".encode(), FORM, count=1)
    envelope = pgpmime.Envelope(
        sender=OUR_ADDRESS,
        recipient=PARTNER_ADDRESS,
        subject=pgpmime.subject("sirene", "G", reference),
        message_id=f"<{reference}.bench@gateway.ro.example>",
        date=format_datetime(datetime.now(UTC)),
    )
    return reference, sealing.seal(world.gpg, form, [], world.partner_fingerprint, envelope)


def queue(world: World, reference: str, sealed: bytes) -> None:
    """What `gateway send` does after sealing: the ledger row, the audit entry, the spool item."""
    key = f"form.{reference}"
    now = datetime.now(UTC)
    with world.audit.begin() as connection:
        world.ledger.record_in(
            connection,
            NewMessage(
                direction="outbound",
                partner="NO-SIRENE",
                channel="sirene",
                form="G",
                reference=reference,
                message_id=f"<{reference}.bench@gateway.ro.example>",
                priority="normal",
                content_sha256="0" * 64,
                raw_sha256=hashlib.sha256(sealed).hexdigest(),
                state=OutboundState.QUEUED,
                spool_key=key,
                desk="sirene",
            ),
        )
        world.audit.append_in(connection, "queued", partner="NO-SIRENE", form="G",
                              reference=reference)  # fmt: skip
        world.spool.put(
            key,
            sealed,
            {
                "to": PARTNER_ADDRESS,
                "partner": "NO-SIRENE",
                "reference": reference,
                "form": "G",
                "kind": "form",
                "message_id": f"<{reference}.bench@gateway.ro.example>",
                "queued_at": now.isoformat(),
            },
        )


def seal_and_queue(world: World, numbers: Sequence[int]) -> list[bytes]:
    def one(number: int) -> bytes:
        reference, sealed = seal(world, number)
        queue(world, reference, sealed)
        return sealed

    with ThreadPoolExecutor(max_workers=SEAL_WORKERS) as pool:
        return list(pool.map(one, numbers))


def sent_count(world: World) -> int:
    with world.engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(messages).where(messages.c.state == "sent")
            ).scalar_one()
        )


# ---------------------------------------------------------------------------------- passes


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


@dataclass(frozen=True)
class Pass:
    rate: float
    seconds: float
    cpu_ms: float  # this process (sink included) per message


async def timed(count: int, work: Callable[[], Awaitable[object]]) -> Pass:
    cpu = cpu_seconds()
    start = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - start
    return Pass(count / elapsed, elapsed, (cpu_seconds() - cpu) * 1000 / count)


async def baseline(
    port: int, context: ssl.SSLContext, payloads: Sequence[bytes], width: int
) -> None:
    """aiosmtplib alone: ``width`` STARTTLS connections, each sending from one shared queue."""
    queue = list(reversed(payloads))

    async def worker() -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, start_tls=True, tls_context=context, timeout=60
        )
        await client.connect()
        while queue:
            await client.sendmail(OUR_ADDRESS, [PARTNER_ADDRESS], queue.pop())
        await client.quit()

    await asyncio.gather(*(worker() for _ in range(width)))


async def run(world: World, sink: Sink, port: int, args: argparse.Namespace) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(world.cert))
    courier = world.courier()
    # Warm-up: the agent, the database, the first sessions of each side.
    warm = await asyncio.to_thread(seal_and_queue, world, world.numbers(args.warmup))
    await courier.run_once()
    await baseline(port, context, warm, args.connections)
    passes: dict[str, list[Pass]] = {"sealed_and_delivered": [], "delivery": [], "aiosmtplib": []}
    seal_seconds: list[float] = []
    courier_handshakes = 0
    for number in range(1, args.rounds + 1):
        # (a) seal, queue and deliver.
        numbers = world.numbers(args.count)
        phases: list[float] = []
        handshakes = sink.handshakes

        async def sealed_and_delivered() -> None:
            start = time.perf_counter()
            await asyncio.to_thread(seal_and_queue, world, numbers)  # noqa: B023
            phases.append(time.perf_counter() - start)  # noqa: B023
            if await courier.run_once() != args.count:
                raise AssertionError("the courier did not try every item")

        a = await timed(args.count, sealed_and_delivered)
        seal_seconds.append(phases[0])
        # (b) delivery alone, from items sealed and queued before the clock.
        payloads = await asyncio.to_thread(seal_and_queue, world, world.numbers(args.count))
        before = len(sink.received)

        async def delivery() -> None:
            if await courier.run_once() != args.count:
                raise AssertionError("the courier did not try every item")

        b = await timed(args.count, delivery)
        courier_handshakes += sink.handshakes - handshakes
        got = sorted(data for _, _, data in sink.received[before:])
        if got != sorted(payloads):
            raise AssertionError("the sink did not get exactly the sealed bytes")
        # Baseline: the same bytes, aiosmtplib alone.
        c = await timed(
            args.count,
            lambda: baseline(port, context, payloads, args.connections),  # noqa: B023
        )
        for key, done in (("sealed_and_delivered", a), ("delivery", b), ("aiosmtplib", c)):
            passes[key].append(done)
        print(
            f"round {number}: (a) sealed and delivered {a.rate:.1f}/s "
            f"(sealing and queueing {args.count / phases[0]:.1f}/s), "
            f"(b) delivery {b.rate:.1f}/s, aiosmtplib alone {c.rate:.1f}/s"
        )
    total = args.warmup + 2 * args.rounds * args.count
    if sent_count(world) != total:
        raise AssertionError(f"{sent_count(world)} messages sent in the ledger, {total} expected")
    if len(sink.received) != total + args.warmup + args.rounds * args.count:
        raise AssertionError(f"the sink recorded {len(sink.received)} messages")
    if world.audit.verify():
        raise AssertionError("the audit chain is broken")
    await courier.close()
    results = figures(world, args, passes, seal_seconds, sink)
    results["keep_sessions"] = args.keep_sessions
    results["courier_starttls_handshakes"] = courier_handshakes
    return results


def figures(
    world: World,
    args: argparse.Namespace,
    passes: dict[str, list[Pass]],
    seal_seconds: list[float],
    sink: Sink,
) -> dict[str, Any]:
    rate = {key: statistics.median(p.rate for p in done) for key, done in passes.items()}
    mean_bytes = statistics.mean(len(data) for _, _, data in sink.received)
    return {
        "benchmark": "outbound",
        **benchkit.versions(),
        "cpus": os.cpu_count(),
        "count": args.count,
        "rounds": args.rounds,
        "connections_per_partner": args.connections,
        "seal_workers": SEAL_WORKERS,
        "warmup": args.warmup,
        "message_mean_bytes": round(mean_bytes),
        "ledger": "sqlite (WAL, synchronous=FULL)",
        "courier_batches": {
            name: getattr(delivery, name)
            for name in (
                "CLAIM_BATCH",
                "CLAIM_AHEAD",
                "CLAIM_AHEAD_BYTES",
                "SETTLE_BATCH",
                "SETTLE_BYTES",
                "SETTLE_DELAY",
            )
        },
        "targets": TARGETS,
        "per_second": {
            "sealed_and_delivered_a": round(rate["sealed_and_delivered"], 1),
            "delivery_b": round(rate["delivery"], 1),
            "aiosmtplib_baseline": round(rate["aiosmtplib"], 1),
            "sealing_and_queueing": round(
                statistics.median(args.count / seconds for seconds in seal_seconds), 1
            ),
        },
        "rounds_per_second": {
            key: [round(p.rate, 1) for p in done] for key, done in passes.items()
        },
        "ratio_delivery_over_aiosmtplib": round(rate["delivery"] / rate["aiosmtplib"], 3),
        "ratio_sealed_and_delivered_over_aiosmtplib": round(
            rate["sealed_and_delivered"] / rate["aiosmtplib"], 3
        ),
        # This process's CPU per message (the sink's share included; gpg and its agent not).
        "cpu_ms_per_message": {
            key: round(statistics.median(p.cpu_ms for p in done), 2) for key, done in passes.items()
        },
    }


def report(results: dict[str, Any]) -> None:
    rate = results["per_second"]
    print(
        f"(a) sealed (sign+encrypt, {SEAL_WORKERS} threads), queued and delivered: "
        f"{rate['sealed_and_delivered_a']}/s (sealing and queueing alone "
        f"{rate['sealing_and_queueing']}/s)"
    )
    print(
        f"(b) Courier delivery of sealed spool items, {results['connections_per_partner']} "
        f"connections: {rate['delivery_b']}/s (keep_sessions {results['keep_sessions']}, "
        f"{results['courier_starttls_handshakes']} STARTTLS handshakes in the rounds' passes)"
    )
    print(
        f"baseline: aiosmtplib alone, same bytes and connections: {rate['aiosmtplib_baseline']}/s"
    )
    target = TARGETS["delivery_over_aiosmtplib"]
    ratio = results["ratio_delivery_over_aiosmtplib"]
    print(
        f"ratio (b) / baseline = {ratio:.2f} (target >= {target}: "
        f"{'met' if ratio >= target else 'MISSED'}); (a) / baseline "
        f"{results['ratio_sealed_and_delivered_over_aiosmtplib']:.2f}"
    )
    cpu = results["cpu_ms_per_message"]
    print("CPU ms per message in this process: " + ", ".join(f"{k} {v}" for k, v in cpu.items()))


async def main_async(base: Path, homes: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    cert, key = benchkit.certificate(base, "sink", "mx.no.example")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(cert), str(key))
    sink = Sink()
    server = await benchkit.starttls_server(sink, server_context, "mx.no.example")
    port = int(server.sockets[0].getsockname()[1])
    world = await asyncio.to_thread(build_world, base, homes, port, args)
    try:
        return await run(world, sink, port, args)
    finally:
        server.close()
        await server.wait_closed()
        world.gpg.close()
        world.engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="messages per pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=2, help="connections_per_partner")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--keep-sessions", default="PT30S", help="[outbound] keep_sessions (PT0S: none)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "outbound.json")
    args = parser.parse_args()
    if min(args.count, args.rounds, args.connections, args.warmup) < 1:
        parser.error("--count, --rounds, --connections and --warmup must be >= 1")
    base = Path(tempfile.mkdtemp(prefix="gwo-", dir="/tmp"))
    homes: list[Path] = []
    try:
        load_start = [round(load, 2) for load in os.getloadavg()]
        results = asyncio.run(main_async(base, homes, args))
        results["load_average_at_start"] = load_start
        results["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    finally:
        for home in homes:
            gpgkit.kill_agent(home)
            shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    report(results)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
