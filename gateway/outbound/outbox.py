"""Desks' outbox folders: a form dropped in is sent once, then moved to sent/ or refused/.

A handler (or a case-management system) writes ``NAME.xml`` elsewhere and renames it into the
desk's outbox; files of a folder ``NAME.files/`` beside it are its attachments. Each file is
first claimed by a rename into ``.sending/``, then submitted, then moved to ``sent/REFERENCE.xml``;
a refused one goes to ``refused/NAME.xml`` with ``NAME.xml.errors.txt`` saying why. A crash
between the submission and the move is resolved at the next scan by the ledger: the first
event of a queued form names the digest of the file it came from, so nothing is sent twice.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import shutil
from dataclasses import dataclass
from pathlib import Path

from gateway.core.config import Config, Desk
from gateway.core.errors import GatewayError
from gateway.crypto.pgpmime import Attachment
from gateway.outbound.submit import Submitter
from gateway.store import lookups
from gateway.store.durable import fsync_dir

log = logging.getLogger("gateway.outbox")
SENDING, SENT, REFUSED = ".sending", "sent", "refused"
ATTACHMENTS_SUFFIX = ".files"


@dataclass(frozen=True)
class Outcome:
    """What became of one dropped file."""

    desk: str
    name: str
    reference: str | None  # set when queued
    error: str | None  # set when refused


class Outbox:
    """Scans every desk's outbox folder and submits what it finds."""

    def __init__(self, config: Config, submitter: Submitter) -> None:
        self.config = config
        self.submitter = submitter

    def scan_once(self) -> list[Outcome]:
        """Submit every form waiting in the outboxes; blocking, run it off the event loop."""
        outcomes: list[Outcome] = []
        for desk in self.config.desks:
            folder = self.config.outbox(desk)
            _prepare(folder)
            for path in sorted((folder / SENDING).glob("*.xml")):  # left by a crash
                outcomes.append(self._submit(desk, path, claimed=True))
            for path in sorted(folder.glob("*.xml")):
                if path.name.startswith(".") or not path.is_file():
                    continue
                claimed = folder / SENDING / path.name
                try:
                    path.rename(claimed)
                except FileNotFoundError:
                    continue  # another gateway took it
                outcomes.append(self._submit(desk, claimed, claimed=False))
        return outcomes

    def _submit(self, desk: Desk, path: Path, *, claimed: bool) -> Outcome:
        folder = path.parent.parent
        form = path.read_bytes()
        origin = f"outbox {desk.name} sha256:{hashlib.sha256(form).hexdigest()}"
        if claimed and (reference := self._already_queued(origin)) is not None:
            self._move(path, folder / SENT / f"{reference}.xml")
            self._move_files(folder, path, folder / SENT / f"{reference}{ATTACHMENTS_SUFFIX}")
            return Outcome(desk.name, path.name, reference, None)
        try:
            attachments = _attachments(folder / (path.stem + ATTACHMENTS_SUFFIX))
            submitted = self.submitter.submit(form, attachments, desk=desk.name, origin=origin)
        except GatewayError as error:
            if error.transient:
                log.warning("outbox %s: %s stays for a later try: %s", desk.name, path.name, error)
                self._move(path, folder / path.name)
                return Outcome(desk.name, path.name, None, str(error))
            self._refuse(folder, path, str(error))
            log.info("outbox %s: %s refused", desk.name, path.name)
            return Outcome(desk.name, path.name, None, str(error))
        except OSError as error:
            self._refuse(folder, path, f"cannot read the attachments: {error.strerror or error}")
            return Outcome(desk.name, path.name, None, str(error))
        self._move(path, folder / SENT / f"{submitted.reference}.xml")
        self._move_files(folder, path, folder / SENT / f"{submitted.reference}{ATTACHMENTS_SUFFIX}")
        log.info("outbox %s: %s queued as %s", desk.name, path.name, submitted.reference)
        return Outcome(desk.name, path.name, submitted.reference, None)

    def _already_queued(self, origin: str) -> str | None:
        with self.submitter.ledger.reading() as tx:
            return lookups.queued_from(tx, origin)

    def _refuse(self, folder: Path, path: Path, reason: str) -> None:
        target = folder / REFUSED / path.name
        report = folder / REFUSED / f"{path.name}.errors.txt"
        report.write_text(reason.rstrip() + "\n", encoding="utf-8")
        self._move(path, target)
        files = folder / REFUSED / (path.stem + ATTACHMENTS_SUFFIX)
        if files.is_dir():  # the files of an earlier refusal of this name
            shutil.rmtree(files)
        self._move_files(folder, path, files)

    def _move_files(self, folder: Path, path: Path, target: Path) -> None:
        """The attachments folder of a handled form goes with it: a later form of the same
        name must not find them."""
        files = folder / (path.stem + ATTACHMENTS_SUFFIX)
        if files.is_dir():
            self._move(files, target)

    @staticmethod
    def _move(path: Path, target: Path) -> None:
        path.replace(target)
        fsync_dir(target.parent)
        if target.parent != path.parent:
            fsync_dir(path.parent)


def _prepare(folder: Path) -> None:
    for sub in (folder, folder / SENDING, folder / SENT, folder / REFUSED):
        sub.mkdir(mode=0o700, parents=True, exist_ok=True)


def _attachments(folder: Path) -> list[Attachment]:
    if not folder.is_dir():
        return []
    return [
        Attachment(
            filename=path.name,
            media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            data=path.read_bytes(),
        )
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.startswith(".")
    ]
