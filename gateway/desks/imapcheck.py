"""Whether desk copies are in a Dovecot mailbox already, by Message-ID over IMAP: the only code
that speaks IMAP. Logged in as a master user (``<mailbox>*<master user>``), read-only, every
folder that can be selected searched (a handler may have filed the copy away)."""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Sequence

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


class CopyFinder:
    """Looks for Message-IDs in a desk's mailbox: one IMAP session per call."""

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
        for message_id in message_ids:
            if not _SAFE_ID.fullmatch(message_id):
                raise ValueError(f"not a desk copy's Message-ID: {message_id[:80]!r}")
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
            found: set[str] = set()
            for folder in self._folders(client):
                typ, _ = client.select(folder, readonly=True)
                if typ != "OK":
                    continue
                for message_id in message_ids:
                    if message_id in found:
                        continue
                    typ, data = client.search(None, "HEADER", "Message-ID", f'"{message_id}"')
                    if typ == "OK" and data and data[0] and data[0].split():
                        found.add(message_id)
            return found
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as error:
            # The class only: a server's refusal may quote the login.
            raise DeskUnavailable(f"IMAP check of {mailbox}: {type(error).__name__}") from error
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
