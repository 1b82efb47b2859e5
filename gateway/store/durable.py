"""Durable-write primitives shared by the spool, the desks and the ledger: private folders,
directory fsync, storage errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from gateway.core.errors import StorageFull, StoreUnavailable

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def fsync_dir(folder: Path) -> None:
    """Make a rename or an unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_error(exc: OSError, detail: str = "") -> StoreUnavailable:
    """What an I/O failure means to a sender: 452 4.3.1 when the disk or quota is full,
    451 4.3.0 otherwise."""
    if exc.errno in DISK_FULL:
        return StorageFull(detail)
    return StoreUnavailable(detail)


def private_folder(folder: Path) -> None:
    """``folder`` and each missing parent made with mode 0700 (not through the umask): what they
    will hold is personal data. An existing folder is left as it is. OSError when one cannot be
    made (a file in the way, no permission)."""
    missing = [path for path in (folder, *folder.parents) if not path.is_dir()]
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            if not path.is_dir():
                raise
            continue  # made meanwhile by someone else
        path.chmod(0o700)
