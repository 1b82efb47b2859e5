"""The durable spool: storage of queue items, no retry policy; an item is whole on disk once put()
returns, or it is not in the queue at all.

Folders (0700): tmp/ (being written), new/ (waiting, oldest first), cur/ (claimed), done/ (handled;
the raw message is our proof and stays until deleted), quarantine/ (set aside by its owner, or
unreadable). An item is one file ``<key>.msg``: a line of compact JSON metadata, then the payload
verbatim. Every move is one rename(2), so an item is in exactly one folder and several processes
may claim from one spool: the loser of a race gets ENOENT and tries the next. Nothing is edited in
place: a new version goes through tmp/, fsync and rename. Modelled on Mailman's switchboard,
without pickle.

Whether and when an item is tried again is its owner's policy (``inbound/retry.py``,
``outbound/retry.py``), kept in the item's metadata: the spool requeues an item or sets it aside
as it is told, and recover() hands back what a stopped process left claimed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.core.errors import StoreUnavailable
from gateway.store.durable import fsync_dir, storage_error

log = logging.getLogger("gateway.spool")

KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
SUFFIX = ".msg"
# Files written before the first of them is synced (put_many): the descriptors held open at once.
SYNC_GROUP = 64
FOLDERS = ("tmp", "new", "cur", "done", "quarantine")
# Where delete() may remove an item from: queued (new/ or cur/), done/, quarantine/.
Where = Literal["queued", "done", "quarantine"]


@dataclass(frozen=True)
class SpoolItem:
    """One item where it was found; the payload is read when asked for, unless the claim read it."""

    key: str
    path: Path
    meta: dict[str, Any] = field(hash=False)
    body: bytes | None = field(default=None, hash=False, compare=False, repr=False)

    def payload(self) -> bytes:
        """The payload bytes exactly as put (the file after its metadata line)."""
        if self.body is not None:
            return self.body
        with self.path.open("rb") as file:
            file.readline()
            return file.read()


@dataclass(frozen=True)
class Recovery:
    """What recover() found: the items a stopped process left claimed (still in cur/, for their
    owner's policy to requeue or set aside), the unreadable ones it set aside, the tmp/ files it
    deleted."""

    interrupted: tuple[SpoolItem, ...]
    unreadable: int
    stale_tmp: int


class Spool:
    """A directory queue: put; queued and waiting (look); claim; then finish, discard, requeue or
    set_aside; unquarantine (an operator's release); delete; get, exists, quarantined; recover."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.parent.mkdir(parents=True, exist_ok=True)
        for path in (root, *(root / name for name in FOLDERS)):
            with suppress(FileExistsError):
                path.mkdir(mode=0o700)
                path.chmod(0o700)  # mkdir's mode went through the umask
        fsync_dir(root)
        self.tmp, self.new, self.cur, self.done, self.quarantine = (root / n for n in FOLDERS)
        # The folders an item may be in, as strings: exists() asks for every receipt.
        self._holding = tuple(os.fspath(folder) for folder in (self.new, self.cur, self.done))
        self._peeked: dict[str, tuple[int, int, dict[str, Any]]] = {}  # waiting()'s last reading

    def put(self, key: str, payload: bytes, meta: Mapping[str, Any]) -> SpoolItem:
        """Store a new item in new/; only when this returns is it durable.

        ValueError: bad key; TypeError: metadata not JSON with str keys; FileExistsError: key in
        new/, cur/ or done/ (a guard, not a lock: callers dedupe first); StorageFull (452): disk or
        quota full; StoreUnavailable (451): any other I/O error. After an error nothing is stored.
        """
        return self.put_many([(key, payload, meta)])[0]

    def put_many(self, items: Sequence[tuple[str, bytes, Mapping[str, Any]]]) -> list[SpoolItem]:
        """put for several items, each (key, payload, metadata), with one sync of new/ for them
        all; only when this returns are they durable. The errors are put's, for any one of them
        (ValueError too for a key given twice); after an error none of them is stored."""
        checked = [(key, _filename(key), _encode_meta(meta)) for key, _, meta in items]
        if len({name for _, name, _ in checked}) != len(checked):
            raise ValueError("a spool key given twice")
        try:
            held = [
                (key, folder.name)
                for key, name, _ in checked
                for folder in (self.new, self.cur, self.done)
                if os.path.lexists(f"{folder}/{name}")
            ]
        except OSError as exc:
            raise _store_error(exc, checked[0][1]) from exc
        if held:
            raise FileExistsError(errno.EEXIST, f"already spooled in {held[0][1]}/", held[0][0])
        placed: list[Path] = []
        try:
            if len(items) == 1:
                name, header, payload = checked[0][1], checked[0][2], items[0][1]
                placed.append(self._write(self.new, name, header, payload, undo=True, sync=False))
            else:
                entries = [(name, header) for _, name, header in checked]
                self._write_many(entries, [payload for _, payload, _ in items], placed)
            if placed:
                self._sync(self.new, checked[-1][1])
        except StoreUnavailable:  # what was placed goes: nothing of the call is stored
            for path in placed:
                with suppress(OSError):
                    path.unlink(missing_ok=True)
            raise
        for key, payload, _ in items:
            log.debug("spooled %s (%d bytes)", key, len(payload))
        return [
            SpoolItem(key, path, _as_read(meta, header))
            for (key, _, header), (_, _, meta), path in zip(checked, items, placed, strict=True)
        ]

    def queued(self) -> list[tuple[str, float]]:
        """The keys of new/ with the instant each was put there (its mtime, seconds since the
        epoch), oldest first: one scan of the folder, no file opened."""
        return [(name.removesuffix(SUFFIX), mtime / 1e9) for mtime, name, _ in self._scan_new()]

    def waiting(self) -> list[SpoolItem]:
        """The items of new/ with their metadata, oldest first, left where they are; an
        unreadable one is skipped (claim() sets it aside). One scandir, then only each file's
        first line, read with os calls (no file objects): delivery looks at the whole queue on
        every pass."""
        new = os.fspath(self.new)
        # A file is never changed in place (a new version is a new file renamed over it), so
        # the metadata read last time holds while the name, inode and mtime are the same: a
        # long queue for a partner that is down costs a scan per pass, not a read per item.
        known = self._peeked
        seen: dict[str, tuple[int, int, dict[str, Any]]] = {}
        items: list[SpoolItem] = []
        for mtime, name, inode in self._scan_new():
            path = f"{new}/{name}"
            cached = known.get(name)
            if cached is not None and cached[:2] == (inode, mtime):
                meta = cached[2]
            else:
                try:
                    meta = json.loads(_first_line(path))
                    if not isinstance(meta, dict):
                        raise ValueError("metadata is not a JSON object")
                except FileNotFoundError:
                    continue  # claimed by someone else meanwhile
                except ValueError as exc:
                    log.error("skipping unreadable %s: %s", name, exc)
                    continue
            seen[name] = (inode, mtime, meta)
            items.append(SpoolItem(name.removesuffix(SUFFIX), Path(path), dict(meta)))
        self._peeked = seen
        return items

    def claim(self, keys: Iterable[str]) -> list[SpoolItem]:
        """Move these items from new/ to cur/ and return them, each read whole once (its
        ``payload()`` reads nothing more); a key not in new/ (another claimer took it, or it was
        never there) is skipped, an unreadable item set aside in quarantine/. ValueError for a
        key that is no spool key. Written with os calls on strings: this runs for every message
        sent, pathlib costs a third more."""
        new, cur = os.fspath(self.new), os.fspath(self.cur)
        claimed: list[SpoolItem] = []
        for key in keys:
            name = _filename(key)
            target = f"{cur}/{name}"
            try:
                os.rename(f"{new}/{name}", target)  # noqa: PTH104 - see the docstring
            except FileNotFoundError:
                continue  # another claimer took it, or it was never there
            except OSError as exc:
                log.error("cannot claim %s: %s", name, exc)
                continue
            try:
                line, newline, payload = _read_all(target).partition(b"\n")
                if not newline:
                    raise ValueError("no metadata line")
                meta = json.loads(line)  # JSONDecodeError and UnicodeDecodeError: ValueErrors
                if not isinstance(meta, dict):
                    raise ValueError("metadata is not a JSON object")
            except ValueError as exc:
                log.error("quarantined %s: %s", name, exc)
                with suppress(StoreUnavailable):  # logged; it stays in cur/ until a start
                    self._move(Path(target), self.quarantine)
                continue
            except OSError as exc:
                log.error("cannot read %s; it stays in cur/ until a start: %s", name, exc)
                continue
            claimed.append(SpoolItem(key, Path(target), meta, payload))
        return claimed

    def finish(self, items: Iterable[SpoolItem], *, sync_cur: bool = True) -> list[SpoolItem]:
        """Move claimed items to done/, where each is kept until deleted: each is renamed, then
        done/ is fsynced once for them all, and cur/ too unless ``sync_cur`` is False. Without
        that second sync a crash may leave an item in cur/ as well, and recover() hands it back
        to its owner: a caller whose handling is idempotent may skip it (it costs as much as the
        first). Returns the items that could not be moved (still claimed, or not claimed items
        of this spool); StoreUnavailable when a sync fails (the moves may then not survive a
        crash: those items would be back in cur/)."""
        cur, done = os.fspath(self.cur), os.fspath(self.done)
        stuck: list[SpoolItem] = []
        moved = 0
        for item in items:
            name = _filename(item.key)
            source = f"{cur}/{name}"
            try:
                if os.fspath(item.path) != source:
                    raise ValueError(f"{item.key}: not a claimed item of this spool")
                os.rename(source, f"{done}/{name}")  # noqa: PTH104 - as in claim
            except (OSError, ValueError) as exc:
                log.error("cannot move %s to done/: %s", item.key, exc)
                stuck.append(item)
                continue
            moved += 1
        if moved:
            try:
                fsync_dir(self.done)
                if sync_cur:
                    fsync_dir(self.cur)
            except OSError as exc:
                raise _store_error(exc, "done/") from exc
        return stuck

    def discard(self, items: Iterable[SpoolItem]) -> list[SpoolItem]:
        """Remove claimed items for good, without keeping them in done/ and without syncing
        cur/: for an owner whose bytes are kept elsewhere (the ledger) and whose handling is
        idempotent, since a crash may bring an item back into cur/. Returns the items that
        could not be removed (not claimed items of this spool, or an I/O error: logged)."""
        cur = os.fspath(self.cur)
        stuck: list[SpoolItem] = []
        for item in items:
            source = f"{cur}/{_filename(item.key)}"
            try:
                if os.fspath(item.path) != source:
                    raise ValueError(f"{item.key}: not a claimed item of this spool")
                os.unlink(source)  # noqa: PTH108 - as in claim
            except (OSError, ValueError) as exc:
                log.error("cannot discard %s: %s", item.key, exc)
                stuck.append(item)
        return stuck

    def requeue(self, item: SpoolItem, meta: Mapping[str, Any] | None = None) -> SpoolItem:
        """Put a claimed item back into new/. With ``meta``, that becomes its metadata, written
        as a new file (tmp/, fsync, rename) that waits behind the others; without, the item goes
        back untouched, in its place, by a rename that needs no disk space. ValueError: not a
        claimed item of this spool; TypeError: ``meta`` not JSON; StorageFull, StoreUnavailable:
        nothing changed, the item is still claimed."""
        claimed = self._claimed(item)
        if meta is None:
            return SpoolItem(item.key, self._move(claimed, self.new), item.meta, item.body)
        header = _encode_meta(meta)
        self._write(self.cur, claimed.name, header, item.payload(), undo=False)
        path = self._move(claimed, self.new)
        log.debug("requeued %s", item.key)
        return SpoolItem(item.key, path, json.loads(header), item.body)

    def set_aside(
        self, item: SpoolItem, reason: str, meta: Mapping[str, Any] | None = None
    ) -> None:
        """Move a claimed item to quarantine/ for an operator to look at; nothing is deleted.
        With ``meta``, that becomes its metadata first (as in requeue); ``reason`` is logged."""
        claimed = self._claimed(item)
        if meta is not None:
            self._write(self.cur, claimed.name, _encode_meta(meta), item.payload(), undo=False)
        self._move(claimed, self.quarantine)
        log.info("set aside %s in quarantine/: %s", item.key, reason)

    def unquarantine(self, key: str, meta: Mapping[str, Any]) -> SpoolItem:
        """Put a quarantined item back into new/ with ``meta`` as its metadata (an operator's
        release): claimed by a rename into cur/, written anew, moved to new/. KeyError when
        quarantine/ does not hold it (another operator was first)."""
        name = _filename(key)
        claimed = self.cur / name
        try:
            (self.quarantine / name).rename(claimed)
        except FileNotFoundError:
            raise KeyError(key) from None
        except OSError as exc:
            raise _store_error(exc, name) from exc
        return self.requeue(SpoolItem(key, claimed, dict(meta)), meta)

    def delete(self, key: str, where: Where) -> bool:
        """Remove an item for good; False if it was not there. ``queued``: from new/ or, if a
        worker holds it, cur/ (it was put but must not stay: its ledger commit failed, so no 250
        was given); ``done``: a handled item (the retention purge); ``quarantine``: a set-aside
        item (an operator's drop)."""
        name = _filename(key)
        folders = {
            "queued": (self.new, self.cur),
            "done": (self.done,),
            "quarantine": (self.quarantine,),
        }[where]
        for folder in folders:
            try:
                (folder / name).unlink()
            except FileNotFoundError:
                continue
            fsync_dir(folder)
            return True
        return False

    def get(self, key: str) -> SpoolItem:
        """The item with this key from whichever folder holds it (new/, cur/, done/,
        quarantine/: its ``path`` says which); an unreadable one comes with empty metadata.
        KeyError if none holds it."""
        name = _filename(key)
        for _ in range(2):  # look twice: an item may move between folders while we look
            for folder in (self.new, self.cur, self.done, self.quarantine):
                try:
                    return _load(folder / name)
                except FileNotFoundError:
                    continue
                except ValueError:
                    return SpoolItem(key, folder / name, {})
        raise KeyError(key)

    def exists(self, key: str) -> bool:
        """Whether new/, cur/ or done/ holds this key (not quarantine/: set aside)."""
        name = _filename(key)
        return any(os.path.exists(f"{folder}/{name}") for folder in self._holding)  # noqa: PTH110

    def quarantined(self) -> list[SpoolItem]:
        """The items of quarantine/ with their metadata, oldest first, left where they are. An
        item whose metadata cannot be read is listed with empty metadata."""
        found: list[SpoolItem] = []
        for path in _oldest_first(self.quarantine):
            try:
                found.append(_load(path))
            except FileNotFoundError:
                continue  # released or dropped meanwhile
            except ValueError:
                found.append(SpoolItem(path.name.removesuffix(SUFFIX), path, {}))
        return found

    def recover(self) -> Recovery:
        """At start-up, while no other process uses the spool: empty tmp/, set aside what cur/
        holds that cannot be read, and return the rest of cur/, still claimed. What becomes of
        an interrupted item (requeued as it was, counted as a failed attempt, set aside) is its
        owner's policy."""
        stale = 0
        for path in self.tmp.iterdir():
            path.unlink(missing_ok=True)
            stale += 1
        interrupted: list[SpoolItem] = []
        unreadable = 0
        for path in _oldest_first(self.cur):
            try:
                interrupted.append(_load(path))
            except ValueError as exc:
                log.error("quarantined %s: %s", path.name, exc)
                self._move(path, self.quarantine)
                unreadable += 1
        return Recovery(tuple(interrupted), unreadable, stale)

    def _scan_new(self) -> list[tuple[int, str, int]]:
        """(mtime in ns, file name, inode) of the items of new/, oldest first."""
        found: list[tuple[int, str, int]] = []
        with os.scandir(self.new) as entries:
            for entry in entries:
                if entry.name.endswith(SUFFIX):
                    with suppress(FileNotFoundError):  # claimed by someone else meanwhile
                        found.append((entry.stat().st_mtime_ns, entry.name, entry.inode()))
        found.sort()
        return found

    def _claimed(self, item: SpoolItem) -> Path:
        path = self.cur / _filename(item.key)
        if item.path != path:
            raise ValueError(f"{item.key}: not a claimed item of this spool")
        return path

    def _move(self, path: Path, folder: Path) -> Path:
        target = folder / path.name
        try:
            path.rename(target)
            fsync_dir(folder)
        except OSError as exc:
            raise _store_error(exc, path.name) from exc
        return target

    def _sync(self, folder: Path, name: str) -> None:
        try:
            fsync_dir(folder)
        except OSError as exc:
            raise _store_error(exc, name) from exc

    def _write_many(
        self, entries: Sequence[tuple[str, bytes]], payloads: Sequence[bytes], placed: list[Path]
    ) -> None:
        """_write for several new items, each (name, header) with its payload, into new/ without
        its sync (the caller's), appending each file to ``placed`` once it is there.

        Every file of a group (``SYNC_GROUP``) is written to tmp/ first, then each is fsynced
        and closed, then each renamed: the files' syncs then share the file system's journal
        commits, where written, synced and renamed one after another each waited for its own.
        Each file is still synced before its rename. On failure the group's tmp files are
        removed and the error raised (the caller removes ``placed``).
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        name = entries[0][0] if entries else ""
        for start in range(0, len(entries), SYNC_GROUP):
            end = start + SYNC_GROUP
            group = list(zip(entries[start:end], payloads[start:end], strict=True))
            opened: list[list[Any]] = []  # [fd (-1 once closed), tmp path, target], in order
            try:
                for (name, header), payload in group:
                    tmp = self.tmp / f"{name}.{os.getpid()}.{secrets.token_hex(4)}"
                    opened.append([os.open(tmp, flags, 0o600), tmp, self.new / name])
                    _write_all(opened[-1][0], header + b"\n", payload)
                for entry in opened:
                    fd, _, target = entry
                    name = target.name
                    os.fsync(fd)
                    entry[0] = -1  # never close twice: the number may already be reused
                    os.close(fd)
                for _, tmp, target in opened:  # renamed once all are synced: no rename of one
                    name = target.name  # goes into the commit that syncs the next
                    os.rename(tmp, target)  # noqa: PTH104 - as in claim
                    placed.append(target)
            except OSError as exc:
                for fd, tmp, _ in opened:
                    if fd >= 0:
                        with suppress(OSError):
                            os.close(fd)
                    with suppress(OSError):
                        tmp.unlink(missing_ok=True)
                raise _store_error(exc, name) from exc

    def _write(
        self,
        folder: Path,
        name: str,
        header: bytes,
        payload: bytes,
        *,
        undo: bool,
        sync: bool = True,
    ) -> Path:
        """tmp/ (O_EXCL), write all, fsync, rename into folder, fsync folder (unless not
        ``sync``: the caller syncs it once for several).

        On failure the tmp file (and, with ``undo``, the renamed one) is removed: a failed fsync
        is never retried on the same file; the caller starts again with a new one.
        """
        tmp = self.tmp / f"{name}.{os.getpid()}.{secrets.token_hex(4)}"
        target = folder / name
        fd, placed = -1, False
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            _write_all(fd, header + b"\n", payload)
            os.fsync(fd)
            closing, fd = fd, -1  # never close twice: the number may already be reused
            os.close(closing)
            os.rename(tmp, target)  # noqa: PTH104 - as in claim
            placed = True
            if sync:
                fsync_dir(folder)
        except OSError as exc:
            if fd >= 0:
                with suppress(OSError):
                    os.close(fd)
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            if placed and undo:
                with suppress(OSError):
                    target.unlink(missing_ok=True)
            raise _store_error(exc, name) from exc
        return target


def _filename(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key) or not key.strip("."):
        raise ValueError(f"bad spool key {key[:80]!r}: 1-64 of A-Z a-z 0-9 . _ -, not only dots")
    return key + SUFFIX


def _encode_meta(meta: Mapping[str, Any]) -> bytes:
    if not all(isinstance(k, str) for k in meta):
        raise TypeError("spool metadata keys must be str")
    try:
        text = json.dumps(dict(meta), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode()
    except ValueError as exc:  # NaN, infinity, a lone surrogate
        raise TypeError(f"spool metadata is not JSON: {exc}") from exc


_SCALARS = (str, int, float, bool, type(None))


def _as_read(meta: Mapping[str, Any], header: bytes) -> dict[str, Any]:
    """The metadata as a later read of the item gives it: a copy when every value is a JSON
    scalar already (the usual case), else what its JSON decodes to (a tuple becomes a list)."""
    plain = dict(meta)
    if all(type(value) in _SCALARS for value in plain.values()):
        return plain
    loaded: dict[str, Any] = json.loads(header)
    return loaded


def _load(path: Path) -> SpoolItem:
    """Read an item's metadata line; ValueError if it is not a JSON object ended by a newline."""
    with path.open("rb") as file:
        line = file.readline()
    if not line.endswith(b"\n"):
        raise ValueError("no metadata line")
    meta = json.loads(line)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a JSON object")
    return SpoolItem(path.name.removesuffix(SUFFIX), path, meta)


def _oldest_first(folder: Path) -> list[Path]:
    found: list[tuple[int, str]] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(SUFFIX):
                with suppress(FileNotFoundError):  # claimed by someone else meanwhile
                    found.append((entry.stat().st_mtime_ns, entry.name))
    return [folder / name for _, name in sorted(found)]


def _store_error(exc: OSError, name: str) -> StoreUnavailable:
    log.error("spool I/O failed for %s: %s", name, exc.strerror or exc)
    return storage_error(exc)


def _first_line(path: str) -> bytes:
    """A file's first line, newline included; ValueError if the file has none."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = b""
        while (end := head.find(b"\n")) < 0:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise ValueError("no metadata line")
            head += chunk
    finally:
        os.close(fd)
    return head[: end + 1]


def _read_all(path: str) -> bytes:
    """A whole file with the fewest system calls (open, read until empty, close)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _write_all(fd: int, *parts: bytes) -> None:
    """Write the parts in order, one writev while the kernel takes all it is given."""
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views:
            views[0] = views[0][written:]
