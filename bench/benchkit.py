"""What the benchmarks share: their results written as JSON; for the SMTP ones a throwaway
certificate, a free port, a bare STARTTLS server, the versions they ran with; what a spooled file
costs the kernel in the folder where a benchmark makes its world."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import socket
import ssl
import subprocess
import time
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


def file_cost(folder: Path, count: int = COST_FILES) -> float:
    """The CPU (this thread's, user and system: microseconds a file) of writing ``count`` files
    as the spool does (created exclusively, written, synced, renamed into another folder), in
    a new folder under ``folder``, where a benchmark's gateway writes its own files. The files
    stay until the benchmark removes its world (removing them now would add to what it
    measures: see docs/PERFORMANCE.md, "How to measure", on a disk without a journal).

    The same code costs the kernel 20 us a file or 1 ms by the state of the disk's block group
    that holds the folder, which moves the gateway's own figures with it: printed beside them,
    it tells two runs' conditions apart."""
    scratch = Path(folder) / f"file-cost-{time.time_ns()}"
    (scratch / "tmp").mkdir(parents=True)
    (scratch / "new").mkdir()
    data = os.urandom(COST_BYTES)
    started = time.thread_time()
    for number in range(count):
        name = f"{number}.msg"
        descriptor = os.open(scratch / "tmp" / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        (scratch / "tmp" / name).rename(scratch / "new" / name)
    return round(1e6 * (time.thread_time() - started) / count, 1)


def say_file_cost(cost: dict[str, float], folder: Path) -> None:
    """Print what file_cost measured before and after a benchmark's passes."""
    print(
        f"the disk under {folder}: a spooled file cost the kernel {cost['before']:.0f} us of CPU "
        f"before the passes, {cost['after']:.0f} us after (a fresh folder's: 20-30 us here; "
        "docs/PERFORMANCE.md, How to measure)"
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
