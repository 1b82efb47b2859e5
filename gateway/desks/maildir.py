"""Hand each accepted form to its handler desk: a readable e-mail, delivered once into a Maildir."""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import os
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import encoders
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, make_msgid, quote
from pathlib import Path
from typing import Any

from gateway.core.config import Route
from gateway.crypto.pgpmime import FORM_FILENAME, WRITE_POLICY, Attachment, new_boundary
from gateway.forms.formwording import words
from gateway.forms.xmlforms import FormHeader
from gateway.store.durable import fsync_dir, storage_error

PLACEHOLDER_DOMAIN = "gateway.invalid"
# Copies written before the first of them is synced (deliver_many): descriptors open at once.
SYNC_GROUP = 64
# Desk copies are files in a Maildir, read by mail clients from disk: lines end in LF there (the
# Maildir convention; CRLF shows as ^M in mutt). Only what goes over SMTP is written in CRLF.
DISK_POLICY = WRITE_POLICY.clone(linesep="\n")
Row = tuple[int, str, str]
Part = tuple[str, str, bytes]  # an attachment of the desk copy: file name, media type, content

log = logging.getLogger("gateway.desks")

_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
# A media type the email package writes as it is: type/subtype, each a plain token.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*/[A-Za-z0-9][A-Za-z0-9.+-]*")
# Header fields the body shows in its own summary; anything else under Header is listed after it.
_SUMMARISED = frozenset(
    {
        *("Created", "Reference", "InReplyTo", "Language", "AlertRef", "AlertRef/@article"),
        *("Sender", "Sender/Bureau", "Sender/Officer", "Recipient", "Recipient/Bureau"),
        *("Recipient/Officer", "Priority", "Priority/Normal", "Priority/Urgent"),
        "Priority/Urgent/UrgencyReason",
    }
)


@dataclass(frozen=True)
class Delivery:
    """An accepted form for one desk; naive datetimes are read as UTC, as the ledger does."""

    partner: str  # bureau code, e.g. NO-SIRENE
    partner_address: str
    channel: str
    form: str  # form code, e.g. G
    title: str
    header: FormHeader
    outline: tuple[Row, ...]  # Validation.outline()
    form_xml: bytes
    received_at: datetime
    desk: str
    desk_email: str | None = None
    attachments: tuple[Attachment, ...] = ()
    reply_due: datetime | None = None
    # Fixed by the caller (the hand-off: from the ledger id) so that a re-delivery is known by
    # it; None: a new one.
    message_id: str | None = None
    # The cross-check at arrival: its hits on this desk's own messages, described, and how many
    # others it found on other desks (counted, never described here).
    earlier: tuple[str, ...] = ()
    earlier_elsewhere: int = 0
    earlier_capped: bool = False  # the check stopped at its limit: there may be more


def choose_desk(
    routes: Iterable[Route], channel: str, form: str, priority: str, partner: str
) -> str:
    """The desk of the first route that matches; LookupError when none does."""
    for route in routes:
        if route.matches(channel, form, priority, partner):
            return route.desk
    raise LookupError(
        f"no route matches channel {channel!r}, form {form!r}, priority {priority!r}, "
        f"partner {partner!r}: add a route for it, or a last route without conditions"
    )


def subject(delivery: Delivery) -> str:
    """``[URGENT] SIRENE G from NO-SIRENE NO-2026-000123, reply due 2026-11-26 09:00 UTC``."""
    urgent = "[URGENT] " if delivery.header.priority == "urgent" else ""
    due = f", reply due {_utc(delivery.reply_due)}" if delivery.reply_due is not None else ""
    return (
        f"{urgent}{delivery.channel.upper()} {delivery.form} from {delivery.partner} "
        f"{delivery.header.reference}{due}"
    )


def render(delivery: Delivery, *, domain: str = PLACEHOLDER_DOMAIN) -> bytes:
    """The message a desk reads: a text rendering of the form, the form and its attachments,
    with LF line endings (a Maildir file).

    Written straight out when every attachment has a plain name and media type (the bytes the
    email package writes, held equal by tests); otherwise built with the compat32 classes and
    flattened by the email package. Either way each header is folded by DISK_POLICY."""
    desk_address = delivery.desk_email or f"desk-{delivery.desk}@{domain}"
    headers = (
        ("From", formataddr((delivery.partner, delivery.partner_address))),
        ("To", formataddr((f"{delivery.desk} desk", desk_address))),
        ("Date", format_datetime(_as_utc(delivery.received_at), usegmt=True)),
        ("Message-ID", delivery.message_id or make_msgid(domain=domain)),
        ("Subject", subject(delivery)),
        ("X-IPC-Reference", delivery.header.reference),
        ("X-IPC-Form", delivery.form),
        ("X-IPC-Partner", delivery.partner),
    )
    parts = [(FORM_FILENAME, "application/xml", delivery.form_xml)]
    parts += [(item.filename, item.media_type, item.data) for item in delivery.attachments]
    boundary = new_boundary()
    if all(_plain_part(filename, media_type) for filename, media_type, _ in parts):
        return _written(headers, body(delivery), parts, boundary)
    return _generated(headers, body(delivery), parts, boundary)


def _plain_part(filename: str, media_type: str) -> bool:
    """Whether _written writes this attachment's headers as the email package does: a file name
    of printable ASCII (no RFC 2231 encoding, not empty) and a media type of two plain tokens."""
    return (
        filename.isascii()
        and filename.isprintable()
        and filename != ""
        and _MEDIA_TYPE.fullmatch(media_type) is not None
    )


def _written(
    headers: Sequence[tuple[str, str]], text: str, parts: Sequence[Part], boundary: str
) -> bytes:
    """render's message written straight out: the bytes that _generated gives (a test holds
    the two to the same output), without a tree of parts flattened for every copy. Headers
    are folded by the very call the email package's generator makes."""
    fold = DISK_POLICY.fold_binary
    out = [
        fold("Content-Type", f'multipart/mixed; boundary="{boundary}"'),
        b"MIME-Version: 1.0\n",
        *(fold(name, value) for name, value in headers),
    ]
    out.append(b"\n--" + boundary.encode() + b"\n")
    out.append(fold("Content-Type", 'text/plain; charset="utf-8"'))
    out.append(b"MIME-Version: 1.0\nContent-Transfer-Encoding: base64\n\n")
    out.append(base64.encodebytes(text.encode("utf-8")))
    for filename, media_type, data in parts:
        out.append(b"\n--" + boundary.encode() + b"\n")
        out.append(fold("Content-Type", media_type))
        out.append(b"MIME-Version: 1.0\nContent-Transfer-Encoding: base64\n")
        out.append(fold("Content-Disposition", f'attachment; filename="{quote(filename)}"'))
        out.append(b"\n")
        out.append(base64.encodebytes(data))
    out.append(b"\n--" + boundary.encode() + b"--\n")
    return b"".join(out)


def _generated(
    headers: Sequence[tuple[str, str]], text: str, parts: Sequence[Part], boundary: str
) -> bytes:
    """render's message built with the compat32 classes and flattened by the email package."""
    message = MIMEMultipart("mixed", boundary=boundary)
    for name, value in headers:
        message[name] = value
    message.attach(MIMEText(text, "plain", "utf-8"))
    for filename, media_type, data in parts:
        maintype, _, subtype = media_type.partition("/")
        part = MIMEBase(maintype, subtype)
        part.set_payload(data)
        encoders.encode_base64(part)
        part.add_header("Content-Disposition", "attachment", filename=filename)
        message.attach(part)
    return message.as_bytes(policy=DISK_POLICY)


def body(delivery: Delivery) -> str:
    """The form as plain text: title, header summary, the form's content, the attachments."""
    fields, header_rest, content = _split(delivery.outline)
    head = delivery.header
    sender = ", ".join(filter(None, (head.sender, fields.get("Sender/Officer"))))
    recipient = ", ".join(filter(None, (head.recipient, fields.get("Recipient/Officer"))))
    priority = head.priority.upper() if head.priority == "urgent" else head.priority
    if reason := fields.get("Priority/Urgent/UrgencyReason"):
        priority += " - " + " ".join(reason.split())
    alert = head.alert
    if alert and (article := fields.get("AlertRef/@article")):
        alert += f" (article {article})"
    summary = [
        ("Reference", head.reference),
        ("Created", _utc(head.created)),
        ("Sender", sender),
        ("Recipient", recipient),
        ("Priority", priority),
        ("In reply to", head.in_reply_to),
        ("Alert", alert),
        ("Language", head.language),
        ("Reply due", _utc(delivery.reply_due) if delivery.reply_due else None),
        ("Received", _utc(delivery.received_at)),
    ]
    lines = [f"{delivery.channel.upper()} form {delivery.form}: {delivery.title}", ""]
    lines += [f"{label + ':':<13}{value}" for label, value in summary if value]
    lines += _outline_lines(header_rest)
    lines += _earlier_lines(delivery)
    lines += ["", *_outline_lines(content), "", *_attachment_lines(delivery.attachments)]
    return "\n".join(lines) + "\n"


def deliver(maildir: Path, name: str, message: bytes) -> Path:
    """Put a message into new/ once: a second call with the same name returns the first file.

    Written to tmp/ (exclusively, replacing a stale file left by a crash), fsynced, renamed into
    new/, and new/ fsynced. ENOSPC is StorageFull, any other OSError StoreUnavailable; either
    way nothing is left in new/.
    """
    return deliver_many(maildir, [(name, message)])[0]


def deliver_many(
    maildir: Path, messages: Sequence[tuple[str, bytes]], *, unseen: Collection[str] = ()
) -> list[Path]:
    """deliver for several messages of one Maildir, each (name, message), in one go: one look at
    what new/ and cur/ hold, each new one written to tmp/ and fsynced and renamed into new/, and
    new/ fsynced once for them all. Returns each message's file, in order. On an error none of
    the files this call put into new/ is left there.

    ``unseen``: names the caller knows were never delivered (no earlier attempt could have
    written them); when every name is one of them, the Maildir is not listed, a look whose cost
    grows with the desk's mailbox."""
    for name, _ in messages:
        if not _NAME.fullmatch(name) or name.startswith("."):
            raise ValueError(
                f"Maildir name {name!r}: use 1-100 of A-Z a-z 0-9 . _ -, not a leading ."
            )
    tmp, new = os.fspath(maildir / "tmp"), os.fspath(maildir / "new")
    placed: list[str] = []
    paths: list[Path] = []
    written: list[list[Any]] = []  # [fd (-1 once closed), name]: in tmp/, not yet synced
    name = ""
    try:
        _prepare(maildir)
        known_new = all(name in unseen for name, _ in messages)
        present = {} if known_new else _delivered_names(maildir)
        for start in range(0, len(messages), SYNC_GROUP):
            # A group's files are all written, then all synced, then all renamed into new/:
            # their syncs then share the file system's commits, where written, synced and
            # renamed one after another each waited for its own.
            for name, message in messages[start : start + SYNC_GROUP]:
                if (found := present.get(name)) is not None:
                    log.debug("%s already delivered to %s", name, maildir)
                    paths.append(found)
                    continue
                written.append([_write_new(Path(f"{tmp}/{name}"), message), name])
                present[name] = Path(f"{new}/{name}")
                paths.append(present[name])
            for entry in written:
                fd, name = entry
                os.fsync(fd)
                entry[0] = -1  # never close twice: the number may already be reused
                os.close(fd)
            for _, name in written:  # renamed once all are synced (see Spool._write_many)
                os.rename(f"{tmp}/{name}", f"{new}/{name}")  # noqa: PTH104 - strings, per message
                placed.append(f"{new}/{name}")
            written.clear()
        if placed:
            fsync_dir(Path(new))
    except OSError as exc:
        for fd, unsynced in written:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(f"{tmp}/{unsynced}")  # noqa: PTH108 - as above
        for path in [f"{tmp}/{name}", *placed]:
            with contextlib.suppress(OSError):
                os.unlink(path)  # noqa: PTH108 - as above
        detail = f"cannot deliver {name} into the Maildir {maildir}: {exc.strerror or exc}"
        raise storage_error(exc, detail) from exc
    log.debug("%d delivered to %s", len(placed), maildir)
    return paths


def _as_utc(instant: datetime) -> datetime:
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def _utc(instant: datetime) -> str:
    return f"{_as_utc(instant):%Y-%m-%d %H:%M} UTC"


def _split(outline: Sequence[Row]) -> tuple[dict[str, str], list[Row], list[Row]]:
    """The Header's fields by path, its other rows, and the rest of the form below the root.

    The root row is dropped and depths are made relative to what each part is shown under.
    """
    fields: dict[str, str] = {}
    header_rest: list[Row] = []
    content: list[Row] = []
    stack: list[str] = []
    for depth, name, text in outline[1:]:
        del stack[depth - 1 :]
        stack.append(name)
        path = "/".join(stack[1:])
        if stack[0] == "Header" and depth > 1:
            if path in _SUMMARISED:
                fields[path] = text
            else:
                header_rest.append((depth - 2, name, text))
        elif stack[0] != "Header":
            content.append((depth - 1, name, text))
    return fields, header_rest, content


# An element's name as a label, kept: a form's names come from its schema, and a desk copy
# asked for a dozen or two of the same ones every time (bounded: other names are made again).
_label = functools.lru_cache(maxsize=2048)(words)


def _outline_lines(rows: Iterable[Row]) -> list[str]:
    """Indented ``Label: value`` lines; an attribute joins its element's line: ``(name value)``."""
    entries: list[Row] = []
    for depth, name, text in rows:
        if name.startswith("@") and entries and entries[-1][0] == depth - 1:
            owner, label, value = entries[-1]
            entries[-1] = (owner, label, f"{value} ({_label(name[1:]).lower()} {text})".strip())
        else:
            entries.append((depth, _label(name.lstrip("@")), text))
    lines: list[str] = []
    for depth, label, value in entries:
        indent = "  " * depth
        first, *more = value.splitlines() or [""]
        lines.append(f"{indent}{label}: {first}" if value else f"{indent}{label}")
        lines += [f"{indent}  {line.strip()}" for line in more]
    return lines


def _earlier_lines(delivery: Delivery) -> list[str]:
    """The cross-check's hits, when it found any: none is said by no section."""
    if not delivery.earlier and not delivery.earlier_elsewhere:
        return []
    lines = ["", "Earlier exchanges:"]
    lines += [f"  {hit}" for hit in delivery.earlier]
    if count := delivery.earlier_elsewhere:
        lines.append(
            f"  {'and ' if delivery.earlier else ''}{count} on other desks"
            " (not described here: a supervisor sees them)"
        )
    if delivery.earlier_capped:
        lines.append("  (the most recent only: a search finds any others)")
    return lines


def _attachment_lines(attachments: Sequence[Attachment]) -> list[str]:
    lines = [f"Attachments: {len(attachments) or 'none'}"]
    for item in attachments:
        lines.append(f"  {item.filename} ({item.media_type}, {len(item.data):,} bytes)")
        lines.append(f"    SHA-256 {item.sha256}")
    return lines


def _prepare(maildir: Path) -> None:
    """tmp/, new/ and cur/ with mode 0700, each new directory entry made durable."""
    if not maildir.is_dir():
        maildir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fsync_dir(maildir.parent)
    missing = [maildir / sub for sub in ("tmp", "new", "cur") if not (maildir / sub).is_dir()]
    for folder in missing:
        folder.mkdir(mode=0o700, exist_ok=True)
    if missing:
        fsync_dir(maildir)


def _delivered_names(maildir: Path) -> dict[str, Path]:
    """What is delivered already, by name: ``name`` in new/, or ``name:2,FLAGS`` in cur/ (a
    reader moved and flagged it). One scan of each folder, whatever the number of messages."""
    found: dict[str, Path] = {}
    for folder in ("new", "cur"):
        with os.scandir(maildir / folder) as entries:
            for entry in entries:
                found.setdefault(entry.name.split(":", 1)[0], Path(entry.path))
    return found


def _write_new(path: Path, data: bytes) -> int:
    """``data`` written to a new file at ``path``; its descriptor, open, for the caller to sync
    and close."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:  # left by a delivery of this same message that crashed
        path.unlink()
        fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return fd
