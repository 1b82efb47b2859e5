"""What the SMTP benchmarks share: a throwaway TLS certificate, a free port, the versions."""

from __future__ import annotations

import platform
import re
import socket
import subprocess
from importlib.metadata import version
from pathlib import Path


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
