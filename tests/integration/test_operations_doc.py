"""docs/OPERATIONS.md walks an operator from nothing to two bureaux exchanging a form: run its
marked command blocks, in order, in a new folder, with two gateways on loopback (free ports), and
end with RO's form accepted by NO (250), on NO's desk, and RO's message acknowledged."""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from gateway.core import config as configuration
from gateway.core.config import PROJECT_ROOT

OPERATIONS = PROJECT_ROOT / "docs" / "OPERATIONS.md"
BLOCK = re.compile(r"<!-- walk(?P<serve>: serve)? -->\s*```bash\n(?P<script>.*?)```", re.S)
DOC_PORTS = ("2525", "2526")  # RO's and NO's in the document
WAIT = 60.0  # seconds, at most, for a gateway to listen or a message to arrive


def blocks() -> list[tuple[bool, str]]:
    found = [
        (bool(m.group("serve")), m.group("script")) for m in BLOCK.finditer(OPERATIONS.read_text())
    ]
    assert len(found) >= 8, "docs/OPERATIONS.md lost the blocks of its first-hour walk"
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for home in tmp_path.glob("*/gnupg"):
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )


def wait_for(
    what: str, condition: Callable[[], bool], servers: list[subprocess.Popen[bytes]]
) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        for server in servers:
            assert server.poll() is None, f"a gateway stopped: {server.args!r}"
        assert time.monotonic() < deadline, f"no {what} within {WAIT} s"
        time.sleep(0.1)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_first_hour_walk_ends_with_a_form_exchanged(folder: Path) -> None:
    ports = {doc: str(free_port()) for doc in DOC_PORTS}
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("GATEWAY_CONFIG", None)
    shutil.copy(PROJECT_ROOT / "config" / "demo" / "g-hit.xml", folder / "g-hit.xml")
    servers: list[subprocess.Popen[bytes]] = []
    outputs: list[str] = []
    try:
        for serve, text in blocks():
            script = text
            for doc, port in ports.items():
                script = script.replace(doc, port)
            if serve:
                server = subprocess.Popen(
                    ["bash", "-c", f"exec {script.strip()}"],
                    cwd=folder,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                servers.append(server)
                listen = configuration.load(folder / script.split()[2]).listen.port
                wait_for(f"listener on {listen}", partial(listening, listen), servers)
                continue
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
        assert len(servers) == 2
        assert (folder / "ro" / "passphrase").stat().st_mode & 0o777 == 0o600
        assert "RO-SIRENE: ok" in outputs[-2] and "NO-SIRENE: ok" in outputs[-2]
        assert "g-hit.xml: valid G (Created and Reference will be filled in by send)" in outputs[-1]
        reference = outputs[-1].split()[-1]
        assert re.fullmatch(r"RO-\d{4}-\d{6}", reference), outputs[-1]

        desk = folder / "no" / "desks" / "sirene" / "new"
        wait_for(
            "desk copy at NO", lambda: desk.is_dir() and any(desk.glob(f"*{reference}")), servers
        )
        [copy] = desk.glob(f"*{reference}")
        message = email.message_from_bytes(copy.read_bytes(), policy=email.policy.default)
        assert message["X-IPC-Reference"] == reference
        body = message.get_body(("plain",))
        assert body is not None
        assert body.get_content().startswith("SIRENE form G: Hit, action taken")

        def acknowledged() -> bool:
            status = subprocess.run(
                ["gateway", "-c", "ro/gateway.toml", "status", reference],
                cwd=folder, env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            return f"{reference} outbound G NO-SIRENE: acknowledged" in status.stdout

        wait_for("receipt at RO", acknowledged, servers)
        events = subprocess.run(
            ["gateway", "-c", "ro/gateway.toml", "status", reference],
            cwd=folder, env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert " sent " in events and "250" in events  # NO's server took it with a 250
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                server.wait(timeout=45)
            except subprocess.TimeoutExpired:
                server.kill()
