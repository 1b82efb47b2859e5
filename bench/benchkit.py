"""What the benchmarks share: their results written as JSON; for the SMTP ones a throwaway
certificate, a free port, a bare STARTTLS server, the versions they ran with; what a spooled file
costs the kernel in the folder where a benchmark makes its world."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP


def certificate(folder: Path, stem: str, hostname: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for ``hostname`` and 127.0.0.1 (``stem``.crt, .key)."""
    cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2", "-subj", f"/CN={hostname}",
            "-addext", f"subjectAltName=DNS:{hostname},IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago, for a server that a configuration
    must name before it starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def starttls_server(
    handler: Any, context: ssl.SSLContext, hostname: str, *, port: int = 0, size: int = 1 << 20
) -> asyncio.Server:
    """A bare aiosmtpd server on 127.0.0.1 that requires STARTTLS, with ``handler``'s hooks."""
    return await asyncio.get_running_loop().create_server(
        lambda: SMTP(
            handler,
            hostname=hostname,
            tls_context=context,
            require_starttls=True,
            data_size_limit=size,
            decode_data=False,
        ),
        host="127.0.0.1",
        port=port,
    )


# Files written by file_cost, and their size: what a spool put writes for a small form.
COST_FILES = 100
COST_BYTES = 2048


def file_cost(folder: Path, count: int = COST_FILES) -> dict[str, float]:
    """What ``count`` files written as the spool writes them (created exclusively, written,
    synced, renamed into another folder) cost this thread's CPU (user and system), in
    microseconds a file: ``create`` the creation alone, ``spooled`` all of it. Written in a new
    folder under ``folder``, where a benchmark's gateway writes its own files; they stay until
    the benchmark removes its world (removing them now would add to what it measures: see
    docs/PERFORMANCE.md, "How to measure", on a disk without a journal).

    On such a disk the creation costs 20 us or 1 ms by what was deleted lately in the block
    group that holds the folder, which moves the gateway's own figures with it: printed beside
    them, it tells two runs' conditions apart."""
    scratch = Path(folder) / f"file-cost-{time.time_ns()}"
    (scratch / "tmp").mkdir(parents=True)
    (scratch / "new").mkdir()
    data = os.urandom(COST_BYTES)
    creating = 0.0
    started = time.thread_time()
    for number in range(count):
        name = f"{number}.msg"
        before = time.thread_time()
        descriptor = os.open(scratch / "tmp" / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        creating += time.thread_time() - before
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        (scratch / "tmp" / name).rename(scratch / "new" / name)
    spent = time.thread_time() - started
    return {"create": round(1e6 * creating / count, 1), "spooled": round(1e6 * spent / count, 1)}


# A new file's creation costs this much or less where nothing was deleted lately (20-25 us on
# the machines these benchmarks were written on, ext4 without a journal).
SETTLED_CREATE_US = 40.0
SETTLE_POLL = 15.0


def add_disk_options(parser: argparse.ArgumentParser) -> None:
    """--workdir and --settle, for a benchmark that makes a gateway's world."""
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()),
        help="where the gateway's spool, desks and ledger are made (a new folder in it; "
        "default: the temporary folder, $TMPDIR or /tmp)",
    )  # fmt: skip
    parser.add_argument(
        "--settle", type=float, default=400.0, metavar="SECONDS",
        help="wait at most this long for file creation to cost what it does on a quiet disk "
        "before the passes (0: do not wait)",
    )  # fmt: skip


def settle_disk(folder: Path, longest: float) -> tuple[dict[str, float], float]:
    """Wait, up to ``longest`` seconds, until creating a file in ``folder`` costs at most
    SETTLED_CREATE_US (see file_cost): after a test suite or another run removed many files, a
    disk without a journal takes up to six minutes to forget them. Returns the last cost and
    the seconds waited; the wait ends early as soon as the cost is down (on a journaled disk,
    at once)."""
    started = time.monotonic()
    cost = file_cost(folder)
    if cost["create"] > SETTLED_CREATE_US and longest > 0:
        print(
            f"a new file costs the kernel {cost['create']:.0f} us of CPU under {folder}: waiting "
            f"up to {longest:.0f} s for the disk to settle (--settle)",
            flush=True,
        )
    while cost["create"] > SETTLED_CREATE_US and (left := longest - time.monotonic() + started) > 0:
        time.sleep(min(SETTLE_POLL, left))
        cost = file_cost(folder)
    return cost, round(time.monotonic() - started, 1)


@contextlib.contextmanager
def watched_disk(folder: Path, settle: float) -> Iterator[dict[str, Any]]:
    """Around a benchmark's passes: first wait for the disk to settle (settle_disk, at most
    ``settle`` seconds), then give what a file cost before the passes (``before``), how long
    the wait was (``waited_s``) and, once the passes are done, what a file cost then
    (``after``): the results' ``disk_file_cpu_us``, for say_file_cost."""
    before, waited = settle_disk(folder, settle)
    disk: dict[str, Any] = {"before": before, "waited_s": waited}
    yield disk
    disk["after"] = file_cost(folder)


def say_file_cost(cost: dict[str, Any], folder: Path) -> None:
    """Print what file_cost measured before and after a benchmark's passes, and how long the
    benchmark waited for the disk to settle first."""
    before, after = cost["before"], cost["after"]
    if cost["waited_s"] >= 1:  # measuring the disk alone takes a tenth of a second
        print(f"waited {cost['waited_s']:.0f} s for the disk to settle before the passes")
    print(
        f"the disk under {folder}: a new file cost the kernel {before['create']:.0f} us of CPU "
        f"before the passes and {after['create']:.0f} us after ({before['spooled']:.0f} and "
        f"{after['spooled']:.0f} us written, synced and renamed); 20-25 us where nothing was "
        "deleted lately on this machine (docs/PERFORMANCE.md, How to measure)"
    )


def versions() -> dict[str, str]:
    """Python, gpg and the libraries on the SMTP path, for the results' JSON."""
    text = subprocess.run(["gpg", "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"^gpg \(GnuPG\) (\S+)", text, re.MULTILINE)
    return {
        "python": platform.python_version(),
        "gpg": found.group(1) if found else "unknown",
        "aiosmtpd": version("aiosmtpd"),
        "aiosmtplib": version("aiosmtplib"),
        "python_gnupg": version("python-gnupg"),
        "sqlalchemy": version("sqlalchemy"),
    }


def write_results(out: Path, results: object) -> None:
    """The results as indented JSON in ``out`` (its folder made if need be), and where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
