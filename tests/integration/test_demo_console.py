"""`gateway demo --console` as a user runs it: the story, then each bureau's console served
beside its running gateway, the printed logins working, and Ctrl-C stopping it all cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx2

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CONSOLE = re.compile(r"^  (RO|NO|RS) \(([^)]*)\): (http://127\.0\.0\.1:\d+/)$")
LOGIN = re.compile(r"^    ([a-z][a-z0-9._-]+)\s+(\S+)\s+([a-z_]+)$")
READY_SECONDS = 240


def _read_until_ready(process: subprocess.Popen[str], lines: list[str]) -> bool:
    assert process.stdout is not None
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if "Consoles ready" in line:
                ready.set()
        ready.set()  # the output ended: the process stopped

    threading.Thread(target=pump, daemon=True).start()
    return ready.wait(READY_SECONDS) and any("Consoles ready" in line for line in lines)


def _consoles(lines: list[str]) -> dict[str, tuple[str, dict[str, tuple[str, str]]]]:
    """Per bureau: its URL and its logins (name -> password, role)."""
    found: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {}
    current = ""
    for line in lines:
        if (console := CONSOLE.match(line)) is not None:
            current = console.group(1)
            found[current] = (console.group(3), {})
        elif current and (login := LOGIN.match(line)) is not None:
            found[current][1][login.group(1)] = (login.group(2), login.group(3))
    return found


def _sign_in(url: str, name: str, password: str) -> httpx2.Client:
    client = httpx2.Client(base_url=url, timeout=30, follow_redirects=True)
    token = CSRF.search(client.get("/login").text)
    assert token is not None
    answer = client.post(
        "/login", data={"csrf": token.group(1), "name": name, "password": password, "code": ""}
    )
    assert answer.status_code == 200 and "Log out" in answer.text, answer.text[:500]
    return client


def test_the_consoles_serve_the_demo_until_interrupted(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--console", "--dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert _read_until_ready(process, lines), "\n".join(lines[-40:])
        consoles = _consoles(lines)
        assert set(consoles) == {"RO", "NO", "RS"}
        url, logins = consoles["NO"]
        assert set(logins) == {
            "handler.sirene",
            "supervisor",
            "duty.officer",
            "operator",
            "auditor",
        }
        # NO's SIRENE handler finds RO's hit (form G) on the worklist and opens it.
        handler = _sign_in(url, "handler.sirene", logins["handler.sirene"][0])
        worklist = handler.get("/").text
        hit = re.search(r'href="/messages/(\d+)" class="open">(RO-\d{4}-\d{6})<', worklist)
        assert hit is not None, worklist[:2000]
        assert "RO-SIRENE" in worklist
        page = handler.get(f"/messages/{hit.group(1)}")
        assert page.status_code == 200 and hit.group(2) in page.text
        # The times are the bureau's (Oslo).
        shown = re.search(r'<time datetime="([^"]+)" title="[^"]+">([^<]+)</time>', page.text)
        assert shown is not None
        local = datetime.fromisoformat(shown.group(1)).astimezone(ZoneInfo("Europe/Oslo"))
        assert shown.group(2) == f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
        # RS's console is another bureau's: NO's handler is nobody there.
        rs_url, _ = consoles["RS"]
        with httpx2.Client(base_url=rs_url, timeout=30) as other:
            token = CSRF.search(other.get("/login").text)
            assert token is not None
            refused = other.post(
                "/login",
                data={
                    "csrf": token.group(1),
                    "name": "handler.sirene",
                    "password": logins["handler.sirene"][0],
                },
            )
            assert "Log out" not in refused.text
        written = folder / "logins.txt"
        assert written.stat().st_mode & 0o777 == 0o600
        assert logins["auditor"][0] in written.read_text()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, "\n".join(lines[-20:])
        assert "Stopping." in lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
