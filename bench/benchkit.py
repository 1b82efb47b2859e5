"""What the benchmarks share: their results written as JSON; for the SMTP ones a throwaway
certificate, a free port, a bare STARTTLS server, the versions they ran with."""

from __future__ import annotations

import asyncio
import json
import platform
import re
import socket
import ssl
import subprocess
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
