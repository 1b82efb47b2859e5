"""A search of the index: candidates from the trigram or exact-key index, scored, ranked, each
with the reasons it matched. A name's candidates come from its parts: the held name parts alike
each part asked, then the entries holding them, a bounded short list scored one by one.

A name's score pairs each part of the query with the most alike part of the candidate (in any
order): a part counts fully when equal after folding (transliteration, case, diacritics), almost
fully as a spelling variant (same skeleton), by its fuzzy similarity when that is at least
PART_ALIKE, as 90 when only its vowels differ (Muhammad, Mohammed), and not at all otherwise;
parts of the
candidate left unpaired (a second given name, a patronymic) weigh a quarter. A date of birth given
with the query must match exactly or within the tolerance, or the candidate is dropped.
Identifiers compare on their folded form (no spaces or dashes, O/0 and I/1 confused).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date

from gateway.core.errors import SearchRefused
from gateway.forms.entities import KINDS, PERSON
from gateway.search import folding, fuzzy
from gateway.search.index import PART_CHARS, fold
from gateway.store import search_rows
from gateway.store.search_rows import Candidate
from gateway.store.unit import Transaction

DEFAULT_THRESHOLD = 80.0  # names
IDENTIFIER_THRESHOLD = 90.0  # numbers, plates, addresses: one wrong character of eight is out
MAX_QUERY = 200  # characters: longer is no name, number or address
CANDIDATES = 200  # identifiers: per way of finding them, scored one by one
# Names: of the held parts found by trigrams for a part asked, the most alike whose entries are
# read; entries read per part asked; and the entries scored one by one.
PARTS_KEPT = 50
PROBED = 300  # entries counted per part asked, to tell the rare parts from the common
HOLDERS = 3000  # entries read for a part that leads
SHORT_LIST = 100
_UNPAIRED_WEIGHT = 0.25
PART_ALIKE = 80.0  # a name part less alike than this counts as no match (Larsson, Andersson)


@dataclass(frozen=True)
class Query:
    """What is searched: a value of ``kind``; for a person a name, optionally a date of birth
    and how many days it may be off."""

    kind: str
    value: str
    born: date | None = None
    born_within_days: int = 0
    threshold: float | None = None  # None: the default of its kind
    limit: int = 50

    @property
    def least(self) -> float:
        """The score a result needs."""
        if self.threshold is not None:
            return self.threshold
        return DEFAULT_THRESHOLD if self.kind == PERSON else IDENTIFIER_THRESHOLD

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SearchRefused(f"unknown kind {self.kind!r}: one of {', '.join(KINDS)}")
        if not self.value.strip():
            raise SearchRefused("the search is empty: give a name, number or address")
        if len(self.value) > MAX_QUERY:
            raise SearchRefused(f"the search is too long: at most {MAX_QUERY} characters")
        if self.born is not None and self.kind != PERSON:
            raise SearchRefused("a date of birth goes with a person search only")
        if not 0 <= self.born_within_days <= 366:
            raise SearchRefused("the date-of-birth tolerance is 0 to 366 days")
        if self.threshold is not None and not 0 < self.threshold <= 100:
            raise SearchRefused("the threshold is above 0 and at most 100")
        if not 0 < self.limit <= 500:
            raise SearchRefused("the limit is 1 to 500 results")
        if not fold(self.kind, self.value)[1]:
            raise SearchRefused("the search has no letter or digit to look for")


@dataclass(frozen=True)
class Hit:
    """A result: the entry, its message's place, its score and why it matched."""

    candidate: Candidate
    score: float
    why: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Found:
    hits: tuple[Hit, ...]
    candidates: int  # scored
    fuzzy_index: bool  # False: an identifier on PostgreSQL without pg_trgm, exact keys only


def search(tx: Transaction, query: Query, *, desks: Collection[str] | None) -> Found:
    """The entries that match ``query`` at its threshold, best first, on ``desks`` only (None:
    every desk)."""
    folded, key = fold(query.kind, query.value)
    # Names have their own trigram table on PostgreSQL, pg_trgm or not.
    fuzzy_index = query.kind == PERSON or search_rows.trigram_available(tx)
    pairs: dict[tuple[str, str], tuple[float, str]] = {}
    if query.kind == PERSON:
        found, scored = _name_found(tx, query, folded, desks, pairs)
    else:
        found = search_rows.candidates(
            tx, query.kind, [key], desks=desks, limit=CANDIDATES, fuzzy=True
        )
        scored = len(found)
    hits = []
    for candidate in found:
        hit = score(query, folded, candidate, pairs)
        if hit is not None and hit.score >= query.least:
            hits.append(hit)
    hits.sort(key=lambda hit: (-hit.score, hit.candidate.row.role != "name", hit.candidate.id))
    return Found(tuple(hits[: query.limit]), scored, fuzzy_index)


def _name_found(
    tx: Transaction,
    query: Query,
    folded: str,
    desks: Collection[str] | None,
    pairs: dict[tuple[str, str], tuple[float, str]],
) -> tuple[list[Candidate], int]:
    """The entries of a name's short list that are its best ``query.limit`` hits, and how many
    were scored: each scored from its folded name, role and date of birth alone (no reasons
    written), and only the hits' whole entries read, in the order search ranks hits."""
    asked = folded.split()
    short = search_rows.names_of(tx, _name_candidates(tx, asked, query.least, desks))
    ranked = []
    for entry, role, held, born in short:
        value = round(_paired(asked, held.split(), pairs)[0], 1)
        if value >= query.least and _born_reason(query, born) is not None:
            ranked.append((-value, role != "name", entry))
    ranked.sort()
    return search_rows.entries(tx, [entry for _, _, entry in ranked[: query.limit]]), len(short)


def _name_candidates(
    tx: Transaction, asked: list[str], least: float, desks: Collection[str] | None
) -> list[int]:
    """The ids of the SHORT_LIST entries most likely to match a name: for each part asked, the held
    name parts alike it (the index's trigrams find them, their skeletons' similarity keeps the
    PARTS_KEPT most alike) and how many entries hold those (counted up to PROBED, on any desk, from
    the links alone); the entries of the leading parts (see _leading: at most HOLDERS each, on
    ``desks``), and which of those hold the other parts, ranked by how much of the name their alike
    parts cover."""
    parts = list(dict.fromkeys(asked))
    alike = {part: _alike_parts(tx, part) for part in parts}
    counted = {
        part: search_rows.holders_counted(tx, list(alike[part]), limit=PROBED) for part in parts
    }
    leading = _leading(parts, counted, least)
    cover: dict[int, float] = {}
    for part in leading:
        held = search_rows.entries_holding(tx, list(alike[part]), desks=desks, limit=HOLDERS)
        _add_cover(cover, part, alike[part], held)
    found = sorted(cover)
    for part in parts:
        if part in leading or not found:
            continue
        held = search_rows.entries_holding_among(tx, list(alike[part]), found)
        _add_cover(cover, part, alike[part], held)
    return sorted(cover, key=lambda entry: (-cover[entry], entry))[:SHORT_LIST]


def _alike_parts(tx: Transaction, part: str) -> dict[int, float]:
    """id: similarity of the PARTS_KEPT held parts most alike ``part`` (by their skeletons; the
    same consonants count 90), at least PART_ALIKE - 10."""
    skeleton = folding.skeleton(part)[:PART_CHARS]
    sound = folding.consonants(skeleton)
    # A ratio of r% needs the shorter string at least r / (200 - r) of the longer one.
    lowest = PART_ALIKE - 10
    lengths = (
        math.floor(len(skeleton) * lowest / (200 - lowest)),
        math.ceil(len(skeleton) * (200 - lowest) / lowest),
    )
    found = search_rows.alike_parts(tx, skeleton, sound, lengths=lengths)
    alike = {
        found[at][0]: value
        for at, value in fuzzy.ratios(skeleton, [held for _, held, _ in found], lowest)
    }
    for part_id, _, held_sound in found:
        if held_sound == sound:
            alike[part_id] = max(alike.get(part_id, 0.0), 90.0)
    kept = sorted(alike, key=lambda part_id: -alike[part_id])[:PARTS_KEPT]
    return {part_id: alike[part_id] for part_id in kept}


def _leading(parts: list[str], holders: dict[str, int], least: float) -> list[str]:
    """The parts asked held by fewest entries, as few as make more than (100 - least)% of the
    name's length: an entry that scores ``least`` holds a part alike one of them (a part not
    paired counts nothing, and parts weigh by their length)."""
    total = sum(len(part) for part in parts)
    leading: list[str] = []
    weight = 0
    for part in sorted(parts, key=lambda part: (holders[part], -len(part))):
        leading.append(part)
        weight += len(part)
        if weight * 100 > (100 - least) * total:
            break
    return leading


def _add_cover(
    cover: dict[int, float], part: str, alike: dict[int, float], held: list[tuple[int, int]]
) -> None:
    best: dict[int, float] = {}
    for entry, part_id in held:
        best[entry] = max(best.get(entry, 0.0), alike[part_id] * len(part))
    for entry, value in best.items():
        cover[entry] = cover.get(entry, 0.0) + value


def score(
    query: Query,
    folded: str,
    candidate: Candidate,
    pairs: dict[tuple[str, str], tuple[float, str]] | None = None,
) -> Hit | None:
    """The candidate's score against the query and the reasons, or None when its date of
    birth rules it out. ``pairs``: the name parts compared so far in this search (see
    name_score)."""
    row = candidate.row
    if query.kind == PERSON:
        value, why = name_score(query.value, folded.split(), row.folded.split(), pairs)
        born = _born_reason(query, row.born)
        if born is None:
            return None
        why.append(born)
    else:
        value = 100.0 if folded == row.folded else fuzzy.ratio(folded, row.folded)
        how = "the same" if value == 100 else f"{value:.0f}% alike"
        why = [f"{row.role} {row.shown!r}: {how} once folded ({row.folded})"]
    if row.role == "alias":
        why.append("matched an alias")
    elif row.role == "original-script":
        why.append("matched the name in its original script")
    return Hit(candidate, round(value, 1), tuple(why))


def name_score(
    written: str,
    asked: list[str],
    held: list[str],
    pairs: dict[tuple[str, str], tuple[float, str]] | None = None,
) -> tuple[float, list[str]]:
    """Score (0-100) of the held name parts against the asked ones, and why. ``pairs``: a
    part asked and a part held compared before (value, how), filled as parts are compared
    (one search compares a given name with many entries' given names)."""
    value, paired = _paired(asked, held, {} if pairs is None else pairs)
    why: list[str] = []
    order: list[int] = []
    for part, at, how in paired:
        if at < 0:
            why.append(f"{part}: no part alike")
            continue
        order.append(at)
        why.append(f"{part} ~ {held[at]}: {how}")
    free = [at for at in range(len(held)) if at not in order]
    if free:
        why.append("not in the search: " + " ".join(held[at] for at in free))
    if order != sorted(order):
        why.append("name parts in another order")
    if not written.isascii():
        why.insert(0, "transliterated to Latin letters")
    return value, why


def _paired(
    asked: list[str], held: list[str], pairs: dict[tuple[str, str], tuple[float, str]]
) -> tuple[float, list[tuple[str, int, str]]]:
    """The score of the held parts against the asked ones, and each part asked with the held
    part it was paired with (its place; -1: none alike) and how alike: each part asked, in
    order, takes the most alike part left."""
    free = list(range(len(held)))
    total = weight = 0.0
    paired: list[tuple[str, int, str]] = []
    for part in asked:
        best, best_at, how = 0.0, -1, ""
        for at in free:
            compared = pairs.get((part, held[at]))
            if compared is None:
                compared = pairs[part, held[at]] = _part_score(part, held[at])
            if compared[0] > best:
                best, best_at, how = compared[0], at, compared[1]
        weight += len(part)
        if best_at < 0 or best == 0:
            paired.append((part, -1, ""))
            continue
        free.remove(best_at)
        paired.append((part, best_at, how))
        total += best * len(part)
    weight += _UNPAIRED_WEIGHT * sum(len(held[at]) for at in free)
    return (total / weight if weight else 0.0), paired


def _part_score(asked: str, held: str) -> tuple[float, str]:
    if asked == held:
        return 100.0, "the same"
    asked_skeleton, held_skeleton = folding.skeleton(asked), folding.skeleton(held)
    if asked_skeleton == held_skeleton:
        return 98.0, "spelling variant"
    value = max(fuzzy.ratio(asked, held), fuzzy.ratio(asked_skeleton, held_skeleton))
    if value >= PART_ALIKE:
        return value, f"{value:.0f}% alike"
    if folding.consonants(asked_skeleton) == folding.consonants(held_skeleton):
        return 90.0, "vowels spelled otherwise"
    return 0.0, ""


def _born_reason(query: Query, held: str | None) -> str | None:
    if query.born is None:
        return "no date of birth asked" if held else "no date of birth"
    if not held:
        return "no date of birth recorded"
    try:
        day = date.fromisoformat(held)
    except ValueError:
        return "date of birth recorded unreadable"
    apart = abs((day - query.born).days)
    if apart == 0:
        return "date of birth the same"
    if (day.day, day.month) == (query.born.month, query.born.day) and day.year == query.born.year:
        return "date of birth with day and month swapped"
    if apart <= query.born_within_days:
        return f"date of birth {apart} day(s) apart"
    return None
