"""Compression bombs against `gateway serve` as a subprocess: refused, audited, memory bounded.

What an attacker tried against a demo bureau: a 3.7 MB message carrying 2 GB of zeros signed by
a partner (it drove the process to 23.5 GB and the kernel killed it), 512 MB of zeros from a
partner's address encrypted by a stranger and not signed, a 100 MB text node in a small form,
and four of them at once. Each must be refused (552 5.3.4) with an audit line naming the partner
and the raw message's digest, nothing may be stored, the process must go on serving, and its
peak resident memory (VmHWM, read from /proc) must stay under 300 MB.

Marked ``slow`` (making the bombs costs gpg about 20 s of CPU): it runs in the normal suite and
in CI; ``pytest -m "not slow"`` leaves it out.
"""

from __future__ import annotations

import asyncio
import shlex
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gpgkit
import pytest
from integration.inboundkit import FORM, World, gateway_config, gateway_fingerprint, message
from integration.servekit import Served, smtp_send
from sqlalchemy import select

from gateway.core.clock import SystemClock
from gateway.store.audit import AuditLog
from gateway.store.ledger import make_engine, messages

pytestmark = pytest.mark.slow

PEAK_LIMIT_KB = 300 * 1024
MESSAGE_LIMIT = 8 << 20  # the gateway under test takes messages of up to 8 MiB
SENDER = "sirene@no.example"
US = "sirene@ro.example"


@dataclass(frozen=True)
class Bombs:
    signed_2g: bytes  # 2 GiB of zeros, signed by the partner, compressed
    stranger_512m: bytes  # 512 MiB of zeros from the partner's address, a stranger's encryption
    text_node_100m: bytes  # a G form with a 100 MiB text node, signed by the partner


def _zeros_through_gpg(size: str, home: Path, gpg_args: list[str]) -> bytes:
    """``size`` of zeros (head -c syntax) through gpg with ``gpg_args``, without holding them."""
    command = f"head -c {size} /dev/zero | gpg --homedir {shlex.quote(str(home))} --batch "
    command += "--yes --no-tty --trust-model always --compress-level 9 --armor "
    command += " ".join(shlex.quote(arg) for arg in gpg_args)
    done = subprocess.run(["sh", "-c", command], capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace"))
    return done.stdout


@pytest.fixture(scope="module")
def bombs(world: World) -> Iterator[Bombs]:
    ours = gateway_fingerprint(world)
    signed = _zeros_through_gpg(
        "2G",
        world.no.home,
        ["--local-user", world.no.fingerprint, "--recipient", ours, "--sign", "--encrypt"],
    )
    stranger_home = gpgkit.new_home()
    gpgkit.make_key(stranger_home, "Stranger <x@stranger.example>")
    gpgkit.import_key(stranger_home, gpgkit.export(world.gnupg_home, ours))
    unsigned = _zeros_through_gpg("512M", stranger_home, ["--recipient", ours, "--encrypt"])
    huge = FORM.replace(b"</ActionTaken>", b"A" * (100 << 20) + b"</ActionTaken>", 1)
    text_node = gpgkit.sign_encrypt(
        world.no.home,
        [world.no.fingerprint],
        [ours],
        gpgkit.entity(huge),
        "--compress-level",
        "9",
    )
    yield Bombs(
        signed_2g=gpgkit.pgp_mime(signed, SENDER, US, "SIRENE G"),
        stranger_512m=gpgkit.pgp_mime(unsigned, SENDER, US, "SIRENE G"),
        text_node_100m=gpgkit.pgp_mime(text_node, SENDER, US, "SIRENE G"),
    )
    gpgkit.kill_agent(stranger_home)


def peak_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def ledger_state(ledger: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The References of the messages received, and (kind, partner, reason) of every
    audit line that records a refusal, each checked to carry a digest."""
    engine = make_engine(f"sqlite:///{ledger}")
    try:
        with engine.connect() as connection:
            received = select(messages.c.reference).where(messages.c.direction == "inbound")
            references = list(connection.execute(received).scalars())
        entries = AuditLog(engine, SystemClock()).entries()
    finally:
        engine.dispose()
    refusals = [entry for entry in entries if entry.kind == "rejected"]
    assert all(len(entry.digest) == 64 for entry in refusals), refusals
    return references, [(e.kind, e.partner, " ".join(e.reason.split()[:2])) for e in refusals]


async def test_bombs_are_refused_with_memory_bounded_and_the_gateway_serving(
    world: World, bombs: Bombs, tmp_path: Path
) -> None:
    for name, raw in vars(bombs).items():
        assert len(raw) < MESSAGE_LIMIT, f"{name} is {len(raw)} bytes"
    ledger = tmp_path / "ledger.db"
    config = gateway_config(world, tmp_path, database_url=f"sqlite:///{ledger}")
    config.write_text(
        config.read_text().replace(
            "max_message_bytes = 262144\n", f"max_message_bytes = {MESSAGE_LIMIT}\n"
        )
    )
    served = Served(config, tmp_path / "logs")
    context = ssl.create_default_context(cafile=str(world.tls_cert))
    try:
        port = await served.start()
        assert served.process is not None
        pid = served.process.pid
        at_start = peak_kb(pid)
        one_by_one = [
            await smtp_send(port, raw, context)
            for raw in (bombs.signed_2g, bombs.stranger_512m, bombs.text_node_100m)
        ]
        four_at_once = await asyncio.gather(
            *(
                smtp_send(port, raw, context)
                for raw in (
                    bombs.signed_2g,
                    bombs.stranger_512m,
                    bombs.signed_2g,
                    bombs.text_node_100m,
                )
            )
        )
        peak = peak_kb(pid)
        still = served.state()
        after = await smtp_send(port, message(world), context)
        status = await served.terminate()
    finally:
        served.kill()

    refused = [*one_by_one, *four_at_once]
    assert [(code, text.split()[0]) for code, text in refused] == [(552, "5.3.4")] * 7, refused
    assert all("the decrypted content" in text for _, text in refused), refused
    assert still.startswith("running"), f"{still}\n{served.log_tail()}"
    assert after[0] == 250, after
    assert status == 0
    assert peak < PEAK_LIMIT_KB, (
        f"VmHWM {peak / 1024:.0f} MiB (at start {at_start / 1024:.0f} MiB)\n{served.log_tail()}"
    )
    references, refusals = ledger_state(ledger)
    assert references == ["NO-2026-000123"], references  # the good message, and nothing else
    assert refusals == [("rejected", "NO-SIRENE", "5.3.4 DecryptedTooBig")] * 7
    print(f"VmHWM at start {at_start / 1024:.0f} MiB, after the bombs {peak / 1024:.0f} MiB")
