"""Durable-write primitives shared by the spool and the desks: directory fsync, storage errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from gateway.errors import StorageFull, StoreUnavailable

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
