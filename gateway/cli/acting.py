"""What the commands that act as a user (``--user``) and write a document (``--out``) share:
the user looked up and refused when unknown or disabled, the document written whole or not
at all."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.access.accounts import AccountError
from gateway.access.principals import principal_of
from gateway.access.roles import Principal
from gateway.access.setup import AccessServices

EXIT_REJECTED, EXIT_USAGE = 1, 2


class UserRefused(Exception):
    """The user named cannot act: ``detail`` says why, ``code`` is the command's exit code."""

    def __init__(self, detail: str, code: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


def principal_for(access: AccessServices, name: str) -> Principal:
    """The principal of the user ``name``; UserRefused when there is none (exit 2) or the user
    is disabled (exit 1)."""
    try:
        user = access.accounts.get(name)
    except AccountError as missing:
        raise UserRefused(f"no user {name!r}", EXIT_USAGE) from missing
    if user.disabled:
        raise UserRefused(f"user {name!r} is disabled", EXIT_REJECTED)
    return principal_of(user.name, user.roles, user.desks)


def write_whole(data: bytes, out: Path | None) -> str | None:
    """``data`` to standard output (``out`` None) or to ``out``, whole or not at all (written
    beside it, then renamed); what went wrong, or None."""
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return None
    part = out.with_name(out.name + ".part")
    try:
        part.write_bytes(data)
        part.replace(out)
    except OSError as exc:
        part.unlink(missing_ok=True)
        return f"cannot write {out}: {exc.strerror}"
    return None
