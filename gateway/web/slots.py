"""A bound on slow work of one kind in one console process (the PDF of a data-subject report):
a slot is taken without waiting or refused, so a request beyond the bound is answered at once
(503 with Retry-After) rather than queued behind the others on the worker's threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Slots:
    """``size`` slots; ``held()`` yields whether one was free (and gives it back after)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("at least one slot")
        self.size = size
        self._busy = 0
        self._lock = threading.Lock()

    @property
    def busy(self) -> int:
        return self._busy

    @contextmanager
    def held(self) -> Iterator[bool]:
        with self._lock:
            taken = self._busy < self.size
            if taken:
                self._busy += 1
        try:
            yield taken
        finally:
            if taken:
                with self._lock:
                    self._busy -= 1
