"""Fuzzy similarity of two strings, 0 to 100: the only module that imports rapidfuzz."""

from __future__ import annotations

from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein


def ratio(left: str, right: str) -> float:
    """The normalised Indel similarity of two strings, 0 (nothing alike) to 100 (the same)."""
    return float(fuzz.ratio(left, right))


def edits(left: str, right: str) -> int:
    """The Levenshtein distance: insertions, deletions and substitutions from one to the other."""
    return int(Levenshtein.distance(left, right))


def ratios(left: str, rights: list[str], least: float) -> list[tuple[int, float]]:
    """(index, ratio) of the ``rights`` at least ``least`` alike ``left`` (one call in C)."""
    found = process.extract(left, rights, scorer=fuzz.ratio, score_cutoff=least, limit=None)
    return [(int(at), float(value)) for _, value, at in found]
