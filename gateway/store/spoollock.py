"""One `gateway serve` per spool: an exclusive lock on <spool>/gateway.lock, held for its life."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from datetime import datetime
from pathlib import Path

from gateway.core.errors import CannotStart

LOCK_NAME = "gateway.lock"


class SpoolLock:
    """The lock of one spool folder. Its file records who holds it (pid, host, since when), so
    that a second gateway can say whom it met; the kernel releases it when the process ends,
    however it ends, so a kill -9 leaves nothing to clean up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, spool: Path, now: datetime) -> SpoolLock:
        """Take the lock of ``spool`` or raise CannotStart naming its holder. OSError when the
        lock file cannot be made (a read-only or foreign folder): the caller names the key."""
        path = spool / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise CannotStart(f"spool {spool} is in use by {holder}") from None
        except BaseException:
            os.close(fd)
            raise
        # Never unlinked: a file removed while another process waits to open it would let two
        # gateways each hold a lock on a different file. The record is rewritten in place.
        since = now.replace(microsecond=0).isoformat()
        record = f"pid {os.getpid()}\nhost {socket.gethostname()}\nsince {since}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        os.fsync(fd)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SpoolLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """Who holds the lock, from its record: 'gateway pid 1234 on host h since 2026-...'."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    if not {"pid", "host", "since"} <= fields.keys():
        return "another gateway (starting, or its record is unreadable)"
    return f"gateway pid {fields['pid']} on host {fields['host']} since {fields['since']}"
