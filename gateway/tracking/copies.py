"""Every file a message left on disk, found for its shredding: its spooled items in either spool
(the original, re-sent copies, receipts sent again; queued, handled, set aside or half-written),
its desk copies in every desk's Maildir (new/, cur/ with any flags, tmp/, and Maildir++
subfolders) and, for a form we sent from an outbox folder, the form and its files in sent/.

Each folder is listed once per shredding run; what a listing named and a file then no longer
holds (deleted or renamed meanwhile) is skipped when it is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.core.config import Config
from gateway.store.durable import fsync_dir
from gateway.store.shred_rows import Copy
from gateway.store.spool import Spool

# A spool file's name: the key, ``.msg``, and in tmp/ the writer's pid and a random part.
_SPOOL_NAME = re.compile(r"(?P<key>.+?)\.msg(?:\.\d+\.[0-9a-f]+)?")
# Copies put after the original: a re-send (``<key>.resend.<n>``, or ``resend.<id>.<n>`` for a
# long key) and a receipt sent again to a duplicate (``receipt.<id>.again.<n>``).
_AGAIN = re.compile(r"(?P<base>.+?)\.(?:resend|again)\.\d+")
_BY_ID = re.compile(r"resend\.(?P<id>\d+)\.\d+")
QUEUED = ("new", "cur")  # an item there is still being handled: not shredded yet
MAILDIR = ("new", "cur", "tmp")
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Found:
    """A file of a message: where (``place``, ``name`` as the ledger keeps them) and its path."""

    place: str
    name: str
    path: Path

    @property
    def queued(self) -> bool:
        """A spooled item waiting or being handled (new/ or cur/ of a spool)."""
        return self.place.endswith("-spool") and self.path.parent.name in QUEUED

    def measured(self) -> Copy | None:
        """Its digest and size, read now; None when it is gone."""
        digest, size = hashlib.sha256(), 0
        try:
            with self.path.open("rb") as file:
                while chunk := file.read(READ_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            return None
        return Copy(self.place, self.name, digest.hexdigest(), size)


class Copies:
    """Finds a message's files; the folders are listed when first needed."""

    def __init__(self, config: Config, spools: Mapping[str, Spool]) -> None:
        self.config = config
        self.spools = spools
        self._spooled: dict[str, tuple[dict[str, list[Path]], dict[int, list[Path]]]] = {}
        self._desks: dict[str, list[Path]] | None = None

    def of(
        self, *, ledger_id: int, direction: str, reference: str, spool_key: str | None
    ) -> list[Found]:
        """Every file of the message found now, those of the spool first."""
        found = list(self._spooled_of(direction, ledger_id, spool_key))
        if direction == "inbound":
            found += self._desk_copies(f"{ledger_id}.{reference}")
        else:
            found += self._outbox_copies(reference)
        return found

    # ------------------------------------------------------------------ spools

    def _spooled_of(self, direction: str, ledger_id: int, key: str | None) -> Iterator[Found]:
        by_key, by_id = self._listing(direction)
        paths = [*(by_key.pop(key, []) if key else []), *by_id.pop(ledger_id, [])]
        for path in paths:
            yield Found(f"{direction}-spool", f"{path.parent.name}/{path.name}", path)

    def _listing(self, direction: str) -> tuple[dict[str, list[Path]], dict[int, list[Path]]]:
        listing = self._spooled.get(direction)
        if listing is None:
            spool = self.spools[direction]
            by_key: dict[str, list[Path]] = {}
            by_id: dict[int, list[Path]] = {}
            for folder in (spool.tmp, spool.new, spool.cur, spool.done, spool.quarantine):
                for name in _names(folder):
                    matched = _SPOOL_NAME.fullmatch(name)
                    if matched is None:
                        continue
                    key = matched["key"]
                    if (again := _BY_ID.fullmatch(key)) is not None:
                        by_id.setdefault(int(again["id"]), []).append(folder / name)
                        continue
                    if (again := _AGAIN.fullmatch(key)) is not None:
                        key = again["base"]
                    by_key.setdefault(key, []).append(folder / name)
            listing = self._spooled[direction] = (by_key, by_id)
        return listing

    # ------------------------------------------------------------------ desks

    def _desk_copies(self, name: str) -> list[Found]:
        """The desk copies named ``<ledger id>.<Reference>`` (and any ``:2,<flags>``)."""
        if self._desks is None:
            self._desks = {}
            for desk in self.config.desks:
                for folder in _maildir_folders(desk.maildir):
                    for entry in _names(folder):
                        base = entry.partition(":")[0]
                        self._desks.setdefault(base, []).append(folder / entry)
        paths = self._desks.pop(name, [])
        return [Found("desk", _desk_name(path, self.config), path) for path in paths]

    # ------------------------------------------------------------------ outboxes

    def _outbox_copies(self, reference: str) -> list[Found]:
        """The form dropped into a desk's outbox and queued as ``reference``, with its files."""
        found: list[Found] = []
        for desk in self.config.desks:
            sent = self.config.outbox(desk) / "sent"
            form = sent / f"{reference}.xml"
            if form.is_file():
                found.append(Found("outbox", f"{desk.name} sent/{form.name}", form))
            files = sent / f"{reference}.files"
            if files.is_dir():
                for path in sorted(files.rglob("*")):
                    if path.is_file():
                        relative = path.relative_to(sent)
                        found.append(Found("outbox", f"{desk.name} sent/{relative}", path))
        return found


def remove(found: list[Found]) -> int:
    """Delete the files (gone already: not counted), then make each folder's change durable;
    a ``.files`` folder of an outbox left empty goes too. Returns how many were deleted."""
    removed = 0
    folders: set[Path] = set()
    for item in found:
        with contextlib.suppress(FileNotFoundError):
            item.path.unlink()
            removed += 1
            folders.add(item.path.parent)
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        if folder.name.endswith(".files"):
            with contextlib.suppress(OSError):  # not empty: a file was put there meanwhile
                folder.rmdir()
                folders.add(folder.parent)
    for folder in folders:
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(folder)
    return removed


def _names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _maildir_folders(maildir: Path) -> Iterator[Path]:
    """new/, cur/ and tmp/ of the Maildir and of its Maildir++ subfolders (``.Name``)."""
    roots = [maildir]
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(maildir) as entries:
        roots += [
            Path(entry.path)
            for entry in entries
            if entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)
        ]
    for root in roots:
        for sub in MAILDIR:
            yield root / sub


def _desk_name(path: Path, config: Config) -> str:
    """``<desk> <folder under its Maildir>/<file>``, e.g. ``sirene cur/12.NO-2026-000001:2,S``."""
    for desk in config.desks:
        with contextlib.suppress(ValueError):
            return f"{desk.name} {path.relative_to(desk.maildir)}"
    return path.name
