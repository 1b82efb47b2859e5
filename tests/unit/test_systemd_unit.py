"""contrib/systemd/ipc-gateway.service and ipc-gateway-web.service: systemd accepts every line
of them, and they confine the gateway and its console as docs/OPERATIONS.md says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent.parent
UNIT = PROJECT / "contrib" / "systemd" / "ipc-gateway.service"
WEB_UNIT = PROJECT / "contrib" / "systemd" / "ipc-gateway-web.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
COMMAND = "-c /etc/ipc-gateway/gateway.toml serve"
WEB_COMMAND = "-c /etc/ipc-gateway/gateway.toml web"


def settings(text: str) -> dict[str, list[str]]:
    """Every Key=value of the unit, each key with its values in order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def verify(text: str, folder: Path, unit: Path = UNIT, command: str = COMMAND) -> list[str]:
    """What `systemd-analyze verify` says about the unit: its exit code must be 0, and it reports
    a line it ignores (an unknown key, a bad value) on stderr with exit code 0 all the same, so
    every line that names the unit is returned.

    verify also checks that ExecStart's program exists, and /opt/ipc-gateway is not here: the copy
    it reads runs this interpreter with `-m gateway` instead, the same command otherwise."""
    if not Path(SYSTEMD_ANALYZE).exists():
        pytest.skip("systemd-analyze is not installed: the unit is not checked by systemd")
    start = settings(unit.read_text())["ExecStart"][0]
    local = text.replace(f"ExecStart={start}", f"ExecStart={sys.executable} -m gateway {command}")
    copy = folder / unit.name
    copy.write_text(local)
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(copy)], capture_output=True, text=True, check=False
    )
    complaints = [line for line in done.stderr.splitlines() if unit.name in line]
    if done.returncode != 0:
        complaints.append(f"exit {done.returncode}: {done.stderr.strip()}")
    return complaints


def test_systemd_accepts_every_line_of_the_unit(tmp_path: Path) -> None:
    assert verify(UNIT.read_text(), tmp_path) == []


def test_verify_reports_a_line_it_would_ignore(tmp_path: Path) -> None:
    """The control of the test above: a misspelt key or a bad value does not pass."""
    text = UNIT.read_text()
    assert verify(text.replace("MemoryMax=", "MemoryMaxx="), tmp_path) != []
    assert verify(text.replace("ProtectSystem=strict", "ProtectSystem=stricter"), tmp_path) != []


def test_the_unit_runs_serve_as_its_own_user_with_one_capability() -> None:
    unit = settings(UNIT.read_text())
    assert unit["ExecStart"][0].endswith(f"/gateway {COMMAND}")
    assert unit["User"] == unit["Group"] == ["ipc-gateway"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["UMask"] == ["0077"]


def test_the_unit_confines_the_file_system_and_the_network() -> None:
    unit = settings(UNIT.read_text())
    assert unit["ProtectSystem"] == ["strict"]
    for key in (
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
    ):
        assert unit[key] == ["yes"], key
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert unit["StateDirectory"] == ["ipc-gateway"]
    assert "/var/lib/ipc-gateway" in unit["ReadWritePaths"]


def test_the_unit_bounds_resources_and_restarts_after_a_failure() -> None:
    unit = settings(UNIT.read_text())
    for key in ("MemoryHigh", "MemoryMax", "TasksMax", "LimitNOFILE", "RestartSec"):
        assert len(unit.get(key, [])) == 1, key
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2"]  # a configuration error stays down


def test_systemd_accepts_every_line_of_the_console_unit(tmp_path: Path) -> None:
    assert verify(WEB_UNIT.read_text(), tmp_path, WEB_UNIT, WEB_COMMAND) == []


def test_the_console_unit_runs_web_without_any_capability_confined_like_serve() -> None:
    web, serve = settings(WEB_UNIT.read_text()), settings(UNIT.read_text())
    assert web["ExecStart"][0].endswith(f"/gateway {WEB_COMMAND}")
    assert web["User"] == web["Group"] == ["ipc-gateway"]
    assert web["CapabilityBoundingSet"] == web["AmbientCapabilities"] == [""]
    confinement = (
        "NoNewPrivileges", "UMask", "ProtectSystem", "ProtectHome", "PrivateTmp",
        "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectClock", "ProtectProc", "RestrictAddressFamilies",
        "RestrictNamespaces", "RestrictSUIDSGID", "SystemCallFilter", "StateDirectory",
        "RestartPreventExitStatus",
    )  # fmt: skip
    for key in confinement:
        assert web[key] == serve[key], key
    for key in ("MemoryHigh", "MemoryMax", "TasksMax", "LimitNOFILE"):
        assert len(web.get(key, [])) == 1, key
