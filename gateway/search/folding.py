"""Folding of names and identifiers to the forms the index keeps and searches compare.

A name is transliterated to ASCII (Cyrillic, Greek, diacritics), lower-cased, cut into parts at
anything that is not a letter or digit, with digits that OCR reads for letters put back (0 o,
1 l, 5 s, 8 b). Its skeleton folds the known spelling variants of police name searches (ue/u,
w/v, ph/f, sz/sh, y/i, doubled letters, ...): Mueller, Müller and Muller share one, as do
Nowak and Novák, Иванов, Ivanov and Iwanow. An identifier (document, plate, VIN, serial,
reference) keeps only letters and digits, upper-cased, with O read as 0 and I as 1.
"""

from __future__ import annotations

import functools
import re

from gateway.search.translit import to_ascii

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_OCR_DIGITS = str.maketrans("0158", "olsb")
# In order: longer spellings first, so that "sch" is read before "ch".
_VARIANTS = (
    ("tsch", "ch"),
    ("sch", "sh"),
    ("sz", "sh"),
    ("cz", "ch"),
    ("kh", "h"),
    ("ch", "h"),
    ("ck", "k"),
    ("ph", "f"),
    ("th", "t"),
    ("dt", "t"),
    ("ue", "u"),
    ("oe", "o"),
    ("ae", "a"),
    ("ou", "u"),
    ("w", "v"),
    ("y", "i"),
    ("j", "i"),
    ("q", "k"),
    ("c", "k"),
    ("x", "ks"),
    ("z", "s"),
)
_DOUBLED = re.compile(r"(.)\1+")
_VOWELS = re.compile(r"[aeiou]+")
_ID_CONFUSABLE = str.maketrans("OI", "01")
_ID_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


def name_parts(text: str) -> list[str]:
    """The parts of a name, folded: ``"Jürgen  MÜLLER-Lüdenscheidt"`` -> jurgen, muller,
    ludenscheidt."""
    ascii_text = to_ascii(text).lower().translate(_OCR_DIGITS)
    return [part for part in _NOT_ALNUM.split(ascii_text) if part]


@functools.lru_cache(maxsize=1 << 16)
def skeleton(part: str) -> str:
    """A folded name part with its spelling variants folded: mueller, muller -> muler."""
    for written, read in _VARIANTS:
        if written in part:
            part = part.replace(written, read)
    return _DOUBLED.sub(r"\1", part)


def name_key(parts: list[str]) -> str:
    """The index key of a name: its parts' skeletons, sorted (name parts in any order)."""
    return " ".join(sorted(skeleton(part) for part in parts))


@functools.lru_cache(maxsize=1 << 16)
def consonants(skeleton_part: str) -> str:
    """A skeleton without its vowels after the first letter: mohamed, muhamad -> mhmd."""
    return skeleton_part[:1] + _VOWELS.sub("", skeleton_part[1:])


def forget() -> None:
    """Empty the caches of name parts: after a shredding, no part of a shredded name stays in
    this process's memory for them."""
    skeleton.cache_clear()
    consonants.cache_clear()


def identifier(text: str) -> str:
    """An identifier folded: ``"ab-12 cd"`` -> AB12CD, ``"XO1I"`` -> X0110."""
    return _ID_NOT_ALNUM.sub("", to_ascii(text).upper()).translate(_ID_CONFUSABLE)


def phone(text: str) -> str:
    """A phone number's digits: ``"+47 (22) 00-00"`` -> 47220000."""
    return "".join(char for char in text if char.isdigit())


def email(text: str) -> str:
    """An e-mail address as compared: lower case, spaces removed."""
    return "".join(to_ascii(text).lower().split())
