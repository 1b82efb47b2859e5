"""Benchmark: PGP/MIME forms over SMTP through a running gateway against a bare sink and plain gpg.

All three sides get the same pre-made messages (signed and encrypted with the gpg command line, as
a partner would, each form with its own Reference), in the same run:

- the gateway, on port 0 in this process with a SQLite ledger and spool in a temporary folder
  and its desk hand-off running as in production (desk delivery and a signed, encrypted receipt
  each, which its courier delivers over STARTTLS to the partner's server, a bare aiosmtpd here),
  fed by ``--clients`` concurrent aiosmtplib clients over STARTTLS, one connection each, reused
  for many messages, one client SSLContext for all. As in production the hand-off waits while
  sessions are inside DATA, up to ``HANDOFF_MAX_WAIT`` seconds per message: a pass shorter than
  that is answered before any hand-off runs, which is why the rate until the hand-off is done
  and the receipts are delivered (``gateway_with_handoff``, the sustained capacity) is reported
  beside the rate to the 250;
- (a) a bare aiosmtpd sink with the same certificate and STARTTLS, whose handler writes each
  message to a file and fsyncs it before the 250, fed by the same clients in the same way;
- (b) plain ``gpg --decrypt`` on the same messages with the gateway's key and home, 2 workers
  (a ThreadPoolExecutor of ``subprocess.run``).

The partner's side runs in a process of its own (bench/loadgen.py, started with multiprocessing's
spawn method and killed with this one): the clients, the partner's server that takes the
receipts, and the sink (a). This process hosts the gateway and the benchmark's coordination
alone, so its CPU is the gateway's: the clients' TLS and SMTP neither count as the gateway's nor
take its event loop or its GIL. The two processes still share the machine's cores, as a gateway
and its partners' traffic would not; the load generator's CPU is reported on its own.

Each round runs the three sides in turn on a fresh slice of ``--count`` messages (the gateway must
see new References); rates are medians over the rounds. The time to 250 runs from MAIL FROM to the
reply to DATA, as the client sees it. A lone message is one sent with one client while the gateway
is idle (its hand-off has finished the one before), after a warm-up. CPU per message is counted,
from just before the first message of a pass until its last 250 and, for the gateway, until its
hand-off is done and the receipts delivered: for this process (``RUSAGE_SELF``: the gateway, or the
thread pool of (b)), its gpg children and the gpg-agent of the gateway's home, and for the load
generator's process (for (a): the sink and its clients together). The gateway's CPU is also split
by stage with the counters the running gateway keeps (``Gateway.cpu``, thread CPU of intake to the
250, the desk copy, the receipt, the delivery's thread hops) and the benchmark's own CPU in this
process (its polling of the spool for the end of the hand-off, its pipe to the load generator),
counted the same way: the rest of this process's CPU is the event loop (the SMTP sessions, served
and delivering) and everything else. Messages are counted at the end: each one on the desk once, in
the sink once, and one receipt each taken by the partner's server.

    .venv/bin/python bench/inbound.py [--count 400] [--rounds 3] [--clients 4] [--lone 50]
        [--protection none|fast|default] [--bodies spool|database --database URL]
        [--workdir DIR] [--settle SECONDS]

``--bodies database`` measures the cost of durability off the node instead: two gateways in
this process, each on a ledger of its own on the PostgreSQL at ``--database``, one keeping the
accepted messages' bodies in its spool (fsync, rename) and one committing them to PostgreSQL in
the transaction of their ledger rows (``[store] bodies = "database"``), fed the same messages
round after round (the order swapped each round); their rates and the ratio database / spool,
to the 250 and with the hand-off, go to bench/results/inbound_bodies.json.

``--protection`` is how the gateway's key is protected: ``none``; ``fast``, a passphrase with a
cheap key derivation (s2k-count 65536, as in the example configuration); ``default``, a passphrase
with gpg's own calibrated derivation, which gpg-agent runs for every decryption and every signature
(about 0.2 s of its CPU each here), so that ``--count`` and ``--lone`` default to 40 and 10. A
passphrase reaches the gateway as in production, from a file of mode 0600 named by
``openpgp.passphrase_file``, and gpg-agent caches none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit import write_results

from gateway.core import config as configuration
from gateway.core.config import BUILTIN_FORMS
from gateway.core.stagecpu import STAGES, StageCpu
from gateway.crypto.openpgp import GnuPG, KeyProtection
from gateway.service.server import HANDOFF_MAX_WAIT, Gateway
from gateway.service.services import open_services
from gateway.store import leases, schema
from gateway.store.ledger import make_engine

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
import benchkit  # noqa: E402
import bodystore  # noqa: E402
import gpgkit  # noqa: E402
import loadgen  # noqa: E402
from loadgen import OUR_ADDRESS, PARTNER_ADDRESS, Message, Sent  # noqa: E402

GPG_WORKERS = 2
FAST_S2K_COUNT = 65536
# Messages per pass and lone messages when not given: gpg's default key protection costs a key
# derivation for every decryption and every signature, so its runs are shorter.
DEFAULT_COUNT = {"none": 400, "fast": 400, "default": 40}
DEFAULT_LONE = {"none": 50, "fast": 50, "default": 10}
TARGETS = {"gateway_over_min_baseline": 0.8, "p99_load_over_p50_lone": 5.0}
FORM = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()
REFERENCE = b"<Reference>NO-2026-000123</Reference>"
SETTLE_POLL = 0.005
SETTLE_LIMIT = 600.0
STAGE_NAMES = {
    "intake": "intake, to the 250",
    "desk": "desk copy and its ledger record",
    "receipt": "receipt sealed and queued",
    "delivery": "delivery: claim and settle",
    "benchmark": "the benchmark's polling and pipe",
    "event_loop_and_rest": "event loop and the rest",
}
BENCHMARK = "benchmark"  # the benchmark's own CPU in the gateway's process, counted apart


@dataclass
class World:
    """Everything made before timing: folders, certificate, keys, configuration, messages."""

    base: Path
    homes: list[Path]
    cert: Path
    key: Path
    config: configuration.Config
    partner_port: int  # where the partner's server takes our receipts
    gateway_home: Path
    passphrase: str | None
    messages: list[Message] = field(default_factory=list)


# ---------------------------------------------------------------------------------- set-up


def write_config(
    base: Path,
    gateway_home: Path,
    fingerprint: str,
    partner: str,
    *,
    protection: KeyProtection,
    partner_port: int,
) -> configuration.Config:
    cert, key = benchkit.certificate(base, "gateway", "gateway.ro.example")
    openpgp = f'fingerprint = "{fingerprint}"\n'
    if protection.passphrase is not None:
        # As in production: the passphrase in a file of mode 0600 that the configuration names.
        secret = base / "passphrase"
        secret.write_text(protection.passphrase + "\n")
        secret.chmod(0o600)
        openpgp += f'passphrase_file = "{secret}"\n'
    if protection.s2k_count is not None:
        openpgp += f"s2k_count = {protection.s2k_count}\n"
    spool, desks = base / "spool", base / "desks"
    path = base / "gateway.toml"
    path.write_text(f"""
[identity]
country = "RO"
address = "{OUR_ADDRESS}"
bureaux = {{ sirene = "RO-SIRENE" }}

[paths]
gnupg_home = "{gateway_home}"
spool = "{spool}"

[openpgp]
{openpgp}
[smtp.listen]
host = "127.0.0.1"
port = 0
hostname = "gateway.ro.example"
tls_cert = "{cert}"
tls_key = "{key}"
max_message_bytes = 262144

[[partners]]
code = "NO-SIRENE"
channel = "sirene"
country = "NO"
address = "{PARTNER_ADDRESS}"
smtp_host = "127.0.0.1"
smtp_port = {partner_port}
tls_ca = "{cert}"
fingerprint = "{partner}"

[[desks]]
name = "sirene"
maildir = "{desks / "sirene"}"

[[desks]]
name = "duty"
maildir = "{desks / "duty"}"

[[routes]]
priority = "urgent"
desk = "duty"

[[routes]]
desk = "sirene"
""")
    return configuration.load(path)


def make_messages(
    partner_home: Path, partner: str, gateway_fpr: str, first: int, count: int
) -> list[Message]:
    """Signed and encrypted by the partner with the gpg command line, 2 at a time.

    Its gpg runs only read the partner's home: they take no lock file there and write no seed
    file, whose creations and removals, one of each a message, would make every file the
    gateway creates dearer for minutes on a disk without a journal (benchkit.file_cost)."""
    quiet = ("--lock-never", "--no-random-seed-file")

    def one(n: int) -> Message:
        reference = f"NO-2026-{n:06d}"
        form = FORM.replace(REFERENCE, f"<Reference>{reference}</Reference>".encode())
        entity = gpgkit.entity(form)
        ciphertext = gpgkit.sign_encrypt(partner_home, [partner], [gateway_fpr], entity, *quiet)
        raw = gpgkit.pgp_mime(ciphertext, PARTNER_ADDRESS, OUR_ADDRESS, "SIRENE G")
        raw = raw.replace(b"<test-1@example.test>", f"<bench-{n}@no.example>".encode())
        return Message(reference, raw, entity)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, range(first, first + count)))


def build_world(base: Path, homes: list[Path], protection: KeyProtection, total: int) -> World:
    gateway_home, partner_home = gpgkit.new_home(), gpgkit.new_home()
    homes += [gateway_home, partner_home]
    ours = GnuPG(gateway_home, protection=protection)
    fingerprint = ours.generate("RO-SIRENE", OUR_ADDRESS)
    partner = gpgkit.make_key(partner_home, f"NO <{PARTNER_ADDRESS}>")
    ours.import_partner_key(gpgkit.export(partner_home, partner))
    gpgkit.import_key(partner_home, ours.export_public().encode())
    partner_port = benchkit.free_port()
    config = write_config(
        base, gateway_home, fingerprint, partner, protection=protection, partner_port=partner_port
    )
    world = World(
        base,
        homes,
        base / "gateway.crt",
        base / "gateway.key",
        config,
        partner_port,
        gateway_home,
        protection.passphrase,
    )
    world.messages = make_messages(partner_home, partner, fingerprint, 1, total)
    return world


# ---------------------------------------------------------------------------------- CPU


CPU = tuple[float, float, float]


def cpu_seconds(agent_home: Path) -> CPU:
    """CPU time (user + system) of this process, of its finished children (the gpg runs; the
    load generator's process is not reaped before the end) and of the gpg-agent of the
    gateway's home (its secret-key operations, for the gateway and for plain gpg alike)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (
        own.ru_utime + own.ru_stime,
        children.ru_utime + children.ru_stime,
        agent_seconds(agent_home),
    )


def agent_seconds(home: Path) -> float:
    """CPU time of the gpg-agent serving ``home``, read from /proc."""
    ticks = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            if not command[0].endswith(b"gpg-agent") or str(home).encode() not in command:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def per_message(before: CPU, after: CPU, count: int) -> CPU:
    """Milliseconds per message of each of the three counts."""
    a, b, c = (1000 * (end - start) / count for start, end in zip(before, after, strict=True))
    return a, b, c


StageSnapshot = dict[str, tuple[float, int]]


def stage_ms(before: StageSnapshot, after: StageSnapshot, count: int) -> dict[str, float]:
    """Each stage's CPU milliseconds per message between two snapshots."""
    return {stage: 1000 * (after[stage][0] - before[stage][0]) / count for stage in after}


def stage_counts(before: StageSnapshot, after: StageSnapshot) -> dict[str, int]:
    return {stage: after[stage][1] - before[stage][1] for stage in STAGES}


@dataclass(frozen=True)
class Pass:
    """One timed pass: the rate, the times to 250 (seconds), CPU ms per message."""

    rate: float
    latencies: list[float]
    cpu_ms: CPU  # per message, to the last reply: this process, gpg runs, gpg-agent
    load_ms: float  # per message, to the last reply: the load generator's process
    # The gateway: until its hand-off has finished and the receipts are delivered.
    drained_rate: float | None = None
    drained_cpu_ms: CPU | None = None
    drained_load_ms: float | None = None
    # Gateway.cpu's stages and the benchmark's own CPU in the gateway's process (BENCHMARK),
    # until the hand-off is done.
    stages_ms: dict[str, float] | None = None
    stage_counts: dict[str, int] | None = None
    # The event loop's thread alone (thread CPU), until the hand-off is done: the part of
    # "event loop and the rest" that is the loop (with the benchmark's polling of the spool).
    loop_ms: float | None = None


# ---------------------------------------------------------------------------------- the partner


class Partner:
    """The load generator's process (bench/loadgen.py): the clients, the partner's server and
    the sink, driven one command at a time over a pipe."""

    def __init__(self, setup: loadgen.Setup) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=loadgen.serve, args=(theirs, setup), name="loadgen", daemon=True
        )
        self.process.start()
        theirs.close()
        # What the benchmark itself costs in the gateway's process (the pipe, polling the
        # spool), counted per thread as the gateway counts its stages, to be told apart.
        self.overhead = StageCpu()
        try:
            self.sink_port: int = self._receive()[1]
        except BaseException:
            self.kill()
            raise

    def _receive(self) -> tuple[Any, ...]:
        while not self._pipe.poll(1.0):
            if not self.process.is_alive():
                raise RuntimeError(f"the load generator ended (exit code {self.process.exitcode})")
        reply: tuple[Any, ...] = self._pipe.recv()
        if reply[0] == "error":
            raise RuntimeError(f"the load generator failed:\n{reply[1]}")
        return reply

    def ask_now(self, *command: Any) -> tuple[Any, ...]:
        with self.overhead.timing(BENCHMARK):
            self._pipe.send(command)
            return self._receive()

    async def ask(self, *command: Any) -> tuple[Any, ...]:
        """The answer to ``command``, awaited in a thread so that the gateway keeps serving."""
        return await asyncio.to_thread(self.ask_now, *command)

    async def connect(self, port: int, clients: int) -> None:
        await self.ask("connect", port, clients)

    async def send(self, indices: list[int]) -> Sent:
        sent: Sent = (await self.ask("send", indices))[1]
        return sent

    async def load_cpu(self) -> float:
        """The load generator's process's CPU seconds so far."""
        seconds: float = (await self.ask("cpu"))[1]
        return seconds

    async def close(self) -> None:
        await self.ask("close")

    def stop(self) -> tuple[int, int, int]:
        """Stop the servers and end the process; the receipts taken, the messages sunk and the
        STARTTLS handshakes of the sessions the receipts came in."""
        _, receipts, sunk, handshakes = self.ask_now("stop")
        self.process.join(30)
        return receipts, sunk, handshakes

    def kill(self) -> None:
        """End the process whatever its state (after ``stop``, it has ended already)."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._pipe.close()


def expect_accepted(message: Message, reply: str) -> None:
    if f"accepted {message.reference}" not in reply or "duplicate" in reply:
        raise AssertionError(f"unexpected reply for {message.reference}: {reply!r}")


async def settle(gateway: Gateway, cpu: StageCpu) -> None:
    """Until the hand-off has emptied the inbound spool (desk copies made, receipts queued) and
    the courier the outbound one (the receipts delivered to the partner); the CPU of each look
    counted to ``cpu``."""
    deadline = time.perf_counter() + SETTLE_LIMIT
    folders = (gateway.inbound.new, gateway.inbound.cur, gateway.outbound.new, gateway.outbound.cur)

    in_ledger = gateway.config.store.bodies == "database"

    def busy() -> bool:
        with cpu.timing(BENCHMARK, count=0):
            if any(any(folder.iterdir()) for folder in folders):
                return True
            # Bodies in the ledger: a message may wait there before the hand-off takes it.
            return in_ledger and leases.backlog(gateway.ledger) > 0

    while busy():
        if time.perf_counter() > deadline:
            raise AssertionError("the hand-off or the receipts' delivery did not finish")
        await asyncio.sleep(SETTLE_POLL)


def snapshot(gateway: Gateway, partner: Partner) -> StageSnapshot:
    """The gateway's stages (``Gateway.cpu``) and the benchmark's own CPU in its process."""
    return {**gateway.cpu.snapshot(), BENCHMARK: partner.overhead.snapshot()[BENCHMARK]}


async def gateway_pass(
    gateway: Gateway, partner: Partner, world: World, indices: list[int], clients: int
) -> Pass:
    """The messages at ``indices`` through ``clients`` connections opened (with STARTTLS)
    before the clock; timed to the last 250 and until the hand-off is done."""
    await partner.connect(gateway.port, clients)
    home = world.gateway_home
    stages_before = snapshot(gateway, partner)
    cpu_before = cpu_seconds(home)
    loop_before = time.thread_time()  # this coroutine runs in the gateway's event loop thread
    sent = await partner.send(indices)
    cpu_at_250 = cpu_seconds(home)
    await settle(gateway, partner.overhead)
    loop_cpu = time.thread_time() - loop_before
    drained_elapsed = time.monotonic() - sent.start  # the same clock as the load generator's
    cpu_drained = cpu_seconds(home)
    stages_after = snapshot(gateway, partner)
    load_drained = await partner.load_cpu()
    await partner.close()
    for index, reply in zip(indices, sent.replies, strict=True):
        expect_accepted(world.messages[index], reply)
    count = len(indices)
    return Pass(
        rate=count / sent.elapsed,
        latencies=sent.latencies,
        cpu_ms=per_message(cpu_before, cpu_at_250, count),
        load_ms=1000 * (sent.cpu_after - sent.cpu_before) / count,
        drained_rate=count / drained_elapsed,
        drained_cpu_ms=per_message(cpu_before, cpu_drained, count),
        drained_load_ms=1000 * (load_drained - sent.cpu_before) / count,
        stages_ms=stage_ms(stages_before, stages_after, count),
        stage_counts=stage_counts(stages_before, stages_after),
        loop_ms=1000 * loop_cpu / count,
    )


async def sink_pass(partner: Partner, world: World, indices: list[int], clients: int) -> Pass:
    """(a): the same messages through the same clients to the sink, all in the load
    generator's process, whose CPU is the sink's (with its clients')."""
    await partner.connect(partner.sink_port, clients)
    cpu_before = cpu_seconds(world.gateway_home)
    sent = await partner.send(indices)
    cpu_after = cpu_seconds(world.gateway_home)
    await partner.close()
    for reply in sent.replies:
        if "stored" not in reply:
            raise AssertionError(f"unexpected reply from the sink: {reply!r}")
    count = len(indices)
    load_ms = 1000 * (sent.cpu_after - sent.cpu_before) / count
    _, gpg, agent = per_message(cpu_before, cpu_after, count)
    return Pass(
        rate=count / sent.elapsed,
        latencies=sent.latencies,
        cpu_ms=(load_ms, gpg, agent),
        load_ms=load_ms,
    )


# ---------------------------------------------------------------------------------- plain gpg


def gpg_pass(world: World, messages: Sequence[Message]) -> Pass:
    """(b): ``gpg --decrypt`` on each whole message (gpg finds the armored part), 2 workers."""
    cmd = ["gpg", "--homedir", str(world.gateway_home), "--batch", "--yes", "--no-tty"]
    cmd += ["--trust-model", "always"]
    prefix = b""
    if world.passphrase is not None:
        cmd += ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
        prefix = world.passphrase.encode() + b"\n"
    cmd.append("--decrypt")

    def one(message: Message) -> float:
        start = time.perf_counter()
        done = subprocess.run(
            cmd, input=prefix + message.raw, capture_output=True, check=False, timeout=120
        )
        if done.returncode != 0 or done.stdout != message.entity:
            raise AssertionError(f"gpg --decrypt failed: {done.stderr.decode()[-500:]}")
        return time.perf_counter() - start

    cpu_before = cpu_seconds(world.gateway_home)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=GPG_WORKERS) as pool:
        latencies = list(pool.map(one, messages))
    elapsed = time.perf_counter() - start
    cpu_after = cpu_seconds(world.gateway_home)
    count = len(messages)
    return Pass(
        rate=count / elapsed,
        latencies=latencies,
        cpu_ms=per_message(cpu_before, cpu_after, count),
        load_ms=0.0,
    )


# ---------------------------------------------------------------------------------- the run


def percentile(values: Sequence[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def upgrade_ledger(url: str) -> None:
    """What an operator does once before the first serve: `gateway db upgrade`."""
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()


def start_partner(world: World) -> Partner:
    """The load generator's process, its servers listening (the partner's on the port that the
    configuration names), before the gateway starts."""
    sink_folder = world.base / "sink"
    sink_folder.mkdir()
    return Partner(
        loadgen.Setup(
            cert=world.cert,
            key=world.key,
            sink_folder=sink_folder,
            partner_port=world.partner_port,
            size_limit=world.config.listen.max_message_bytes,
            messages=world.messages,
        )
    )


async def run(world: World, args: argparse.Namespace, partner: Partner) -> dict[str, Any]:
    indices = list(range(len(world.messages)))
    warm = indices[: args.warmup]
    lone = indices[args.warmup : args.warmup + args.lone]
    loaded = indices[args.warmup + args.lone :]
    slices = [loaded[r * args.count : (r + 1) * args.count] for r in range(args.rounds)]

    upgrade_ledger(world.config.database_url)
    closing = contextlib.ExitStack()
    gateway = Gateway(closing.enter_context(open_services(world.config)))
    await gateway.start()
    passes: dict[str, list[Pass]] = {"gateway": [], "sink": [], "gpg": []}
    try:
        # Warm-up: the gateway's agent, caches and first connections; the sink; gpg.
        await gateway_pass(gateway, partner, world, warm, clients=1)
        await sink_pass(partner, world, warm, clients=1)
        await asyncio.to_thread(gpg_pass, world, [world.messages[i] for i in warm])

        # Lone messages: one client, one connection, the gateway idle before each.
        await partner.connect(gateway.port, 1)
        lone_latencies = []
        for index in lone:
            sent = await partner.send([index])
            expect_accepted(world.messages[index], sent.replies[0])
            lone_latencies.append(sent.latencies[0])
            await settle(gateway, partner.overhead)
        await partner.close()

        for number, chosen in enumerate(slices, start=1):
            done = await gateway_pass(gateway, partner, world, chosen, args.clients)
            sunk = await sink_pass(partner, world, chosen, args.clients)
            messages = [world.messages[i] for i in chosen]
            decrypted = await asyncio.to_thread(gpg_pass, world, messages)
            passes["gateway"].append(done)
            passes["sink"].append(sunk)
            passes["gpg"].append(decrypted)
            print(
                f"round {number}: gateway {done.rate:.1f}/s to the 250 "
                f"({done.drained_rate or 0:.1f}/s with the hand-off and the receipts), "
                f"sink {sunk.rate:.1f}/s, gpg --decrypt {decrypted.rate:.1f}/s"
            )
    finally:
        await gateway.stop()
        closing.close()
    records = gateway.pipeline.records
    groups = {"groups": records.groups, "messages": records.records}

    receipts, sunk_count, handshakes = partner.stop()
    expected = len(warm) + len(lone) + sum(map(len, slices))
    sink_stored = len(warm) + sum(map(len, slices))
    delivered = check_counts(world, expected, sink_stored=sink_stored)
    if sunk_count != sink_stored:
        raise AssertionError(f"the sink took {sunk_count} messages, {sink_stored} expected")
    if receipts != expected:
        raise AssertionError(f"the partner took {receipts} receipts, {expected} expected")
    return {
        **figures(
            world,
            args=args,
            passes=passes,
            lone_latencies=lone_latencies,
            delivered=delivered,
            receipts=receipts,
        ),
        "receipt_starttls_handshakes": handshakes,
        "intake_commit_groups": groups,
    }


async def compare_bodies(
    world: World, args: argparse.Namespace, partner: Partner
) -> dict[str, Any]:
    """--bodies database: the same messages through a gateway that keeps the bodies in its
    spool and one that commits them to PostgreSQL with the ledger row, round after round in the
    same run (each on a ledger of its own on the same server; the order swapped every round)."""
    indices = list(range(len(world.messages)))
    warm = indices[: args.warmup]
    loaded = indices[args.warmup :]
    slices = [loaded[r * args.count : (r + 1) * args.count] for r in range(args.rounds)]
    passes: dict[str, list[Pass]] = {"spool": [], "database": []}
    with bodystore.schemas(args.database, 2) as urls, contextlib.ExitStack() as closing:
        gateways: dict[str, Gateway] = {}
        for url, where in zip(urls, ("spool", "database"), strict=True):
            config = bodystore.variant(world.config, world.base, url, where)
            gateways[where] = Gateway(closing.enter_context(open_services(config)))
            await gateways[where].start()
        try:
            for gateway in gateways.values():
                await gateway_pass(gateway, partner, world, warm, clients=1)
            for number, chosen in enumerate(slices, start=1):
                order = ("spool", "database") if number % 2 else ("database", "spool")
                for where in order:
                    passes[where].append(
                        await gateway_pass(gateways[where], partner, world, chosen, args.clients)
                    )
                print(
                    f"round {number}: "
                    + ", ".join(
                        f"bodies in {where} {passes[where][-1].rate:.1f}/s to the 250 "
                        f"({passes[where][-1].drained_rate or 0:.1f}/s with the hand-off)"
                        for where in ("spool", "database")
                    )
                )
        finally:
            for gateway in gateways.values():
                await gateway.stop()
    receipts, _, _ = partner.stop()
    expected = len(warm) + sum(map(len, slices))
    for where in passes:
        delivered = sum(1 for _ in (world.base / where / "desks" / "duty" / "new").iterdir())
        if delivered != expected:
            raise AssertionError(f"{where}: {delivered} on the desk, {expected} expected")
    if receipts != 2 * expected:
        raise AssertionError(f"the partner took {receipts} receipts, {2 * expected} expected")
    side: dict[str, dict[str, float]] = {}
    for where, done in passes.items():
        latencies = [value for one in done for value in one.latencies]
        side[where] = {
            "to_250_per_second": round(median(p.rate for p in done), 1),
            "with_handoff_per_second": round(median(p.drained_rate or 0.0 for p in done), 1),
            "time_to_250_p50_ms": round(ms(percentile(latencies, 50)), 1),
            "time_to_250_p99_ms": round(ms(percentile(latencies, 99)), 1),
        }
    return {
        "bodies": side,
        "ratio_database_over_spool_to_250": round(
            side["database"]["to_250_per_second"] / side["spool"]["to_250_per_second"], 3
        ),
        "ratio_database_over_spool_with_handoff": round(
            side["database"]["with_handoff_per_second"] / side["spool"]["with_handoff_per_second"],
            3,
        ),
        "messages_per_round": args.count,
        "rounds": args.rounds,
        "clients": args.clients,
        "receipts_delivered": receipts,
    }


def report_bodies(results: dict[str, Any]) -> None:
    for where, side in results["bodies"].items():
        print(
            f"bodies in the {where}: {side['to_250_per_second']}/s to the 250, "
            f"{side['with_handoff_per_second']}/s with the hand-off; time to 250 p50 "
            f"{side['time_to_250_p50_ms']} ms, p99 {side['time_to_250_p99_ms']} ms"
        )
    print(
        "ratio database / spool (the cost of durability off the node): "
        f"{results['ratio_database_over_spool_to_250']:.2f} to the 250, "
        f"{results['ratio_database_over_spool_with_handoff']:.2f} with the hand-off"
    )


def check_counts(world: World, expected: int, *, sink_stored: int) -> int:
    """Every message on the desk once and in the sink once; returns the desk's count."""
    delivered = sum(1 for _ in (world.base / "desks" / "duty" / "new").iterdir())
    if delivered != expected:
        raise AssertionError(f"{delivered} messages reached the desk, {expected} expected")
    stored = sum(1 for _ in (world.base / "sink").iterdir())
    if stored != sink_stored:
        raise AssertionError(f"the sink stored {stored} messages, {sink_stored} expected")
    return delivered


def figures(
    world: World,
    *,
    args: argparse.Namespace,
    passes: dict[str, list[Pass]],
    lone_latencies: list[float],
    delivered: int,
    receipts: int,
) -> dict[str, Any]:
    rate = {side: statistics.median(p.rate for p in done) for side, done in passes.items()}
    drained = statistics.median(p.drained_rate or 0.0 for p in passes["gateway"])
    baseline = min(rate["sink"], rate["gpg"])
    load = [latency for p in passes["gateway"] for latency in p.latencies]
    sink_load = [latency for p in passes["sink"] for latency in p.latencies]
    p50_load, p99_load = percentile(load, 50), percentile(load, 99)
    p50_lone = percentile(lone_latencies, 50)
    mean_bytes = statistics.mean(len(m.raw) for m in world.messages)
    cpu = {side: cpu_figures([p.cpu_ms for p in done]) for side, done in passes.items()}
    cpu["gateway"]["load_generator"] = median(p.load_ms for p in passes["gateway"])
    with_handoff = cpu_figures([p.drained_cpu_ms for p in passes["gateway"] if p.drained_cpu_ms])
    with_handoff["load_generator"] = median(p.drained_load_ms or 0 for p in passes["gateway"])
    return {
        "benchmark": "inbound",
        **benchkit.versions(),
        "cpus": os.cpu_count(),
        "protection": args.protection,
        "count": args.count,
        "rounds": args.rounds,
        "clients": args.clients,
        "gpg_workers": GPG_WORKERS,
        "warmup": args.warmup,
        "lone": args.lone,
        "message_mean_bytes": round(mean_bytes),
        "form": "G (samples/G/valid-person-arrested.xml, urgent), one Reference each",
        "targets": TARGETS,
        "per_second": {
            "gateway_to_250": round(rate["gateway"], 1),
            "gateway_with_handoff": round(drained, 1),
            "sink_a": round(rate["sink"], 1),
            "gpg_decrypt_b": round(rate["gpg"], 1),
        },
        "rounds_per_second": {
            "gateway_to_250": [round(p.rate, 1) for p in passes["gateway"]],
            "gateway_with_handoff": [round(p.drained_rate or 0, 1) for p in passes["gateway"]],
            "sink_a": [round(p.rate, 1) for p in passes["sink"]],
            "gpg_decrypt_b": [round(p.rate, 1) for p in passes["gpg"]],
        },
        "time_to_250_ms": {
            "gateway_load_p50": ms(p50_load),
            "gateway_load_p99": ms(p99_load),
            "gateway_load_max": ms(max(load)),
            "gateway_lone_p50": ms(p50_lone),
            "gateway_lone_p99": ms(percentile(lone_latencies, 99)),
            "sink_load_p50": ms(percentile(sink_load, 50)),
            "sink_load_p99": ms(percentile(sink_load, 99)),
        },
        "ratio_gateway_over_min_baseline": round(rate["gateway"] / baseline, 3),
        "ratio_gateway_with_handoff_over_min_baseline": round(drained / baseline, 3),
        "ratio_p99_load_over_p50_lone": round(p99_load / p50_lone, 2),
        "baseline": "sink_a" if rate["sink"] <= rate["gpg"] else "gpg_decrypt_b",
        "load_generator": "a process of its own (bench/loadgen.py): the clients, the partner's "
        "server that takes the receipts, the sink (a)",
        # CPU per message until the last 250 (or the last gpg run): the process of the side
        # measured ("python": for the gateway its own process, where the benchmark only waits
        # and polls; for the sink the load generator's, the sink and its clients; for gpg this
        # process's thread pool), the gpg processes the gateway or (b) ran, and the gpg-agent
        # of the gateway's home; for the gateway also the load generator's process, and the
        # same until its hand-off was done.
        "cpu_ms_per_message": cpu,
        "gateway_cpu_ms_per_message_with_handoff": with_handoff,
        # The gateway's process CPU until its hand-off was done, split by Gateway.cpu's stages
        # (thread CPU) and the benchmark's own (its polling of the spool, its pipe to the load
        # generator); the event loop and the rest is the process's CPU less those.
        "gateway_cpu_ms_per_message_by_stage": stage_figures(passes["gateway"]),
        "gateway_stage_counts": {
            stage: sum((p.stage_counts or {}).get(stage, 0) for p in passes["gateway"])
            for stage in STAGES
        },
        "desk_deliveries": delivered,
        "receipts_delivered": receipts,
        "handoff_max_wait_s": HANDOFF_MAX_WAIT,
    }


def median(values: Iterable[float]) -> float:
    return round(float(statistics.median(values)), 2)


def cpu_figures(passes: Sequence[CPU]) -> dict[str, float]:
    names = ("python", "gpg", "gpg_agent")
    return {name: median(p[i] for p in passes) for i, name in enumerate(names)}


def stage_figures(passes: Sequence[Pass]) -> dict[str, float]:
    """Median over the rounds of each stage's ms per message, of the rest, and of the whole."""
    rows: list[dict[str, float]] = []
    for p in passes:
        if p.stages_ms is None or p.drained_cpu_ms is None:
            continue
        python, gpg, agent = p.drained_cpu_ms
        row = dict(p.stages_ms)
        row["event_loop_and_rest"] = python - sum(p.stages_ms.values())
        row["event_loop_thread"] = p.loop_ms or 0.0
        row |= {"python": python, "gpg": gpg, "gpg_agent": agent}
        row["load_generator"] = p.drained_load_ms or 0.0
        rows.append(row)
    return {name: median(row[name] for row in rows) for name in rows[0]}


def report(results: dict[str, Any]) -> None:
    rate, times = results["per_second"], results["time_to_250_ms"]
    baseline = min(rate["sink_a"], rate["gpg_decrypt_b"])
    print(
        f"gateway ({results['clients']} clients): {rate['gateway_to_250']}/s to the 250, "
        f"{rate['gateway_with_handoff']}/s until the desk copies are made and the receipts "
        "delivered"
    )
    print(
        f"receipts: {results['receipts_delivered']} delivered over "
        f"{results['receipt_starttls_handshakes']} STARTTLS handshakes"
    )
    groups = results["intake_commit_groups"]
    print(
        f"intake: {groups['messages']} messages recorded in {groups['groups']} ledger "
        "transactions (group commit)"
    )
    print(f"(a) aiosmtpd sink, write+fsync: {rate['sink_a']}/s")
    print(f"(b) gpg --decrypt, {GPG_WORKERS} workers: {rate['gpg_decrypt_b']}/s")
    print(
        f"time to 250 under load: p50 {times['gateway_load_p50']} ms, "
        f"p99 {times['gateway_load_p99']} ms; lone message p50 {times['gateway_lone_p50']} ms"
    )
    target = TARGETS["gateway_over_min_baseline"]
    ratio = results["ratio_gateway_over_min_baseline"]
    print(
        f"ratio gateway / min(a, b) = {rate['gateway_to_250']} / {baseline} = {ratio:.2f} "
        f"(target >= {target}: {'met' if ratio >= target else 'MISSED'}); with the hand-off "
        f"{results['ratio_gateway_with_handoff_over_min_baseline']:.2f}"
    )
    target = TARGETS["p99_load_over_p50_lone"]
    ratio = results["ratio_p99_load_over_p50_lone"]
    print(
        f"ratio p99 under load / p50 lone = {ratio:.2f} "
        f"(target <= {target}: {'met' if ratio <= target else 'MISSED'})"
    )
    cpu = results["cpu_ms_per_message"]
    print(
        "CPU ms per message to the last 250 (python + gpg + gpg-agent): "
        + ", ".join(
            f"{side} {c['python']:.2f} + {c['gpg']:.2f} + {c['gpg_agent']:.2f}"
            for side, c in cpu.items()
        )
        + " (python: the gateway's process; for the sink, the load generator's)"
    )
    c = results["gateway_cpu_ms_per_message_with_handoff"]
    print(f"gateway with the hand-off: {c['python']:.2f} + {c['gpg']:.2f} + {c['gpg_agent']:.2f}")
    stages = results["gateway_cpu_ms_per_message_by_stage"]
    print("gateway CPU ms per message until the hand-off is done, by stage:")
    for key, name in STAGE_NAMES.items():
        print(f"  {name:<36} {stages[key]:7.2f}")
    print(f"  {'  of which the event loop thread':<36} {stages['event_loop_thread']:7.2f}")
    print(f"  {'= the gateway process':<36} {stages['python']:7.2f}")
    print(f"  {'gpg processes':<36} {stages['gpg']:7.2f}")
    print(f"  {'gpg-agent':<36} {stages['gpg_agent']:7.2f}")
    print(f"  {'load generator (not the gateway)':<36} {stages['load_generator']:7.2f}")


def shut_down(homes: Sequence[Path], base: Path) -> None:
    for home in homes:
        gpgkit.kill_agent(home)
        shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)


def protection_of(name: str) -> KeyProtection:
    """The gateway key's protection: none, a passphrase with a cheap key derivation, or a
    passphrase with gpg's default one (its own calibrated S2K count)."""
    if name == "none":
        return KeyProtection(None)
    if name == "fast":
        return KeyProtection(secrets.token_urlsafe(18), s2k_count=FAST_S2K_COUNT)
    return KeyProtection(secrets.token_urlsafe(18))


def parse_args() -> argparse.Namespace:
    """The command line, checked, with the defaults that depend on other options filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--count", type=int, help="messages per pass (400; 40 with --protection default)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="concurrent SMTP connections")
    parser.add_argument(
        "--lone", type=int, help="lone messages, one at a time (50; 10 with --protection default)"
    )
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--protection", choices=("none", "fast", "default"), default="none",
        help="the gateway's key without passphrase (as in the integration tests), with one and "
        f"s2k-count {FAST_S2K_COUNT}, or with one and gpg's default key derivation",
    )  # fmt: skip
    parser.add_argument(
        "--bodies", choices=("spool", "database"), default="spool",
        help="database: in the same run, a gateway keeping the bodies in its spool against one "
        "committing them to PostgreSQL with the ledger row (--database), and their ratio",
    )  # fmt: skip
    parser.add_argument(
        "--database",
        default=os.environ.get("GATEWAY_TEST_POSTGRES_URL", ""),
        help="the PostgreSQL for --bodies database (default: $GATEWAY_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--out", type=Path, help="the JSON results (bench/results/...)")
    benchkit.add_disk_options(parser)
    args = parser.parse_args()
    if args.out is None:
        name = "inbound_bodies.json" if args.bodies == "database" else "inbound.json"
        args.out = ROOT / "bench" / "results" / name
    if args.bodies == "database" and not args.database.startswith("postgresql"):
        parser.error("--bodies database needs --database postgresql+psycopg://...")
    args.count = DEFAULT_COUNT[args.protection] if args.count is None else args.count
    args.lone = DEFAULT_LONE[args.protection] if args.lone is None else args.lone
    if min(args.count, args.rounds, args.clients, args.lone, args.warmup) < 1 or args.lone < 2:
        parser.error("--count, --rounds, --clients, --warmup must be >= 1 and --lone >= 2")
    return args


def main() -> int:
    args = parse_args()
    # GnuPG homes must have short paths (the agent's socket path is limited): gpgkit's, in /tmp.
    base = Path(tempfile.mkdtemp(prefix="gwi-", dir=args.workdir))
    homes: list[Path] = []
    total = args.warmup + args.rounds * args.count
    if args.bodies == "spool":
        total += args.lone
    partner: Partner | None = None
    try:
        started = time.perf_counter()
        world = build_world(base, homes, protection_of(args.protection), total)
        print(
            f"{total} messages made with gpg in {time.perf_counter() - started:.0f} s "
            f"({statistics.mean(len(m.raw) for m in world.messages):.0f} B each on average); "
            f"{args.rounds} rounds of {args.count}, {args.clients} clients, "
            f"protection {args.protection}"
        )
        partner = start_partner(world)
        with benchkit.watched_disk(base, args.settle) as disk:
            load_start = [round(load, 2) for load in os.getloadavg()]
            if args.bodies == "database":
                results = asyncio.run(compare_bodies(world, args, partner))
            else:
                results = asyncio.run(run(world, args, partner))
        results["disk_file_cpu_us"] = disk
        results["load_average_at_start"] = load_start
        results["load_average_at_end"] = [round(load, 2) for load in os.getloadavg()]
    finally:
        if partner is not None:
            partner.kill()
        shut_down(homes, base)
    if args.bodies == "database":
        report_bodies(results)
    else:
        report(results)
    benchkit.say_file_cost(results["disk_file_cpu_us"], args.workdir)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
