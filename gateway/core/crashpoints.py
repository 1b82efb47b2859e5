"""Named points where a test may have the process killed (SIGKILL, as in a power cut):
``GATEWAY_CRASH_AT=<name>`` in the environment of `gateway serve`. Unset, a point costs one
look-up in the environment."""

from __future__ import annotations

import os
import signal

ENV_VAR = "GATEWAY_CRASH_AT"
# After the desk copies are delivered (Maildir or Dovecot's 250), before the ledger records them.
DESK_DELIVERED = "handoff.desk-delivered"
POINTS = (DESK_DELIVERED,)


def reached(point: str) -> None:
    """Kill this process at once when the environment names ``point``."""
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}")
    if os.environ.get(ENV_VAR) == point:
        os.kill(os.getpid(), signal.SIGKILL)
