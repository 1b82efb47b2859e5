"""Test kit: `gateway serve` as a child process, and one SMTP session to it as a partner's MTA."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import aiosmtplib
from dbkit import upgraded

from gateway.core import config as configuration

START_TIMEOUT = 60.0  # seconds for `gateway serve` to log "listening on"
LISTENING = re.compile(r"listening on [^\s:]+:(\d+)")
# `python -m gateway`; with -X faulthandler a crash of the interpreter itself (SIGSEGV, SIGABRT)
# leaves a traceback in the server's log.
SERVE = (sys.executable, "-X", "faulthandler", "-m", "gateway")
SENDER = "sirene@no.example"
GATEWAY_ADDRESS = "sirene@ro.example"


class Served:
    """`python -m gateway -c CONFIG serve` as a child process; one log file per start."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._log_file: IO[bytes] | None = None
        logs.mkdir(parents=True, exist_ok=True)

    async def start(self, env: Mapping[str, str] | None = None) -> int:
        """Start the server and return the port it logged once it listens; ``env``: variables
        added to this start's environment (e.g. a crash point, core/crashpoints.py)."""
        if self.process is not None:
            raise RuntimeError("already running")
        if self.starts == 0:  # the operator's `gateway db upgrade` before the first serve
            upgraded(configuration.load(self.config).database_url)
        self.starts += 1
        self.log_path = self.logs / f"serve-{self.starts:02d}.log"
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*SERVE, "-c", str(self.config), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            cwd=self.config.parent,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if found := LISTENING.search(self.log_path.read_text(errors="replace")):
                return int(found.group(1))
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.02)
        self.kill()
        raise AssertionError(f"`gateway serve` did not start:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a power cut of the process."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._closed()

    async def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for a clean stop; the exit status."""
        if self.process is None:
            raise RuntimeError("not running")
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while (status := self.process.poll()) is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no stop {timeout:.0f} s after SIGTERM:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        self._closed()
        return status

    async def died(self, timeout: float = 30.0) -> int:
        """Wait for the server to end by itself (a crash point); its exit status."""
        if self.process is None:
            raise RuntimeError("not running")
        deadline = time.monotonic() + timeout
        while (status := self.process.poll()) is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"still running after {timeout:.0f} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        self._closed()
        return status

    def state(self) -> str:
        """Whether the server process still runs, for the messages of failures."""
        if self.process is None:
            return "not running"
        status = self.process.poll()
        if status is None:
            return f"running (pid {self.process.pid})"
        return f"exited with status {status}" + (
            f" ({signal.Signals(-status).name})" if status < 0 else ""
        )

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _closed(self) -> None:
        self.process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


async def smtp_send(
    port: int, raw: bytes, context: ssl.SSLContext, sender: str = SENDER
) -> tuple[int, str]:
    """One SMTP session with STARTTLS and one message: the reply to DATA, or the refusal
    (also a refusal of the connection itself, such as 421).

    A dropped connection raises (aiosmtplib.SMTPException, OSError, TimeoutError).
    """
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=False, tls_context=context, timeout=30
    )
    try:
        await client.connect()
        await client.starttls()
        await client.mail(sender)
        await client.rcpt(GATEWAY_ADDRESS)
        response = await client.data(raw)
    except aiosmtplib.SMTPResponseException as refused:
        return refused.code, refused.message
    finally:
        client.close()
    return response.code, response.message
