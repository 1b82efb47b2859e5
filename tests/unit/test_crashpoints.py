"""Crash points: ``GATEWAY_CRASH_AT=<name>@<n>`` kills the process (SIGKILL) the n-th time the
point is reached, and not before; another point's name kills nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from gateway.core import crashpoints

SCRIPT = """
from gateway.core import crashpoints
for time in range(1, 5):
    crashpoints.reached(crashpoints.FED)
    print(time, flush=True)
"""


def run(wanted: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, crashpoints.ENV_VAR: wanted},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_nth_time_the_point_is_reached_kills_the_process() -> None:
    done = run(f"{crashpoints.FED}@3")
    assert (done.returncode, done.stdout.split()) == (-signal.SIGKILL, ["1", "2"])


def test_a_point_named_alone_kills_at_once_and_another_name_never() -> None:
    assert run(crashpoints.FED).returncode == -signal.SIGKILL
    lives = run(f"{crashpoints.DESK_DELIVERED}@1")
    assert (lives.returncode, lives.stdout.split()) == (0, ["1", "2", "3", "4"])
