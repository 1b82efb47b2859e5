"""A message's desk copies in Dovecot ([desk_delivery] method = "lmtp"), for its shredding:
found by their fixed Message-ID in every folder of the desk's mailbox, measured, then expunged,
over IMAP (gateway.desks.imapcheck)."""

from __future__ import annotations

import hashlib

from gateway.core.config import Config
from gateway.core.errors import DeskRefused
from gateway.desks.imapcheck import CopyFinder, read_password
from gateway.desks.sink import copy_message_id
from gateway.store.ledger import MessageRow
from gateway.store.shred_rows import Copy

PLACE = "dovecot"


class DovecotCopies:
    """The copies of received messages in the desks' Dovecot mailboxes: an IMAP session per
    mailbox and call. A mailbox Dovecot does not know (a desk removed) holds nothing; Dovecot
    out of reach is DeskUnavailable, and the message waits for the next run."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.finder = CopyFinder(config.desk_delivery, read_password(config.desk_delivery))
        self.domain = config.listen.hostname

    def measure(self, row: MessageRow) -> list[Copy]:
        """Each copy of ``row`` with its SHA-256 and size, named by its mailbox, folder (by a
        digest: a handler names folders) and UID; nothing is changed."""
        copies: list[Copy] = []
        for mailbox in self._mailboxes(row):
            try:
                held = self.finder.held(mailbox, self._message_id(row))
            except DeskRefused:
                continue
            for copy in held:
                folder = hashlib.sha256(copy.folder.encode()).hexdigest()[:12]
                name = f"{mailbox} folder {folder} uid {copy.uid}"
                copies.append(Copy(PLACE, name, copy.sha256, copy.size))
        return copies

    def remove(self, row: MessageRow) -> int:
        """Expunge every copy of ``row``; how many were there (gone already: not counted)."""
        removed = 0
        for mailbox in self._mailboxes(row):
            try:
                removed += self.finder.expunge(mailbox, self._message_id(row))
            except DeskRefused:
                continue
        return removed

    def _message_id(self, row: MessageRow) -> str:
        return copy_message_id(row.id, row.reference, self.domain)

    def _mailboxes(self, row: MessageRow) -> list[str]:
        """The mailbox of the message's desk; every desk's when the ledger names none known."""
        mine = [desk.mailbox_user for desk in self.config.desks if desk.name == row.desk]
        return mine or sorted({desk.mailbox_user for desk in self.config.desks})
