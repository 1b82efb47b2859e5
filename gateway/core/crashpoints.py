"""Named points where a test may have the process killed (SIGKILL, as in a power cut):
``GATEWAY_CRASH_AT=<name>`` in the environment of `gateway serve`, or ``<name>@<n>`` for the
n-th time the point is reached. Unset, a point costs one look-up in the environment."""

from __future__ import annotations

import os
import signal

ENV_VAR = "GATEWAY_CRASH_AT"
# After the desk copies are delivered (Maildir or Dovecot's 250), before the ledger records them.
DESK_DELIVERED = "handoff.desk-delivered"
# A node has taken received messages of the ledger into its spool, before handing them off.
FED = "node.fed"
POINTS = (DESK_DELIVERED, FED)
_reached: dict[str, int] = {}


def reached(point: str) -> None:
    """Kill this process at once when the environment names ``point``."""
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}")
    wanted = os.environ.get(ENV_VAR)
    if wanted is None:
        return
    name, _, times = wanted.partition("@")
    if name != point:
        return
    _reached[point] = count = _reached.get(point, 0) + 1
    if count >= (int(times) if times.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
