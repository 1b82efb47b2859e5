"""Where desk copies go: each desk's Maildir (the default) or Dovecot by LMTP, one interface."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.core.config import Desk
from gateway.core.errors import GatewayError
from gateway.desks.maildir import deliver_many

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class DeskCopy:
    """One desk copy: its desk, its name (fixed by the ledger id: the Maildir file's name), its
    Message-ID (fixed the same way: what LMTP's re-delivery check looks for) and its bytes."""

    desk: Desk
    name: str
    message_id: str
    data: bytes


def copy_name(ledger_id: int, reference: str) -> str:
    """A desk copy's name: ``<ledger id>.<Reference>``."""
    return f"{ledger_id}.{_UNSAFE.sub('_', reference)}"


def copy_message_id(ledger_id: int, reference: str, domain: str) -> str:
    """A desk copy's Message-ID: ``<desk.<ledger id>.<Reference>@<our host name>>``, the same at
    every attempt, so that a copy delivered before is found by it."""
    return f"<desk.{copy_name(ledger_id, reference)}@{domain}>"


class DeskSink(Protocol):
    """Delivers desk copies, each once. ``unseen`` names the copies the caller knows were never
    delivered (no earlier attempt could have left them); the others are looked for first.
    Returns, for each copy in order, None when it is on its desk (now or before) or the error
    that kept it off: a transient one (DeskUnavailable, StoreUnavailable) means try again later,
    any other is lasting (DeskRefused: set aside)."""

    def deliver(
        self, copies: Sequence[DeskCopy], *, unseen: Collection[str] = ()
    ) -> list[GatewayError | OSError | None]: ...


class MaildirSink:
    """Each desk's copies into its Maildir, a desk's in one go (``maildir.deliver_many``: the
    file's name makes a second delivery a no-op); a desk's failure is each of its copies'."""

    def deliver(
        self, copies: Sequence[DeskCopy], *, unseen: Collection[str] = ()
    ) -> list[GatewayError | OSError | None]:
        by_desk: dict[str, list[int]] = {}
        for index, copy in enumerate(copies):
            by_desk.setdefault(copy.desk.name, []).append(index)
        outcome: list[GatewayError | OSError | None] = [None] * len(copies)
        for indexes in by_desk.values():
            mine = [copies[index] for index in indexes]
            try:
                deliver_many(
                    mine[0].desk.maildir,
                    [(copy.name, copy.data) for copy in mine],
                    unseen={copy.name for copy in mine if copy.name in unseen},
                )
            except (GatewayError, OSError) as error:
                for index in indexes:
                    outcome[index] = error
        return outcome
