"""Transliteration of any script to ASCII: the only module that imports anyascii."""

from __future__ import annotations

from anyascii import anyascii


def to_ascii(text: str) -> str:
    """``text`` in ASCII letters as anyascii writes them: Иванов -> Ivanov, Müller -> Muller,
    Νίκος -> Nikos."""
    return anyascii(text)
