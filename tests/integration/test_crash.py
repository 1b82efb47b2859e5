"""`gateway serve` as a subprocess under abuse: SIGKILL while partners send, then a full disk.

"250 means it is on disk" and "a crash can re-send, never lose": partners send pre-made forms
over STARTTLS from four concurrent clients while the test kills the server at random moments
(a fixed seed) and restarts it; a client re-sends whatever got no 250, as an MTA would. At the end
every form that got a 250 must be in a desk's Maildir exactly once, the ledger and the audit
chain must agree, and each receipt must be queued once. The second test puts the spool and the
desks on a tiny tmpfs and fills it: the gateway must answer 452 4.3.1, leave nothing half
written, and take mail again as soon as there is room, without a restart.

Both tests are marked ``slow`` (about a minute together on two cores): they run in the normal
suite and in CI; ``pytest -m "not slow"`` leaves them out. The disk-full test needs root (mount);
without it, it skips and says why.
"""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import os
import random
import re
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import gpgkit
import pytest
from integration.inboundkit import World, gateway_config, gateway_fingerprint
from integration.servekit import Served, smtp_send
from sqlalchemy import select

from gateway.core.clock import SystemClock
from gateway.core.config import BUILTIN_FORMS
from gateway.crypto import pgpmime
from gateway.store.audit import AuditLog
from gateway.store.ledger import make_engine, messages
from gateway.store.spool import SUFFIX, Spool

pytestmark = pytest.mark.slow

FORM = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()
SAMPLE_REFERENCE = b"<Reference>NO-2026-000123</Reference>"
SENDER = "sirene@no.example"
GATEWAY_ADDRESS = "sirene@ro.example"
DESKS = ("sirene", "duty")

MESSAGES = 500
CLIENTS = 4
KILLS = 10
SEED = 20260511
STALL_TIMEOUT = 30.0  # seconds without a single new 250 before the test calls it a hang
RESEND_GRACE = 30.0  # after the last restart: how long clients keep re-sending before giving up
SETTLE_IDLE = 20.0  # seconds the hand-off may go without taking an item off the inbound spool
SETTLE_LIMIT = 120.0  # seconds for the hand-off to empty the inbound spool in all


# ---------------------------------------------------------------------------------- the world


def reference(number: int) -> str:
    return f"NO-2026-{number:06d}"


def make_messages(world: World, numbers: range) -> dict[str, bytes]:
    """One PGP/MIME message per Reference, each signed and encrypted by the gpg command line."""
    if SAMPLE_REFERENCE not in FORM:
        raise AssertionError("the sample form's Reference changed: update SAMPLE_REFERENCE")

    def one(number: int) -> tuple[str, bytes]:
        ref = reference(number)
        form = FORM.replace(SAMPLE_REFERENCE, f"<Reference>{ref}</Reference>".encode())
        ciphertext = gpgkit.sign_encrypt(
            world.no.home, [world.no.fingerprint], [gateway_fingerprint(world)], gpgkit.entity(form)
        )
        raw = gpgkit.pgp_mime(ciphertext, SENDER, GATEWAY_ADDRESS, f"SIRENE G {ref}")
        return ref, raw.replace(b"<test-1@example.test>", f"<{ref}@no.example>".encode())

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, numbers))


# ----------------------------------------------------------------------- what the disk holds


def desk_references(desks: Path) -> collections.Counter[str]:
    """X-IPC-Reference of every message in the desks' Maildirs (new/ and cur/), not notices."""
    found: collections.Counter[str] = collections.Counter()
    for desk in DESKS:
        for folder in ("new", "cur"):
            path = desks / desk / folder
            if not path.is_dir():
                continue
            for item in path.iterdir():
                parsed = email.message_from_bytes(item.read_bytes(), policy=email.policy.default)
                if parsed["X-IPC-Notice"] is None:  # a notice about a message is not a copy
                    found[str(parsed["X-IPC-Reference"])] += 1
    return found


def spool_keys(root: Path, folders: tuple[str, ...] = ("new", "cur", "done")) -> list[str]:
    """Every item key of the spool at ``root`` in these folders (a key may repeat: a bug)."""
    return [
        path.name.removesuffix(SUFFIX)
        for folder in folders
        if (root / folder).is_dir()
        for path in (root / folder).iterdir()
    ]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ----------------------------------------------------------------------------- test 1: crash


@dataclass
class Traffic:
    """What the partners' clients sent and heard, shared by the clients and the killer."""

    raws: dict[str, bytes]
    pending: collections.deque[str]
    port: int = 0
    up: asyncio.Event = field(default_factory=asyncio.Event)
    give_up: bool = False
    acked: set[str] = field(default_factory=set)
    duplicates: collections.Counter[str] = field(default_factory=collections.Counter)
    refused: dict[str, str] = field(default_factory=dict)
    transient: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped: int = 0
    sessions: int = 0

    def finished(self) -> bool:
        return len(self.acked) + len(self.refused) == len(self.raws)

    def summary(self) -> str:
        never = sorted(set(self.raws) - self.acked - set(self.refused))
        return (
            f"{len(self.acked)} got 250 ({sum(self.duplicates.values())} of those 250s said "
            f"duplicate), {len(never)} never {never[:10]}, {len(self.refused)} refused, "
            f"{self.sessions} sessions of which {self.dropped} dropped, "
            f"4xx replies {dict(self.transient)}"
        )


async def partner_client(traffic: Traffic, context: ssl.SSLContext) -> None:
    """Send from the shared queue until everything got an answer; re-send what got no 250."""
    while not traffic.finished() and not traffic.give_up:
        if not traffic.pending:
            await asyncio.sleep(0.02)
            continue
        ref = traffic.pending.popleft()
        await traffic.up.wait()
        traffic.sessions += 1
        try:
            code, text = await smtp_send(traffic.port, traffic.raws[ref], context)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            # The server died under us: no 250, so the message goes again, first, once the
            # server is back (the killer clears ``up`` before it kills).
            traffic.dropped += 1
            traffic.pending.appendleft(ref)
            await asyncio.sleep(0.05)
            continue
        if code == 250:
            traffic.acked.add(ref)
            if "duplicate" in text:
                traffic.duplicates[ref] += 1
        elif 400 <= code < 500:
            traffic.transient[f"{code} {text}"] += 1
            traffic.pending.append(ref)
            await asyncio.sleep(0.2)
        else:
            traffic.refused[ref] = f"{code} {text}"


async def settle(spool: Path, *, idle: float, limit: float) -> bool:
    """Wait until the inbound spool's new/ and cur/ are empty. False when their count has not
    changed for ``idle`` seconds (the hand-off is stuck), or after ``limit`` seconds."""
    started = last_change = time.monotonic()
    last_count = -1
    while count := len(listing(spool / "inbound" / "new")) + len(
        listing(spool / "inbound" / "cur")
    ):
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        if now - last_change > idle or now - started > limit:
            return False
        await asyncio.sleep(0.1)
    return True


@dataclass(frozen=True)
class Inbound:
    id: int
    reference: str
    state: str
    spool_key: str


def ledger_rows(ledger: Path) -> tuple[list[Inbound], collections.Counter[str], list[str]]:
    """Inbound rows; the count of ACK rows per original reference; the audit chain's problems."""
    engine = make_engine(f"sqlite:///{ledger}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    messages.c.id,
                    messages.c.direction,
                    messages.c.form,
                    messages.c.reference,
                    messages.c.in_reply_to,
                    messages.c.state,
                    messages.c.spool_key,
                )
            ).all()
        problems = [str(problem) for problem in AuditLog(engine, SystemClock()).verify()]
    finally:
        engine.dispose()
    inbound = [
        Inbound(row.id, row.reference, row.state, row.spool_key)
        for row in rows
        if row.direction == "inbound"
    ]
    acks = collections.Counter(
        str(row.in_reply_to) for row in rows if row.direction == "outbound" and row.form == "ACK"
    )
    return inbound, acks, problems


async def test_sigkill_while_partners_send_loses_nothing_and_delivers_once(
    world: World, tmp_path: Path
) -> None:
    timings: dict[str, float] = {}
    began = time.monotonic()
    spool, desks, ledger = tmp_path / "spool", tmp_path / "desks", tmp_path / "ledger.db"
    config = gateway_config(world, tmp_path, database_url=f"sqlite:///{ledger}")
    raws = make_messages(world, range(1, MESSAGES + 1))
    timings["make messages"] = time.monotonic() - began

    rng = random.Random(SEED)  # noqa: S311 - a reproducible schedule, not a secret
    # Kill when the count of 250s reaches each of these, after a further random pause: the
    # kills are spread over the whole run whatever the speed of the machine.
    kill_at = sorted(rng.sample(range(20, MESSAGES - 30), KILLS))
    pauses = [rng.uniform(0.0, 0.4) for _ in range(KILLS)]
    served = Served(config, tmp_path / "logs")
    traffic = Traffic(raws, collections.deque(raws))
    context = ssl.create_default_context(cafile=str(world.tls_cert))
    kills: list[int] = []
    clock = time.monotonic()
    clients: list[asyncio.Task[None]] = []
    try:
        traffic.port = await served.start()
        traffic.up.set()
        clients += [asyncio.create_task(partner_client(traffic, context)) for _ in range(CLIENTS)]
        for number, (target, pause) in enumerate(zip(kill_at, pauses, strict=True), 1):
            last, last_change = len(traffic.acked), time.monotonic()
            while len(traffic.acked) < target:
                if len(traffic.acked) != last:
                    last, last_change = len(traffic.acked), time.monotonic()
                elif time.monotonic() - last_change > STALL_TIMEOUT:
                    raise AssertionError(
                        f"the gateway gave no 250 for {STALL_TIMEOUT:.0f} s, before kill "
                        f"{number}: {traffic.summary()}; server {served.state()}, its log:\n"
                        f"{served.log_tail()}"
                    )
                await asyncio.sleep(0.01)
            await asyncio.sleep(pause)
            traffic.up.clear()
            kills.append(len(traffic.acked))
            served.kill()
            traffic.port = await served.start()
            traffic.up.set()
        timings["kills done"] = time.monotonic() - clock

        # After the last restart the clients finish; a message that keeps getting 4xx is
        # given up after a grace period (and reported below), as an MTA gives up one day.
        deadline = time.monotonic() + RESEND_GRACE
        while not traffic.finished() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        traffic.give_up = True
        await asyncio.gather(*clients)
        timings["sending done"] = time.monotonic() - clock

        settled = await settle(spool, idle=SETTLE_IDLE, limit=SETTLE_LIMIT)
        timings["hand-off settled" if settled else "hand-off stuck"] = time.monotonic() - clock
        left = {f: listing(spool / "inbound" / f) for f in ("new", "cur", "quarantine")}
        status = await served.terminate()
        timings["stopped"] = time.monotonic() - clock
    finally:
        for client in clients:
            client.cancel()
        served.kill()

    # ---- the evidence
    acked = traffic.acked
    never = set(raws) - acked
    in_desks = desk_references(desks)
    inbound, acks, audit_problems = ledger_rows(ledger)
    by_reference = {row.reference: row for row in inbound}
    ids = {row.id: row.reference for row in inbound}
    inbound_keys = collections.Counter(spool_keys(spool / "inbound"))
    outbound_keys = collections.Counter(
        spool_keys(spool / "outbound", ("new", "cur", "done", "quarantine"))
    )
    recorded_keys = {row.spool_key for row in inbound}
    orphans = sorted(
        key.removesuffix(SUFFIX)
        for key in left["new"] + left["cur"]
        if key.removesuffix(SUFFIX) not in recorded_keys
    )
    rounded = {name: round(seconds, 1) for name, seconds in timings.items()}
    report = (
        f"timings {rounded}; kills at {kills} 250s; {traffic.summary()}; inbound spool left: "
        f"{ {f: len(names) for f, names in left.items()} }, of which spooled but not in the "
        f"ledger (no 250 given): {orphans}"
    )
    print(report)

    # ---- safety: 250 means it is on disk, and the hand-off is exactly once
    unrecorded = sorted(ref for ref in acked if ref not in by_reference)
    assert not unrecorded, f"LOST: 250 given, no ledger row: {unrecorded[:20]}; {report}"
    unspooled = sorted(r for r in acked if inbound_keys[by_reference[r].spool_key] != 1)
    assert not unspooled, f"250 given, not once in the inbound spool: {unspooled[:20]}; {report}"
    doubled = sorted(ref for ref, count in in_desks.items() if count > 1)
    assert not doubled, f"DELIVERED TWICE: {doubled[:20]}; {report}"
    assert set(in_desks) <= set(by_reference), (
        f"in a desk, not in the ledger: {sorted(set(in_desks) - set(by_reference))[:20]}"
    )
    assert all(in_desks[ref] <= 1 for ref in never)
    assert audit_problems == [], audit_problems

    # ---- receipts never twice: receipt.<id> per received message, .again.N per duplicate
    assert all(n == 1 for n in outbound_keys.values()), "an outbound key in two folders"
    assert all(n == 1 for n in acks.values()), f"two ACK rows for one message: {acks}"
    receipts = {key for key in outbound_keys if re.fullmatch(r"receipt\.\d+", key)}
    assert receipts <= {f"receipt.{id_}" for id_ in ids}, "a receipt for no received message"
    again: collections.Counter[str] = collections.Counter()
    for key in set(outbound_keys) - receipts:
        found = re.fullmatch(r"receipt\.(\d+)\.again\.\d+", key)
        assert found is not None and int(found.group(1)) in ids, f"unexpected outbound {key}"
        again[ids[int(found.group(1))]] += 1
    too_many = {ref: n for ref, n in again.items() if n > traffic.duplicates[ref]}
    assert not too_many, f"receipts re-sent more often than duplicates came: {too_many}"

    # ---- liveness: the hand-off finished, everything accepted reached its desk once, with
    # its receipt queued; the gateway stopped cleanly; every message got its 250 in the end
    assert settled, f"the hand-off stopped making progress; {report}"
    undelivered = sorted(ref for ref in acked if in_desks[ref] != 1)
    assert not undelivered, f"250 given, not in a desk: {undelivered[:20]}; {report}"
    states = collections.Counter(row.state for row in inbound)
    assert states == {"delivered": len(inbound)}, f"ledger states {dict(states)}; {report}"
    assert set(by_reference) == set(in_desks)
    assert receipts == {f"receipt.{id_}" for id_ in ids}, "a received message without receipt"
    assert set(acks) == set(by_reference), "a received message without its ACK row"
    assert status == 0, served.log_tail()
    assert not traffic.refused, traffic.refused
    assert not never, f"never got a 250 in {RESEND_GRACE:.0f} s of re-sending; {report}"


# ------------------------------------------------------------------------- test 2: disk full


def _mount_tmpfs(folder: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("the disk-full test mounts a tmpfs: it needs root")
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as error:
        pytest.skip(f"cannot run mount: {error}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")


def _fill(path: Path, nbytes: int) -> None:
    """A ballast file of ``nbytes`` real bytes (tmpfs has no holes to cheat with)."""
    with path.open("wb") as file:
        file.write(b"\0" * nbytes)
        file.flush()
        os.fsync(file.fileno())


def _half_written(spool: Path) -> list[str]:
    """Items in new/, cur/ or done/ that do not read back whole."""
    found: list[str] = []
    for name in ("inbound", "outbound"):
        queue = Spool(spool / name)
        for key in spool_keys(spool / name, ("new", "done")):
            try:
                item = queue.get(key)
                payload = item.payload()
                if name == "inbound":
                    length = int(item.meta["raw_length"])
                    pgpmime.parse_outer(payload[:length])
                    pgpmime.parse_entity(payload[length:])
                else:
                    pgpmime.parse_outer(payload)
            except Exception as error:  # anything at all: that item is broken
                found.append(f"{name}/{key}: {type(error).__name__}: {error}")
    return found


async def send_until_full(
    port: int, raws: dict[str, bytes], context: ssl.SSLContext
) -> dict[str, tuple[int, str]]:
    """Send from CLIENTS concurrent sessions (so the hand-off has a backlog) until one message
    gets something other than 250; the sessions under way finish. Every reply, by Reference."""
    queue = collections.deque(raws)
    replies: dict[str, tuple[int, str]] = {}
    full = asyncio.Event()

    async def client() -> None:
        while queue and not full.is_set():
            ref = queue.popleft()
            try:
                replies[ref] = await smtp_send(port, raws[ref], context)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                replies[ref] = (0, f"no reply: {type(error).__name__}: {error}")
            if replies[ref][0] != 250:
                full.set()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return replies


async def test_disk_full_is_452_and_nothing_half_written_then_recovers(
    world: World, tmp_path: Path
) -> None:
    began = time.monotonic()
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount_tmpfs(disk, "600k")
    served: Served | None = None
    try:
        spool, desks, ledger = disk / "spool", disk / "desks", tmp_path / "ledger.db"
        config = gateway_config(world, disk, database_url=f"sqlite:///{ledger}")
        raws = make_messages(world, range(10_001, 10_061))
        later = raws.pop(reference(10_060))  # sent only once there is room again
        ballast = disk / "ballast"
        free = os.statvfs(disk)
        _fill(ballast, free.f_bavail * free.f_frsize - 96 * 1024)
        served = Served(config, tmp_path / "logs")
        port = await served.start()
        context = ssl.create_default_context(cafile=str(world.tls_cert))

        replies = await send_until_full(port, raws, context)
        accepted = sorted(ref for ref, (code, _) in replies.items() if code == 250)
        full = sorted(ref for ref, (code, _) in replies.items() if code != 250)
        others = {ref: reply for ref, reply in replies.items() if reply[0] not in (250, 452)}
        assert not others, (
            f"neither 250 nor 452: {others}; server {served.state()}, its log:\n{served.log_tail()}"
        )
        assert full, f"the disk never filled up: {len(accepted)} accepted"
        assert all(replies[ref][1].startswith("4.3.1 ") for ref in full), replies
        assert accepted, "the 96 KiB left free should take a message or two"

        # Nothing half written: every spooled item reads back whole, nothing stays in tmp/.
        assert _half_written(spool) == []
        tmp_dirs = [spool / "inbound" / "tmp", spool / "outbound" / "tmp"]
        tmp_dirs += [desks / desk / "tmp" for desk in DESKS]
        deadline = time.monotonic() + 5
        while (left := [f"{d}/{n}" for d in tmp_dirs for n in listing(d)]) and (
            time.monotonic() < deadline  # a write in progress may be there for a moment
        ):
            await asyncio.sleep(0.05)
        assert not left, f"files left in tmp/: {left}"

        # Every 250 is in the ledger, and nothing else is.
        engine = make_engine(f"sqlite:///{ledger}")
        try:
            with engine.connect() as connection:
                recorded = set(
                    connection.execute(
                        select(messages.c.reference).where(messages.c.direction == "inbound")
                    ).scalars()
                )
        finally:
            engine.dispose()
        assert set(accepted) <= recorded, f"250, no ledger row: {set(accepted) - recorded}"
        assert recorded <= set(accepted), f"ledger row, no 250: {recorded - set(accepted)}"

        # The disk stays full a little longer (the hand-off, woken every second, tries what it
        # holds), then there is room again: the same server takes mail at once.
        await asyncio.sleep(2.5)
        ballast.unlink()
        for ref in full:
            code, text = await smtp_send(port, raws[ref], context)
            assert code == 250, f"{ref} after freeing space: {code} {text}"
        code, text = await smtp_send(port, later, context)
        assert code == 250, f"{reference(10_060)} after freeing space: {code} {text}"
        before = len(accepted)
        accepted += [*full, reference(10_060)]

        # And everything accepted, before or after, reaches its desk once.
        settled = await settle(spool, idle=10, limit=30)
        in_desks = desk_references(desks)
        left_over = {f: listing(spool / "inbound" / f) for f in ("new", "cur", "quarantine")}
        inbound, _, audit_problems = ledger_rows(ledger)
        undelivered = sorted((r.reference, r.state) for r in inbound if r.state != "delivered")
        report = (
            f"{before} accepted, then {len(full)} got 452; after freeing space "
            f"{len(full) + 1} accepted; {time.monotonic() - began:.1f} s; inbound spool left "
            f"{left_over}; ledger rows not delivered {undelivered}"
        )
        print(report)
        assert audit_problems == [], audit_problems
        assert all(in_desks[ref] <= 1 for ref in accepted), f"DELIVERED TWICE: {in_desks}"
        assert settled, f"the hand-off stopped making progress after space was freed: {report}"
        assert {ref: in_desks[ref] for ref in accepted} == dict.fromkeys(accepted, 1), report
        assert len(inbound) == len(accepted) and not undelivered, report
        status = await served.terminate()
        assert status == 0, served.log_tail()
    finally:
        if served is not None:
            served.kill()
        done = subprocess.run(["umount", str(disk)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)
