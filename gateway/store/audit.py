"""The audit log: an append-only, hash-chained record of what the gateway did, and its check."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, String, exc, insert, select, text, type_coerce
from sqlalchemy.dialects import sqlite

from gateway.core.clock import Clock
from gateway.store.ledger import audit
from gateway.store.unit import (
    Transaction,
    in_sqlite_transaction,
    reading,
    say_to_sqlite,
    writing,
)

GENESIS = "0" * 64
"""The prev_hash of the first entry."""

# pg_advisory_xact_lock key that serialises appenders on PostgreSQL ("IPCAUDIT" in ASCII).
LOCK_KEY = 0x4950_4341_5544_4954
# Attempts of ``append`` when the primary key on seq refuses a second entry with the same number.
APPEND_ATTEMPTS = 5
# Broken entries for which ``verify`` looks for the place they came from (each costs two queries).
CLASSIFY_LIMIT = 50

_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_CODE = re.compile(r"[A-Z0-9-]{0,32}")
_REFERENCE = re.compile(r"[A-Z0-9@<>._-]{0,64}")
_DIGEST = re.compile(r"(?:[0-9a-f]{64})?")
_HASH = re.compile(r"[0-9a-f]{64}")
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
REASON_LIMIT = 300
# The statements of every append, built once: building and coercing a statement costs several
# times what executing a built one does (SQLAlchemy caches the compiled form either way).
_HEAD = select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
_INSERT = insert(audit)
_ADVISORY_LOCK = text(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
# On SQLite the same two statements are said to the driver (gateway.store.unit.say_to_sqlite):
# SQLAlchemy's execution path cost more than the statements, in every group commit. The instant
# is stored as SQLAlchemy stores it (its own bind processor for the column's type).
_SQLITE_HEAD = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
_SQLITE_INSERT = str(_INSERT.compile(dialect=sqlite.dialect(paramstyle="named")))


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    kind: str
    partner: str
    form: str
    reference: str
    digest: str
    reason: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditProblem:
    """One thing wrong with the chain: where (``seq``), what (``fault``) and a sentence."""

    seq: int
    fault: str  # edited | moved | missing | broken-link | anchor-missing | anchor-altered
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.detail}"


@dataclass(frozen=True)
class AuditReport:
    """What ``check`` read: the number of entries, the head it found and the problems."""

    entries: int
    head: tuple[int, str]
    problems: tuple[AuditProblem, ...] = field(default=())

    @property
    def intact(self) -> bool:
        return not self.problems


def entry_hash(
    seq: int,
    at: str,
    *,
    kind: str,
    partner: str,
    form: str,
    reference: str,
    digest: str,
    reason: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of the canonical form of an entry: compact JSON, sorted keys, ASCII only.

    ``at`` is the instant as ISO 8601 in UTC with microseconds (see ``format_instant``).
    """
    canonical = json.dumps(
        {
            "seq": seq,
            "at": at,
            "kind": kind,
            "partner": partner,
            "form": form,
            "reference": reference,
            "digest": digest,
            "reason": reason,
            "prev_hash": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def format_instant(at: datetime) -> str:
    """``2026-01-01T08:00:00.000000Z``: the form of ``at`` that the hash covers."""
    if at.tzinfo is None:
        raise ValueError("audit instants must be timezone-aware")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def clean_fields(
    kind: str, *, partner: str, form: str, reference: str, digest: str, reason: str
) -> tuple[str, str, str, str, str, str]:
    """The fields as they will be stored; ValueError for anything that could carry personal data.

    Only codes, references, digests and a short one-line reason are accepted. Whitespace runs in
    the reason are collapsed to one space; a line break anywhere is refused.
    """
    _match("kind", kind, _KIND, "a lower-case event name such as 'inbound.rejected'")
    _match("partner", partner, _CODE, "a partner code such as 'NO-SIRENE'")
    _match("form", form, _CODE, "a form code such as 'G'")
    _match("reference", reference, _REFERENCE, "a form reference or a Message-ID in capitals")
    _match("digest", digest, _DIGEST, "empty or 64 lower-case hexadecimal digits")
    if not isinstance(reason, str):
        raise ValueError("audit reason must be a string")
    if any(character in _LINE_BREAKS for character in reason):
        raise ValueError("audit reason must be a single line")
    reason = " ".join(reason.split())
    if not reason.isprintable():
        raise ValueError("audit reason must contain printable characters only")
    if len(reason) > REASON_LIMIT:
        raise ValueError(f"audit reason is longer than {REASON_LIMIT} characters")
    return kind, partner, form, reference, digest, reason


def _match(name: str, value: str, pattern: re.Pattern[str], hint: str) -> None:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ValueError(f"audit {name} refused: expected {hint}")


class AuditLog:
    """The ``audit`` table of the ledger as a hash chain.

    Appenders never fork the chain: on PostgreSQL each append takes a transaction-level advisory
    lock before it reads the head; on SQLite the write lock (BEGIN IMMEDIATE) is taken before the
    read. The primary key on seq refuses whatever slips past (``append`` then tries again).
    """

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    # Writing

    def append(
        self,
        kind: str,
        *,
        partner: str = "",
        form: str = "",
        reference: str = "",
        digest: str = "",
        reason: str = "",
    ) -> AuditEntry:
        """Add an entry in a transaction of its own."""
        fields = clean_fields(
            kind, partner=partner, form=form, reference=reference, digest=digest, reason=reason
        )
        for attempt in range(1, APPEND_ATTEMPTS + 1):
            try:
                with self.begin() as tx:
                    return self._append_locked(tx.connection, fields)
            except exc.IntegrityError:
                if attempt == APPEND_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def append_in(
        self,
        tx: Transaction,
        kind: str,
        *,
        partner: str = "",
        form: str = "",
        reference: str = "",
        digest: str = "",
        reason: str = "",
    ) -> AuditEntry:
        """Add an entry inside the caller's transaction: it commits or rolls back with the rest.

        Call it as the last write before the commit: on PostgreSQL the chain stays locked for
        every other appender until then. The caller's transaction should read committed data
        (PostgreSQL's default); under REPEATABLE READ a concurrent append makes this one fail
        on the primary key rather than fork the chain. On SQLite, a transaction that has not
        written yet is upgraded here with BEGIN IMMEDIATE; ``begin()`` takes that lock up front.
        """
        fields = clean_fields(
            kind, partner=partner, form=form, reference=reference, digest=digest, reason=reason
        )
        return self._append_locked(tx.connection, fields)

    def append_many_in(
        self, tx: Transaction, entries: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[AuditEntry]:
        """``append_in`` for several entries, in order, inside the caller's transaction: one
        lock, one read of the head, one INSERT. ``entries`` are (kind, fields) with the keyword
        fields of ``append_in`` (partner, form, reference, digest, reason; missing ones empty).
        Each entry is chained and hashed exactly as ``append_in`` would; a field refused by
        ``clean_fields`` raises ValueError before anything is written."""
        cleaned = [
            clean_fields(
                kind,
                partner=fields.get("partner", ""),
                form=fields.get("form", ""),
                reference=fields.get("reference", ""),
                digest=fields.get("digest", ""),
                reason=fields.get("reason", ""),
            )
            for kind, fields in entries
        ]
        return self._append_all_locked(tx.connection, cleaned)

    def chain_in(
        self, tx: Transaction, cleaned: Sequence[tuple[str, str, str, str, str, str]]
    ) -> list[AuditEntry]:
        """``append_many_in`` for entries already cleaned: each as ``clean_fields`` returned it
        (kind, partner, form, reference, digest, reason), so that a caller can refuse a bad
        entry on its own before it joins others' in one transaction."""
        return self._append_all_locked(tx.connection, cleaned)

    def begin(self) -> AbstractContextManager[Transaction]:
        """A write transaction for ``append_in`` and the caller's other writes (see
        gateway.store.unit.writing: on SQLite it takes the write lock up front)."""
        return writing(self.engine)

    def _append_locked(
        self, connection: Connection, fields: tuple[str, str, str, str, str, str]
    ) -> AuditEntry:
        return self._append_all_locked(connection, [fields])[0]

    def _append_all_locked(
        self, connection: Connection, cleaned: Sequence[tuple[str, str, str, str, str, str]]
    ) -> list[AuditEntry]:
        """Chain ``cleaned`` (fields as clean_fields returns them) after the head, under the
        chain's lock, in one INSERT."""
        if not cleaned:
            return []
        self._lock(connection)
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            head = say_to_sqlite(connection, _SQLITE_HEAD).fetchone()
        else:
            head = connection.execute(_HEAD).first()
        seq, prev_hash = (int(head[0]) + 1, str(head[1])) if head else (1, GENESIS)
        made: list[AuditEntry] = []
        for kind, partner, form, reference, digest, reason in cleaned:
            at = self.clock.now()
            if at.tzinfo is None:
                raise ValueError("the clock must answer with a timezone-aware instant")
            at = at.astimezone(UTC)
            digest_of_entry = entry_hash(
                seq,
                format_instant(at),
                kind=kind,
                partner=partner,
                form=form,
                reference=reference,
                digest=digest,
                reason=reason,
                prev_hash=prev_hash,
            )
            made.append(
                AuditEntry(
                    seq=seq,
                    at=at,
                    kind=kind,
                    partner=partner,
                    form=form,
                    reference=reference,
                    digest=digest,
                    reason=reason,
                    prev_hash=prev_hash,
                    hash=digest_of_entry,
                )
            )
            seq, prev_hash = seq + 1, digest_of_entry
        rows = [dict(vars(entry)) for entry in made]
        if sqlite:
            dialect = connection.dialect
            stored = audit.c.at.type.dialect_impl(dialect).bind_processor(dialect)
            if stored is not None:
                for row in rows:
                    row["at"] = stored(row["at"])
            say_to_sqlite(connection, _SQLITE_INSERT, rows)
        else:
            connection.execute(_INSERT, rows[0] if len(rows) == 1 else rows)
        return made

    @staticmethod
    def _lock(connection: Connection) -> None:
        """Make this transaction the only appender until it ends."""
        dialect = connection.dialect.name
        if dialect == "postgresql":
            connection.execute(_ADVISORY_LOCK)
        elif dialect == "sqlite" and not in_sqlite_transaction(connection):
            # Nothing written yet (the driver defers BEGIN): take the write lock before reading.
            say_to_sqlite(connection, "BEGIN IMMEDIATE")

    # Reading

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry, (0, GENESIS) when empty: an anchor to keep elsewhere."""
        with reading(self.engine) as tx:
            connection = tx.connection
            row = connection.execute(
                select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
            ).first()
        return (int(row.seq), str(row.hash)) if row else (0, GENESIS)

    def entries(self) -> list[AuditEntry]:
        """All entries in seq order, as stored (for reports and tests; ``verify`` streams)."""
        with reading(self.engine) as tx:
            connection = tx.connection
            rows = connection.execute(select(audit).order_by(audit.c.seq)).all()
        return [
            AuditEntry(
                seq=row.seq,
                at=_utc(row.at),
                kind=row.kind,
                partner=row.partner,
                form=row.form,
                reference=row.reference,
                digest=row.digest,
                reason=row.reason,
                prev_hash=row.prev_hash,
                hash=row.hash,
            )
            for row in rows
        ]

    def verify(self, anchor: tuple[int, str] | None = None) -> list[AuditProblem]:
        """The problems of the chain in seq order; empty when it is intact.

        Without an anchor, removing the newest entries cannot be seen: what is left is a valid
        chain. With ``anchor`` (a ``head()`` kept elsewhere), that entry must still be there
        with the same hash.
        """
        return list(self.check(anchor).problems)

    def check(self, anchor: tuple[int, str] | None = None) -> AuditReport:
        """Read the whole chain in seq order: its length, its head and its problems."""
        if anchor is not None:
            anchor = _checked_anchor(anchor)
        with reading(self.engine) as tx:
            connection = tx.connection
            walk = _Walk()
            at_column: Any = audit.c.at
            if connection.dialect.name == "sqlite":
                # Read the stored text: an edited timestamp is a finding, not a crash.
                at_column = type_coerce(audit.c.at, String).label("at")
            statement = select(
                audit.c.seq,
                at_column,
                audit.c.kind,
                audit.c.partner,
                audit.c.form,
                audit.c.reference,
                audit.c.digest,
                audit.c.reason,
                audit.c.prev_hash,
                audit.c.hash,
            ).order_by(audit.c.seq)
            # The statement's options, not the connection's: on SQLite the connection is the
            # thread's kept reader, which later reads share.
            streamed = statement.execution_options(stream_results=True, yield_per=1000)
            result = connection.execute(streamed)
            for row in result:
                walk.see(_Stored.of(row))
            result.close()
            moved = walk.classify(connection)
            problems = walk.problems(moved)
            if anchor is not None:
                problems += _anchor_problems(connection, anchor, walk.head)
        problems.sort(key=lambda problem: problem.seq)
        return AuditReport(entries=walk.count, head=walk.head, problems=tuple(problems))


@dataclass(frozen=True)
class _Stored:
    """An entry as read back for checking; ``at`` is None when it cannot be read."""

    seq: int
    at: str | None
    kind: Any
    partner: Any
    form: Any
    reference: Any
    digest: Any
    reason: Any
    prev_hash: Any
    hash: Any

    @classmethod
    def of(cls, row: Any) -> _Stored:
        return cls(
            seq=int(row.seq),
            at=_instant_text(row.at),
            kind=row.kind,
            partner=row.partner,
            form=row.form,
            reference=row.reference,
            digest=row.digest,
            reason=row.reason,
            prev_hash=row.prev_hash,
            hash=row.hash,
        )

    def hash_as(self, seq: int) -> str | None:
        """The hash this content would have at ``seq``; None when it cannot be computed."""
        if self.at is None:
            return None
        try:
            return entry_hash(
                seq,
                self.at,
                kind=self.kind,
                partner=self.partner,
                form=self.form,
                reference=self.reference,
                digest=self.digest,
                reason=self.reason,
                prev_hash=self.prev_hash,
            )
        except (TypeError, ValueError):
            return None


@dataclass
class _Walk:
    """One pass over the chain in seq order, gathering findings; problems are named after."""

    count: int = 0
    head: tuple[int, str] = (0, GENESIS)
    previous: _Stored | None = None
    gaps: list[tuple[int, int]] = field(default_factory=list)
    out_of_range: list[int] = field(default_factory=list)
    # (entry, the entry before it in seq order): content does not match the hash.
    suspects: list[tuple[_Stored, _Stored | None]] = field(default_factory=list)
    # (entry, the hash its prev_hash should have been): the link to the entry before is broken.
    broken_links: list[tuple[_Stored, str]] = field(default_factory=list)

    def see(self, entry: _Stored) -> None:
        self.count += 1
        self.head = (entry.seq, str(entry.hash))
        previous, self.previous = self.previous, entry
        expected = previous.seq + 1 if previous else 1
        if entry.seq < expected:
            self.out_of_range.append(entry.seq)
        elif entry.seq > expected:
            self.gaps.append((expected, entry.seq - 1))
        if entry.hash_as(entry.seq) != entry.hash:
            self.suspects.append((entry, previous))
        if entry.seq == expected:
            before = previous.hash if previous else GENESIS
            if entry.prev_hash != before:
                self.broken_links.append((entry, str(before)))

    def classify(self, connection: Connection) -> dict[int, tuple[int, str]]:
        """Broken entries whose content is intact for another seq: {seq: (its seq, its hash)}."""
        moved: dict[int, tuple[int, str]] = {}
        for entry, previous in self.suspects[:CLASSIFY_LIMIT]:
            for seq in self._candidates(connection, entry, previous, moved):
                if seq != entry.seq and seq >= 1 and entry.hash_as(seq) == entry.hash:
                    moved[entry.seq] = (seq, str(entry.hash))
                    break
        return moved

    @staticmethod
    def _candidates(
        connection: Connection,
        entry: _Stored,
        previous: _Stored | None,
        moved: dict[int, tuple[int, str]],
    ) -> Iterator[int]:
        # The entry its prev_hash names: this one came right after that one's original place.
        if previous is not None and previous.hash == entry.prev_hash:
            before: int | None = previous.seq
        else:
            before = connection.execute(
                select(audit.c.seq).where(audit.c.hash == entry.prev_hash).limit(1)
            ).scalar()
        if before is not None:
            yield moved.get(before, (before, ""))[0] + 1
        elif entry.prev_hash == GENESIS:
            yield 1
        # The entry that names this one as its prev_hash came right after this one's place.
        after = connection.execute(
            select(audit.c.seq).where(audit.c.prev_hash == entry.hash).limit(1)
        ).scalar()
        if after is not None:
            yield int(after) - 1
        yield entry.seq - 1
        yield entry.seq + 1

    def problems(self, moved: dict[int, tuple[int, str]]) -> list[AuditProblem]:
        found: list[AuditProblem] = []
        for first, last in self.gaps:
            which = f"entry {first} is" if first == last else f"entries {first} to {last} are"
            found.append(
                AuditProblem(first, "missing", f"{which} missing from the chain (deleted)")
            )
        found.extend(
            AuditProblem(seq, "edited", "its seq is out of range (the entry was edited)")
            for seq in self.out_of_range
        )
        for entry, _ in self.suspects:
            if entry.seq in moved:
                original = moved[entry.seq][0]
                found.append(
                    AuditProblem(
                        entry.seq,
                        "moved",
                        f"it holds the entry that belongs at seq {original} "
                        "(entries reordered or renumbered)",
                    )
                )
            elif entry.at is None:
                found.append(
                    AuditProblem(
                        entry.seq, "edited", "its timestamp cannot be read (the entry was edited)"
                    )
                )
            else:
                found.append(
                    AuditProblem(
                        entry.seq,
                        "edited",
                        "its hash does not match its content (the entry was edited)",
                    )
                )
        # A moved entry explains its own broken link, and the link of the entry that follows
        # its original place.
        moved_hashes = dict(moved.values())
        for entry, _ in self.broken_links:
            if entry.seq in moved or moved_hashes.get(entry.seq - 1) == entry.prev_hash:
                continue
            if entry.seq == 1:
                detail = (
                    "its prev_hash is not the start of the chain "
                    "(entries before it were removed, or it was forged)"
                )
            else:
                detail = (
                    f"its prev_hash does not match the hash of entry {entry.seq - 1} "
                    f"(entry {entry.seq - 1} was replaced or forged, or entries were "
                    "removed or reordered)"
                )
            found.append(AuditProblem(entry.seq, "broken-link", detail))
        return found


def _anchor_problems(
    connection: Connection, anchor: tuple[int, str], head: tuple[int, str]
) -> list[AuditProblem]:
    seq, expected = anchor
    if seq == 0:
        if expected != GENESIS:
            return [AuditProblem(0, "anchor-altered", "an anchor at seq 0 must be the genesis")]
        return []
    stored = connection.execute(select(audit.c.hash).where(audit.c.seq == seq)).scalar()
    if stored is None:
        return [
            AuditProblem(
                seq,
                "anchor-missing",
                f"the anchored entry is missing (the chain now ends at seq {head[0]}: "
                "entries were removed)",
            )
        ]
    if stored != expected:
        return [
            AuditProblem(
                seq,
                "anchor-altered",
                f"the anchored entry's hash is {stored}, not {expected} "
                "(the entry was replaced or the chain rewritten)",
            )
        ]
    return []


def _checked_anchor(anchor: tuple[int, str]) -> tuple[int, str]:
    seq, digest = anchor
    if not isinstance(seq, int) or seq < 0:
        raise ValueError("an anchor's seq is a number from 0")
    if not isinstance(digest, str) or _HASH.fullmatch(digest) is None:
        raise ValueError("an anchor's hash is 64 lower-case hexadecimal digits")
    return seq, digest


def parse_anchor(value: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as printed by ``gateway audit verify``) -> (seq, hash)."""
    seq, sep, digest = value.strip().partition(":")
    if not sep or not seq.isdigit():
        raise ValueError(f"{value!r} is not SEQ:HASH")
    return _checked_anchor((int(seq), digest.lower()))


def _instant_text(value: Any) -> str | None:
    """The hashed form of a stored instant (SQLite: its text; PostgreSQL: a datetime)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return format_instant(_utc(value))


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
