"""A one-line progress bar on a terminal for commands that take many files; silent elsewhere."""

from __future__ import annotations

import shutil
from typing import IO

MIN_ITEMS = 10


class Progress:
    def __init__(self, total: int, stream: IO[str], *, min_items: int = MIN_ITEMS) -> None:
        self.total = total
        self.stream = stream
        self.count = 0
        self.enabled = total >= min_items and stream.isatty()
        self._shown = False

    def step(self, label: str) -> None:
        self.count += 1
        if not self.enabled:
            return
        width = max(10, min(40, shutil.get_terminal_size().columns - 30))
        filled = width * self.count // self.total
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r[{bar}] {self.count}/{self.total} {label[-20:]:<20}")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def done(self) -> None:
        self.clear()
