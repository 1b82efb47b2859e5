"""The trigrams of name parts known to be common (held by more than a search reads), remembered
for a while by each process, so that a person search on PostgreSQL counts only the others.

A search chooses the rarest trigrams of a part by how many parts hold each, counted up to a cap
in the trigram table's B-tree: at a million persons most trigrams of a family name reach the
cap, and counting each of them to it was the largest read of a search. A trigram once counted
to the cap is remembered as common for ``ttl`` seconds; one that was rarer is always counted
again (it may have become common since). Forgetting after ``ttl`` bounds how long a trigram
that became rarer (its parts' messages shredded) is still taken for common: at worst a search
in that time reads another trigram's parts instead of it. At most ``size`` trigrams are kept,
the least recently confirmed forgotten first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable


class CommonGrams:
    """Trigrams counted to the cap, each with when it was."""

    def __init__(
        self, *, ttl: float = 600.0, size: int = 8192, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl <= 0 or size <= 0:
            raise ValueError("ttl and size must be positive")
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def among(self, grams: Iterable[str]) -> set[str]:
        """Those of ``grams`` remembered as common, and not for longer than the ttl."""
        now = self._clock()
        found = set()
        with self._lock:
            for gram in grams:
                when = self._seen.get(gram)
                if when is None:
                    continue
                if now - when >= self._ttl:
                    del self._seen[gram]
                else:
                    found.add(gram)
        return found

    def remember(self, grams: Iterable[str]) -> None:
        """``grams`` were just counted to the cap."""
        now = self._clock()
        with self._lock:
            for gram in grams:
                self._seen[gram] = now
                self._seen.move_to_end(gram)
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)

    def forget(self) -> None:
        with self._lock:
            self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)
