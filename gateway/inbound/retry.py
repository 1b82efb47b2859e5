"""The hand-off's retry policy: a hand-off that fails for a lasting reason, or that a stop of the
process cut short, is an attempt; after the fifth the item is set aside in quarantine.

A transient failure (a full disk, a database away) is no attempt: the item goes back as it was.
The count (``attempts``) and the last reason (``last_error``) are kept in the item's metadata, so
they survive a restart; the quarantine notice and ``gateway queue show`` read them there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import GatewayError
from gateway.store.spool import Spool, SpoolItem

log = logging.getLogger("gateway.spool")

MAX_ATTEMPTS = 5
RETRY_STATE = ("attempts", "last_error")  # the metadata this policy keeps
INTERRUPTED = "interrupted: recovered at start-up"


@dataclass(frozen=True)
class Verdict:
    """What becomes of an item after a failed attempt: its new metadata, and whether that was
    its last attempt (then it is set aside)."""

    meta: dict[str, Any]
    attempts: int
    last: bool


def after_failure(meta: Mapping[str, Any], reason: str, max_attempts: int) -> Verdict:
    """The verdict on an item whose attempt failed for ``reason``: ``attempts`` + 1 and
    ``last_error`` in its metadata; its last when that makes ``max_attempts``."""
    value = meta.get("attempts", 0)
    attempts = (value if isinstance(value, int) and value >= 0 else 0) + 1
    return Verdict(
        {**meta, "attempts": attempts, "last_error": reason}, attempts, attempts >= max_attempts
    )


def is_transient(error: Exception) -> bool:
    """Whether a failure is our own passing trouble (no attempt counted): an OSError, or a
    GatewayError that says it is transient."""
    return isinstance(error, OSError) or (isinstance(error, GatewayError) and error.transient)


class HandoffRetry:
    """Applies the policy to claimed items of the inbound spool."""

    def __init__(self, spool: Spool, max_attempts: int = MAX_ATTEMPTS) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.spool = spool
        self.max_attempts = max_attempts

    def failed(self, item: SpoolItem, error: Exception) -> bool:
        """Put back a claimed item whose hand-off raised ``error``; False when it was set aside.
        A full disk may refuse even the rewrite that counts: then the item goes back untouched,
        by a rename that needs no space."""
        if is_transient(error):
            self.spool.requeue(item)
            return True
        try:
            return self.count(item, f"{type(error).__name__}: {error}"[:200])
        except GatewayError:
            self.spool.requeue(item)
            return True

    def count(self, item: SpoolItem, reason: str) -> bool:
        """Count a failed attempt of a claimed item: back into the queue, or, at the last
        attempt, set aside. False when it was set aside."""
        verdict = after_failure(item.meta, reason, self.max_attempts)
        if verdict.last:
            self.spool.set_aside(item, reason, verdict.meta)
            log.warning("quarantined %s after %d attempts: %s", item.key, verdict.attempts, reason)
            return False
        self.spool.requeue(item, verdict.meta)
        log.info("deferred %s (attempt %d): %s", item.key, verdict.attempts, reason)
        return True

    def refused(self, item: SpoolItem, error: Exception) -> None:
        """Set a claimed item aside at once, counted and with its reason: a refusal no retry can
        change (the desks' mail store refused its copy for good). The quarantine notice tells
        the duty desk; `gateway queue release` tries it again once the cause is mended."""
        reason = f"{type(error).__name__}: {error}"[:200]
        self.spool.set_aside(item, reason, after_failure(item.meta, reason, 1).meta)
        log.warning("quarantined %s: %s", item.key, reason)

    def interrupted(self, items: Iterable[SpoolItem]) -> int:
        """At start-up: items a stopped process left claimed (``Spool.recover``). As in Mailman's
        .bak recovery, each counts as a failed attempt, so an item that kills the gateway every
        time ends in quarantine, not in a loop. Returns how many were set aside."""
        return sum(not self.count(item, INTERRUPTED) for item in items)
