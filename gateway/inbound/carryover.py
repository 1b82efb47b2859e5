"""What the intake already parsed and validated, kept for the hand-off of the same process.

The intake opens each message (its entity parsed, its form validated against the schema) before
the 250; the hand-off needs the same two things moments later for the desk's copy. Kept here, by
spool key, they are not parsed and validated a second time. Bounded in entries and in bytes
(an estimate of what a parsed form holds): what does not fit, or what a restart lost, the
hand-off reads again from the spool, which is always the record.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from gateway.crypto.pgpmime import Payload
from gateway.forms.xmlforms import Validation

MAX_ENTRIES = 4096
MAX_BYTES = 64 << 20
# A parsed form (its lxml tree) holds several times the bytes of its XML.
TREE_FACTOR = 8

Checked = tuple[Payload, Validation]


def weight(payload: Payload) -> int:
    """The bytes an entry is counted for: its form, as a tree, and its attachments."""
    return TREE_FACTOR * len(payload.form) + sum(len(item.data) for item in payload.attachments)


class Carryover:
    """Checked payloads by spool key, oldest dropped first when full; safe from any thread."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Checked, int]] = OrderedDict()
        self._bytes = 0

    def put(self, key: str, payload: Payload, validation: Validation) -> None:
        """Keep what the intake checked for ``key``; nothing when it alone is over the bound."""
        size = weight(payload)
        if size > self.max_bytes:
            return
        with self._lock:
            self._drop(key)
            self._entries[key] = ((payload, validation), size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def take(self, key: str) -> Checked | None:
        """What was kept for ``key``, removed; None when nothing is kept for it."""
        with self._lock:
            found = self._entries.pop(key, None)
            if found is None:
                return None
            self._bytes -= found[1]
            return found[0]

    def discard(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _drop(self, key: str) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self._bytes -= found[1]
