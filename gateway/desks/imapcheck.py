"""Desk copies in a Dovecot mailbox by Message-ID over IMAP, the only code that speaks IMAP:
found before a re-delivery (read-only), measured and expunged when their message is shredded.
Logged in as a master user (``<mailbox>*<master user>``), every folder that can be selected
searched (a handler may have filed the copy away)."""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from gateway.core.config import DeskDelivery
from gateway.core.errors import ConfigError, DeskRefused, DeskUnavailable

# A LIST reply: (flags) delimiter name; the name quoted or an atom.
_LISTED = re.compile(
    rb'\((?P<flags>[^)]*)\) (?:NIL|"(?:[^"\\]|\\.)*") (?P<name>"(?:[^"\\]|\\.)*"|\S+)$'
)
# What a desk copy's or a notice's Message-ID holds (the host name may be an address literal):
# nothing that could end the quoted string it is searched as.
_SAFE_ID = re.compile(r"<[A-Za-z0-9._@:\[\]-]{1,250}>")


def read_password(settings: DeskDelivery) -> str:
    """The IMAP master user's password from its file (first line); ConfigError when unreadable."""
    path = settings.imap_password_file
    if path is None:
        raise ConfigError("[desk_delivery]", "imap_password_file", "missing")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ConfigError(
            str(path), "", f"cannot read {path}: {error.strerror or error}"
        ) from error
    if not lines or not lines[0]:
        raise ConfigError(
            str(path), "", f"{path} is empty: put the master user's password on its first line"
        )
    return lines[0]


@dataclass(frozen=True)
class HeldCopy:
    """A copy a mailbox holds: its folder, its UID there, and the SHA-256 and size of its bytes."""

    folder: str
    uid: str
    sha256: str
    size: int


class CopyFinder:
    """Looks for Message-IDs in a desk's mailbox, and expunges them: one IMAP session per call."""

    def __init__(self, settings: DeskDelivery, password: str) -> None:
        if settings.imap is None or settings.imap_user is None:
            raise ValueError('[desk_delivery] method = "lmtp" needs imap and imap_user')
        host, _, port = settings.imap.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.settings = settings
        self.user = settings.imap_user
        self.password = password

    def present(self, mailbox: str, message_ids: Sequence[str]) -> set[str]:
        """Those of ``message_ids`` that some folder of ``mailbox`` holds. DeskUnavailable when
        the server cannot be asked (then nothing may be delivered: it could be a second copy),
        DeskRefused when it says the mailbox is none the master user may open (no such desk)."""
        _check_ids(message_ids)
        found: set[str] = set()
        with self._session(mailbox) as client:
            for folder in self._folders(client):
                typ, _ = client.select(folder, readonly=True)
                if typ != "OK":
                    continue
                for message_id in message_ids:
                    if message_id not in found and _uids(client, message_id):
                        found.add(message_id)
        return found

    def held(self, mailbox: str, message_id: str) -> list[HeldCopy]:
        """Every copy with ``message_id`` in any folder of ``mailbox``, with its digest (read
        with BODY.PEEK: no flag changes). DeskUnavailable, DeskRefused as ``present``."""
        _check_ids([message_id])
        copies: list[HeldCopy] = []
        with self._session(mailbox) as client:
            for folder in self._folders(client):
                typ, _ = client.select(folder, readonly=True)
                if typ != "OK":
                    continue
                for uid in _uids(client, message_id):
                    typ, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                    data = next((part[1] for part in parts if isinstance(part, tuple)), None)
                    if typ != "OK" or data is None:
                        continue  # expunged meanwhile
                    copies.append(
                        HeldCopy(folder, uid, hashlib.sha256(data).hexdigest(), len(data))
                    )
        return copies

    def expunge(self, mailbox: str, message_id: str) -> int:
        """Delete every copy with ``message_id`` from every folder of ``mailbox`` (flagged
        \\Deleted and expunged by UID: nothing else of the folder is expunged). Returns how many
        were expunged; none found is no error. DeskUnavailable, DeskRefused as ``present``."""
        _check_ids([message_id])
        expunged = 0
        with self._session(mailbox) as client:
            for folder in self._folders(client):
                typ, _ = client.select(folder)
                if typ != "OK":
                    continue
                uids = _uids(client, message_id)
                if not uids:
                    continue
                members = ",".join(uids)
                typ, _ = client.uid("STORE", members, "+FLAGS.SILENT", r"(\Deleted)")
                if typ != "OK":
                    raise imaplib.IMAP4.error(f"STORE failed in {folder}")
                typ, _ = client.uid("EXPUNGE", members)  # UIDPLUS (RFC 4315)
                if typ != "OK":
                    raise imaplib.IMAP4.error(f"UID EXPUNGE failed in {folder}")
                expunged += len(uids)
        return expunged

    @contextlib.contextmanager
    def _session(self, mailbox: str) -> Iterator[imaplib.IMAP4]:
        """Logged in to ``mailbox`` as the master user; IMAP's and TLS's errors as
        DeskUnavailable (the class only: a server's refusal may quote the login)."""
        try:
            client = imaplib.IMAP4(
                self.host, self.port, timeout=self.settings.timeout.total_seconds()
            )
        except (OSError, imaplib.IMAP4.error) as error:
            raise DeskUnavailable(f"IMAP {self.settings.imap}: {type(error).__name__}") from error
        try:
            if self.settings.imap_tls:
                client.starttls(ssl.create_default_context(cafile=self.settings.tls_ca))
            try:
                client.login(f"{mailbox}*{self.user}", self.password)
            except imaplib.IMAP4.error as refused:
                if "AUTHORIZATIONFAILED" in str(refused):  # (RFC 5530) the master user is good
                    raise DeskRefused(
                        f"IMAP: no mailbox {mailbox} for the master user to open"
                    ) from refused
                raise
            yield client
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as error:
            raise DeskUnavailable(f"IMAP on {mailbox}: {type(error).__name__}") from error
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()

    @staticmethod
    def _folders(client: imaplib.IMAP4) -> list[str]:
        typ, listed = client.list()
        if typ != "OK":
            raise imaplib.IMAP4.error("LIST failed")
        folders: list[str] = []
        for line in listed:
            if not isinstance(line, bytes) or (match := _LISTED.match(line)) is None:
                continue
            if (
                b"\\noselect" in match["flags"].lower()
                or b"\\nonexistent" in match["flags"].lower()
            ):
                continue
            folders.append(match["name"].decode("utf-8", "replace"))
        return folders or ["INBOX"]


def _check_ids(message_ids: Sequence[str]) -> None:
    for message_id in message_ids:
        if not _SAFE_ID.fullmatch(message_id):
            raise ValueError(f"not a desk copy's Message-ID: {message_id[:80]!r}")


def _uids(client: imaplib.IMAP4, message_id: str) -> list[str]:
    """The UIDs in the selected folder of the messages whose Message-ID is ``message_id``."""
    typ, data = client.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
    if typ != "OK" or not data or not data[0]:
        return []
    return [uid.decode("ascii") for uid in data[0].split()]
