"""The durable spool: an item is whole on disk once put() returns, or it is not in the queue at all.

Folders (0700): tmp/ (being written), new/ (waiting, oldest first), cur/ (claimed), done/ (handled;
the raw message is our proof and stays until purge()), quarantine/ (out of attempts, or unreadable).
An item is one file ``<key>.msg``: a line of compact JSON metadata, then the payload verbatim.
Every move is one rename(2), so an item is in exactly one folder and several processes may claim
from one spool: the loser of a race gets ENOENT and tries the next. Nothing is edited in place: a
new version goes through tmp/, fsync and rename. Modelled on Mailman's switchboard, without pickle.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
from collections.abc import Collection, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.core.errors import StoreUnavailable
from gateway.store.durable import fsync_dir, storage_error

log = logging.getLogger("gateway.spool")

KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
SUFFIX = ".msg"
FOLDERS = ("tmp", "new", "cur", "done", "quarantine")
# The outbound queue counts delivery attempts (days of retries) in the same ``attempts`` key that
# recover() counts crashes in: its items must not go to quarantine after a handful.
OUTBOUND_MAX_ATTEMPTS = 100_000


@dataclass(frozen=True)
class SpoolItem:
    """One item where it was found; the payload is read only when asked for."""

    key: str
    path: Path
    meta: dict[str, Any] = field(hash=False)

    def payload(self) -> bytes:
        """The payload bytes exactly as put (the file after its metadata line)."""
        with self.path.open("rb") as file:
            file.readline()
            return file.read()


@dataclass(frozen=True)
class Recovery:
    """What recover() did: cur/ items put back in new/ or quarantined, tmp/ files deleted."""

    requeued: int
    quarantined: int
    stale_tmp: int


class Spool:
    """A directory queue with put, claim, finish, defer (then quarantine), get, purge, recover;
    waiting, claim_key and reschedule for a consumer that keeps its own schedule."""

    def __init__(self, root: Path, max_attempts: int = 5) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.root = root
        self.max_attempts = max_attempts
        root.parent.mkdir(parents=True, exist_ok=True)
        for path in (root, *(root / name for name in FOLDERS)):
            with suppress(FileExistsError):
                path.mkdir(mode=0o700)
                path.chmod(0o700)  # mkdir's mode went through the umask
        fsync_dir(root)
        self.tmp, self.new, self.cur, self.done, self.quarantine = (root / n for n in FOLDERS)
        self._peeked: dict[str, tuple[int, int, dict[str, Any]]] = {}  # peek()'s last reading

    def put(self, key: str, payload: bytes, meta: Mapping[str, Any]) -> SpoolItem:
        """Store a new item in new/; only when this returns is it durable.

        ValueError: bad key; TypeError: metadata not JSON with str keys; FileExistsError: key in
        new/, cur/ or done/ (a guard, not a lock: callers dedupe first); StorageFull (452): disk or
        quota full; StoreUnavailable (451): any other I/O error. After an error nothing is stored.
        """
        name = _filename(key)
        header = _encode_meta(meta)
        try:
            held = [f.name for f in (self.new, self.cur, self.done) if (f / name).exists()]
        except OSError as exc:
            raise _store_error(exc, name) from exc
        if held:
            raise FileExistsError(errno.EEXIST, f"already spooled in {held[0]}/", key)
        path = self._write(self.new, name, header, payload, undo=True)
        log.debug("spooled %s (%d bytes)", key, len(payload))
        return SpoolItem(key, path, json.loads(header))

    def claim(self, skip: Collection[str] = ()) -> SpoolItem | None:
        """Move the oldest item of new/ (but those in ``skip``) to cur/ and return it; None when
        there is none."""
        skipped = {_filename(key) for key in skip}
        for path in _oldest_first(self.new):
            if path.name in skipped:
                continue
            target = self.cur / path.name
            try:
                path.rename(target)
            except FileNotFoundError:
                continue  # another claimer took it first
            try:
                return _load(target)
            except ValueError as exc:
                log.error("quarantined %s: %s", target.name, exc)
                self._move(target, self.quarantine)
        return None

    def waiting(self) -> list[SpoolItem]:
        """The items of new/ with their metadata, oldest first, left where they are. Only each
        file's first line is read. An unreadable item is skipped (claim() quarantines it)."""
        found: list[SpoolItem] = []
        for path in _oldest_first(self.new):
            try:
                found.append(_load(path))
            except FileNotFoundError:
                continue  # claimed by someone else meanwhile
            except ValueError as exc:
                log.error("skipping unreadable %s: %s", path.name, exc)
        return found

    def queued(self) -> list[tuple[str, float]]:
        """The keys of new/ with the instant each was put there (its mtime, seconds since the
        epoch), oldest first: one scan of the folder, no file opened (claim_key takes one)."""
        found: list[tuple[int, str]] = []
        with os.scandir(self.new) as entries:
            for entry in entries:
                if entry.name.endswith(SUFFIX):
                    with suppress(FileNotFoundError):  # claimed by someone else meanwhile
                        found.append((entry.stat().st_mtime_ns, entry.name))
        found.sort()
        return [(name.removesuffix(SUFFIX), mtime / 1e9) for mtime, name in found]

    def peek(self) -> list[SpoolItem]:
        """waiting() in fewer system calls (one scandir, then open, read, close per item; no
        file objects): delivery looks at the whole queue on every pass. The items of new/ with
        their metadata, oldest first, left where they are; an unreadable one is skipped."""
        new = os.fspath(self.new)
        found: list[tuple[int, str, int]] = []
        with os.scandir(new) as entries:
            for entry in entries:
                if entry.name.endswith(SUFFIX):
                    with suppress(FileNotFoundError):  # claimed by someone else meanwhile
                        found.append((entry.stat().st_mtime_ns, entry.name, entry.inode()))
        found.sort()
        # A file is never changed in place (a new version is a new file renamed over it), so
        # the metadata read last time holds while the name, inode and mtime are the same: a
        # long queue for a partner that is down costs a scan per pass, not a read per item.
        known = self._peeked
        seen: dict[str, tuple[int, int, dict[str, Any]]] = {}
        items: list[SpoolItem] = []
        for mtime, name, inode in found:
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

    def claim_key(self, key: str) -> SpoolItem | None:
        """Move the item ``key`` from new/ to cur/ and return it; None when it is not in new/
        (another claimer took it, or it was never there)."""
        name = _filename(key)
        target = self.cur / name
        try:
            (self.new / name).rename(target)
        except FileNotFoundError:
            return None
        try:
            return _load(target)
        except ValueError as exc:
            log.error("quarantined %s: %s", name, exc)
            self._move(target, self.quarantine)
            return None

    def finish(self, item: SpoolItem) -> SpoolItem:
        """Move a claimed item to done/, where it is kept until purge()."""
        path = self._move(self._claimed(item), self.done)
        return SpoolItem(item.key, path, item.meta)

    def claim_read(self, keys: Iterable[str]) -> list[tuple[SpoolItem, bytes]]:
        """claim_key for several keys, each item read once: (the item in cur/, its payload) for
        those that were in new/. An unreadable item is quarantined, as claim_key does. Written
        with os calls on strings: this runs for every message sent, pathlib costs a third more."""
        new, cur = os.fspath(self.new), os.fspath(self.cur)
        claimed: list[tuple[SpoolItem, bytes]] = []
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
            claimed.append((SpoolItem(key, Path(target), meta), payload))
        return claimed

    def finish_many(self, items: Iterable[SpoolItem]) -> list[SpoolItem]:
        """finish() for several claimed items with one directory sync for them all: each is
        renamed into done/, then done/ and cur/ are fsynced once. Returns the items that could
        not be moved (still claimed); StoreUnavailable when the sync fails (the moves may then
        not survive a crash: those items would be back in cur/)."""
        cur, done = os.fspath(self.cur), os.fspath(self.done)
        stuck: list[SpoolItem] = []
        moved = 0
        for item in items:
            name = _filename(item.key)
            source = f"{cur}/{name}"
            try:
                if os.fspath(item.path) != source:
                    raise ValueError(f"{item.key}: not a claimed item of this spool")
                os.rename(source, f"{done}/{name}")  # noqa: PTH104 - as in claim_read
            except (OSError, ValueError) as exc:
                log.error("cannot move %s to done/: %s", item.key, exc)
                stuck.append(item)
                continue
            moved += 1
        if moved:
            try:
                fsync_dir(self.done)
                fsync_dir(self.cur)
            except OSError as exc:
                raise _store_error(exc, "done/") from exc
        return stuck

    def defer(self, item: SpoolItem, reason: str) -> bool:
        """Put a claimed item back into new/ with ``attempts`` + 1 and ``last_error`` = reason.

        Returns False when that was the last attempt allowed: the item went to quarantine/.
        """
        claimed = self._claimed(item)
        attempts = int(item.meta.get("attempts", 0)) + 1
        meta = {**item.meta, "attempts": attempts, "last_error": reason}
        payload = item.payload()
        self._write(self.cur, claimed.name, _encode_meta(meta), payload, undo=False)
        if attempts >= self.max_attempts:
            self._move(claimed, self.quarantine)
            log.warning("quarantined %s after %d attempts: %s", item.key, attempts, reason)
            return False
        self._move(claimed, self.new)
        log.info("deferred %s (attempt %d): %s", item.key, attempts, reason)
        return True

    def reschedule(self, item: SpoolItem, meta: Mapping[str, Any]) -> None:
        """Put a claimed item back into new/ with ``meta`` as its metadata, written as a new
        file (tmp/, fsync, rename) like defer(), but counting no attempt and never quarantining:
        the caller keeps its own count."""
        claimed = self._claimed(item)
        header = _encode_meta(meta)
        self._write(self.cur, claimed.name, header, item.payload(), undo=False)
        self._move(claimed, self.new)
        log.debug("rescheduled %s", item.key)

    def recover(self) -> Recovery:
        """At start-up, while no other process uses the spool: requeue cur/, empty tmp/.

        As in Mailman's .bak recovery, an item left in cur/ by a crash counts as a failed attempt
        (defer), so an item that kills the gateway every time ends in quarantine/, not in a loop.
        """
        stale = 0
        for path in self.tmp.iterdir():
            path.unlink(missing_ok=True)
            stale += 1
        requeued = quarantined = 0
        for path in _oldest_first(self.cur):
            try:
                item = _load(path)
            except ValueError as exc:
                log.error("quarantined %s: %s", path.name, exc)
                self._move(path, self.quarantine)
                quarantined += 1
                continue
            if self.defer(item, "interrupted: recovered at start-up"):
                requeued += 1
            else:
                quarantined += 1
        return Recovery(requeued, quarantined, stale)

    def get(self, key: str) -> SpoolItem:
        """The item with this key, from new/, cur/ or done/; KeyError if none holds it."""
        name = _filename(key)
        for _ in range(2):  # look twice: an item may move between folders while we look
            for folder in (self.new, self.cur, self.done):
                with suppress(FileNotFoundError):
                    return _load(folder / name)
        raise KeyError(key)

    def exists(self, key: str) -> bool:
        """Whether new/, cur/ or done/ holds this key."""
        name = _filename(key)
        return any((folder / name).exists() for folder in (self.new, self.cur, self.done))

    def release(self, item: SpoolItem) -> SpoolItem:
        """Put a claimed item back into new/ untouched: not a failure, it is simply not due yet."""
        path = self._move(self._claimed(item), self.new)
        return SpoolItem(item.key, path, item.meta)

    def set_aside(self, item: SpoolItem) -> None:
        """Move a claimed item to quarantine/ for an operator to look at; nothing is deleted."""
        self._move(self._claimed(item), self.quarantine)
        log.warning("set aside %s in quarantine/", item.key)

    def discard(self, key: str) -> bool:
        """Remove an item that was put but must not stay (its ledger commit failed, so no 250
        was given); from new/ or, if a worker holds it, cur/. False if neither has it."""
        name = _filename(key)
        for folder in (self.new, self.cur):
            try:
                (folder / name).unlink()
            except FileNotFoundError:
                continue
            fsync_dir(folder)
            return True
        return False

    def purge(self, key: str) -> bool:
        """Delete a handled item from done/ (the retention purge); False if it was not there."""
        try:
            (self.done / _filename(key)).unlink()
        except FileNotFoundError:
            return False
        fsync_dir(self.done)
        return True

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

    def locate(self, key: str) -> SpoolItem | None:
        """The item with this key in new/, cur/ or quarantine/ (not done/: handled), or None.
        Its ``path`` names the folder; an unreadable item comes with empty metadata."""
        name = _filename(key)
        for _ in range(2):  # look twice: an item may move between folders while we look
            for folder in (self.new, self.cur, self.quarantine):
                try:
                    return _load(folder / name)
                except FileNotFoundError:
                    continue
                except ValueError:
                    return SpoolItem(key, folder / name, {})
        return None

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
        item = SpoolItem(key, claimed, dict(meta))
        self.reschedule(item, meta)
        return SpoolItem(key, self.new / name, dict(meta))

    def set_aside_waiting(self, key: str) -> SpoolItem | None:
        """Move an item from new/ straight to quarantine/ (an operator is about to drop it), so
        no worker can claim it meanwhile; None when new/ does not hold it (claimed meanwhile)."""
        name = _filename(key)
        try:
            (self.new / name).rename(self.quarantine / name)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _store_error(exc, name) from exc
        fsync_dir(self.quarantine)
        try:
            return _load(self.quarantine / name)
        except ValueError:
            return SpoolItem(key, self.quarantine / name, {})

    def delete_quarantined(self, key: str) -> bool:
        """Remove a quarantined item for good (an operator's drop); False if it was not there."""
        try:
            (self.quarantine / _filename(key)).unlink()
        except FileNotFoundError:
            return False
        fsync_dir(self.quarantine)
        return True

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

    def _write(self, folder: Path, name: str, header: bytes, payload: bytes, *, undo: bool) -> Path:
        """tmp/ (O_EXCL), write all, fsync, rename into folder, fsync folder.

        On failure the tmp file (and, with ``undo``, the renamed one) is removed: a failed fsync
        is never retried on the same file; the caller starts again with a new one.
        """
        tmp = self.tmp / f"{name}.{os.getpid()}.{secrets.token_hex(4)}"
        target = folder / name
        fd, placed = -1, False
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            _write_all(fd, header + b"\n")
            _write_all(fd, payload)
            os.fsync(fd)
            closing, fd = fd, -1  # never close twice: the number may already be reused
            os.close(closing)
            tmp.rename(target)
            placed = True
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
