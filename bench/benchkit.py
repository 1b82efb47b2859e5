"""What the benchmarks share: a throwaway TLS certificate for a server on 127.0.0.1."""

from __future__ import annotations

import subprocess
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
