"""RFC 3156 PGP/MIME: build and take apart multipart/encrypted messages and the entities inside."""

from __future__ import annotations

import email
import email.policy
import hashlib
import itertools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.utils import formatdate, make_msgid
from typing import Any

from gateway.core.errors import NotPgpMime
from gateway.crypto import mimetree

ARMOR_BEGIN = b"-----BEGIN PGP MESSAGE-----"
SIGNATURE_BEGIN = b"-----BEGIN PGP SIGNATURE-----"
FORM_FILENAME = "form.xml"


class _PlainHeaders(email.policy.Compat32):
    """compat32 that folds a header of plain printable ASCII (single spaces, none at either end)
    itself, into the very lines email.header.Header gives it (a short one as it is): the desk
    copy's Subject folded through Header was a tenth of the hand-off's Python. Anything less
    plain is folded by compat32 itself; tests hold the two equal on random values."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if (
            isinstance(value, str)
            and value.isascii()
            and value.isprintable()
            and "=?" not in value
            and "  " not in value
            and value == value.strip()
        ):
            limit = self.max_line_length or 78
            if len(name) + 2 + len(value) <= limit:
                return f"{name}: {value}{self.linesep}"
            folded = _folded_as_header(len(name) + 2, value, self.max_line_length or 1_000_000)
            return f"{name}: {self.linesep.join(folded)}{self.linesep}"
        return str(super()._fold(name, value, sanitize))  # type: ignore[misc]


_SPLIT_AFTER = (";", ",")  # email.header's preferred split points before a space, in order


def _folded_as_header(first: int, value: str, limit: int) -> list[str]:
    """The lines of ``value`` (printable ASCII, single spaces, none at either end) as
    email.header.Header.encode (compat32, splitchars ``;, \t``) folds them after a header name
    of ``first - 2`` characters: words are added to the line until it is longer than ``limit``;
    then it is split before the last word that follows a ``;``, else a ``,``, else before the
    word just added; a word alone too long for the first line goes to a line of its own."""
    lines: list[str] = []
    line: list[str] = []  # the words of the line being filled, each after the first line's
    size = first  # first one with the space before it
    for bare in value.split(" "):
        word = " " + bare if line or lines else bare
        line.append(word)
        size += len(word)
        if size <= limit:
            continue
        if len(line) == 1:
            if not lines and first > 0:  # the header's name is left on its line
                lines.append("")
                line = [word if word[0] == " " else " " + word]
                size = len(line[0])
            continue
        cut = len(line) - 1
        for mark in _SPLIT_AFTER:
            found = next((i for i in range(len(line) - 1, 0, -1) if line[i - 1][-1] == mark), 0)
            if found:
                cut = found
                break
        lines.append("".join(line[:cut]))
        line = line[cut:]
        size = sum(len(part) for part in line)
    lines.append("".join(line))
    return lines


WRITE_POLICY = _PlainHeaders(linesep="\r\n")
"""How messages are written here (CRLF, compat32 headers); desks.py writes with it too."""
_WRITE = WRITE_POLICY
_SAFE_HEADER = re.compile(r"[\x20-\x7e]*")
_CHANNEL_NAMES = {"sirene": "SIRENE", "europol": "EUROPOL", "interpol": "INTERPOL", "any": "IPC"}


def new_boundary() -> str:
    """A multipart boundary for the messages written here, whose parts are base64 or armored
    text: "_" is in neither alphabet, so no line of a part can hold the boundary, and the email
    package need not search every part for it (a regular expression compiled per message)."""
    return f"=_{secrets.token_hex(16)}"


@dataclass(frozen=True)
class Attachment:
    filename: str
    media_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Payload:
    """What a message carries once opened: the form and its attachments."""

    form: bytes
    attachments: tuple[Attachment, ...]


@dataclass(frozen=True)
class Envelope:
    """The outer headers: routing only, nothing personal."""

    sender: str
    recipient: str
    subject: str
    message_id: str
    date: str


def subject(channel: str, form_code: str, reference: str) -> str:
    """The outer Subject: channel, form code and Reference only: ``SIRENE G RO-2026-000123``."""
    return f"{_CHANNEL_NAMES.get(channel, channel.upper())} {form_code} {reference}"


def new_envelope(sender: str, recipient: str, subject_line: str, domain: str) -> Envelope:
    return Envelope(
        sender=sender,
        recipient=recipient,
        subject=subject_line,
        message_id=make_msgid(domain=domain),
        date=formatdate(usegmt=True),
    )


def build_entity(form: bytes, attachments: Sequence[Attachment] = ()) -> bytes:
    """The MIME entity that gets signed and encrypted: multipart/mixed, form.xml first, in CRLF."""
    entity = EmailMessage(policy=email.policy.SMTP)
    entity.make_mixed()
    entity.add_attachment(
        form,
        maintype="application",
        subtype="xml",
        filename=FORM_FILENAME,
        params={"charset": "utf-8"},
    )
    for attachment in attachments:
        maintype, _, subtype = attachment.media_type.partition("/")
        entity.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return entity.as_bytes(policy=email.policy.SMTP)


def wrap_encrypted(ciphertext: bytes, envelope: Envelope) -> bytes:
    """The outer multipart/encrypted message around an armored OpenPGP message (RFC 3156 s4)."""
    if not ciphertext.lstrip().startswith(ARMOR_BEGIN):
        raise ValueError("the ciphertext must be ASCII-armored")
    for value in (envelope.sender, envelope.recipient, envelope.subject, envelope.message_id):
        if not _SAFE_HEADER.fullmatch(value):
            raise ValueError("header values must be printable ASCII without CR or LF")
    boundary = new_boundary()
    headers = (
        ("From", envelope.sender),
        ("To", envelope.recipient),
        ("Date", envelope.date),
        ("Message-ID", envelope.message_id),
        ("Subject", envelope.subject),
    )
    if ciphertext.isascii() and all(_plain_header(name, value) for name, value in headers):
        return _written_encrypted(ciphertext, headers, boundary)
    return _generated_encrypted(ciphertext, envelope, boundary)


def _plain_header(name: str, value: str) -> bool:
    """Whether WRITE_POLICY writes this header as it is, on one line (see _PlainHeaders)."""
    return (
        value.isascii()
        and value.isprintable()
        and len(name) + 2 + len(value) <= 78
        and "=?" not in value
        and "  " not in value
        and value == value.strip()
    )


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _written_encrypted(
    ciphertext: bytes, headers: tuple[tuple[str, str], ...], boundary: str
) -> bytes:
    """wrap_encrypted's message written straight out: the bytes the email package writes with
    WRITE_POLICY when every header is plain (a test holds the two to the same output), without
    building and flattening a tree of parts for every message sent."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    opening = (
        'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n'
        f' boundary="{boundary}"\r\nMIME-Version: 1.0\r\n{head}\r\n'
        f"--{boundary}\r\n"
        "Content-Type: application/pgp-encrypted\r\nMIME-Version: 1.0\r\n"
        "Content-Description: PGP/MIME version identification\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\nVersion: 1\r\n\r\n"
        f"--{boundary}\r\n"
        'Content-Type: application/octet-stream; name="encrypted.asc"\r\nMIME-Version: 1.0\r\n'
        "Content-Description: OpenPGP encrypted message\r\n"
        'Content-Disposition: inline; filename="encrypted.asc"\r\n'
        "Content-Transfer-Encoding: 7bit\r\n\r\n"
    )
    closing = f"\r\n--{boundary}--\r\n"
    return b"".join(
        (opening.encode("ascii"), _LINE_END.sub(b"\r\n", ciphertext), closing.encode("ascii"))
    )


def _generated_encrypted(ciphertext: bytes, envelope: Envelope, boundary: str) -> bytes:
    """wrap_encrypted's message made by the email package (any header it must fold)."""
    outer = MIMEMultipart("encrypted", boundary=boundary, protocol="application/pgp-encrypted")
    outer["From"] = envelope.sender
    outer["To"] = envelope.recipient
    outer["Date"] = envelope.date
    outer["Message-ID"] = envelope.message_id
    outer["Subject"] = envelope.subject
    control = MIMEBase("application", "pgp-encrypted")
    control["Content-Description"] = "PGP/MIME version identification"
    control.set_payload("Version: 1\r\n")
    body = MIMEBase("application", "octet-stream", name="encrypted.asc")
    body["Content-Description"] = "OpenPGP encrypted message"
    body["Content-Disposition"] = 'inline; filename="encrypted.asc"'
    body.set_payload(ciphertext.decode("ascii"))
    for part in (control, body):
        part["Content-Transfer-Encoding"] = "7bit"
        outer.attach(part)
    return outer.as_bytes(policy=_WRITE)


def parse_outer(raw: bytes) -> tuple[Envelope, bytes]:
    """The envelope headers and the armored ciphertext of a PGP/MIME message; NotPgpMime if not."""
    message = mimetree.parse(raw)
    kind = message.get_content_type()
    if kind != "multipart/encrypted":
        if _contains_armor(message):
            if kind.startswith("multipart/"):
                raise NotPgpMime(
                    "cleartext parts beside encrypted data are not accepted: the whole message "
                    "must be one multipart/encrypted (RFC 3156)"
                )
            raise NotPgpMime("inline PGP is not accepted: send PGP/MIME (RFC 3156)")
        raise NotPgpMime(f"{kind} is not accepted: send PGP/MIME multipart/encrypted (RFC 3156)")
    if message.get_param("protocol") != "application/pgp-encrypted":
        raise NotPgpMime('multipart/encrypted needs protocol="application/pgp-encrypted"')
    parts = _parts(message)
    if len(parts) != 2:
        raise NotPgpMime("multipart/encrypted must have exactly two parts (RFC 3156 s4)")
    control, body = parts
    if control.get_content_type() != "application/pgp-encrypted" or b"Version: 1" not in _bytes(
        control
    ):
        raise NotPgpMime("the first part must be application/pgp-encrypted with Version: 1")
    if body.get_content_type() != "application/octet-stream":
        raise NotPgpMime("the second part must be application/octet-stream")
    ciphertext = _bytes(body).strip()
    if not ciphertext.startswith(ARMOR_BEGIN):
        raise NotPgpMime("the second part must hold an ASCII-armored OpenPGP message")
    envelope = Envelope(
        sender=str(message.get("From", "")),
        recipient=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        message_id=str(message.get("Message-ID", "")),
        date=str(message.get("Date", "")),
    )
    return envelope, ciphertext


def split_signed(entity: bytes) -> tuple[bytes, bytes] | None:
    """For a multipart/signed entity (RFC 3156 s5): the exact signed bytes and the signature.

    None when the entity is not multipart/signed. The signed part is taken byte for byte from
    between the boundaries, as the signer canonicalised it; the stdlib parser would re-encode it.
    """
    head, _, body = _split_head(entity)
    message = mimetree.parse(head + b"\r\n\r\n")
    if message.get_content_type() != "multipart/signed":
        return None
    if message.get_param("protocol") != "application/pgp-signature":
        raise NotPgpMime('multipart/signed needs protocol="application/pgp-signature"')
    boundary = message.get_boundary()
    if not boundary:
        raise NotPgpMime("multipart/signed without a boundary")
    parts = split_multipart(body, boundary.encode("ascii"))
    if len(parts) != 2:
        raise NotPgpMime("multipart/signed must have exactly two parts")
    content, signature_part = parts
    signature = mimetree.parse(signature_part)
    if signature.get_content_type() != "application/pgp-signature":
        raise NotPgpMime("the second part of multipart/signed must be application/pgp-signature")
    signature_bytes = _bytes(signature)
    if SIGNATURE_BEGIN not in signature_bytes:
        raise NotPgpMime("the signature part holds no OpenPGP signature")
    return content, signature_bytes


def parse_entity(entity: bytes) -> Payload:
    """The form and attachments of a decrypted, verified entity (multipart/mixed or bare XML)."""
    message = mimetree.parse(entity)
    kind = message.get_content_type()
    if kind in {"application/xml", "text/xml"}:
        return Payload(form=_bytes(message), attachments=())
    if kind == "multipart/report":
        return _receipt(message)
    if kind != "multipart/mixed":
        raise NotPgpMime(
            f"the signed content must be multipart/mixed or application/xml, not {kind}"
        )
    parts = _parts(message)
    if not parts or parts[0].get_content_type() not in {"application/xml", "text/xml"}:
        raise NotPgpMime("the first part of the signed content must be the form (application/xml)")
    attachments = []
    for part in parts[1:]:
        if part.is_multipart():
            raise NotPgpMime("attachments must not be multipart")
        filename = part.get_filename()
        if not filename:
            raise NotPgpMime("every attachment needs a file name")
        attachments.append(Attachment(filename, part.get_content_type(), _bytes(part)))
    return Payload(form=_bytes(parts[0]), attachments=tuple(attachments))


def _receipt(message: Message) -> Payload:
    """An RFC 8098 receipt: its form is the ACK carried as the application/xml part."""
    if message.get_param("report-type") != "disposition-notification":
        raise NotPgpMime("a multipart/report must be a disposition notification (RFC 8098)")
    forms = [part for part in _parts(message) if part.get_content_type() == "application/xml"]
    if len(forms) != 1:
        raise NotPgpMime("a receipt carries exactly one ACK form (application/xml)")
    return Payload(form=_bytes(forms[0]), attachments=())


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The raw parts of a multipart body (RFC 2046 s5.1.1), byte for byte.

    A delimiter is CRLF, "--", the boundary, optional "--" (the last one) and white space up to
    the end of its line; the CRLF before it belongs to the delimiter, not to the part.
    """
    text = b"\r\n" + body
    pattern = re.compile(rb"\r\n--" + re.escape(boundary) + rb"(?P<close>--)?[ \t]*(?=\r\n|$)")
    matches = list(pattern.finditer(text))
    closing = next((i for i, match in enumerate(matches) if match.group("close")), None)
    if closing is None:
        raise NotPgpMime("multipart body without its closing delimiter")
    return [
        text[opening.end() + 2 : following.start()]
        for opening, following in itertools.pairwise(matches[: closing + 1])
    ]


def _split_head(entity: bytes) -> tuple[bytes, bytes, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = entity.find(separator)
        if index >= 0:
            return entity[:index], separator, entity[index + len(separator) :]
    return entity, b"", b""


def _parts(message: Message) -> list[Message]:
    parts = message.get_payload()
    if not isinstance(parts, list):
        raise NotPgpMime("malformed multipart body")
    messages = [part for part in parts if isinstance(part, Message)]
    if len(messages) != len(parts):
        raise NotPgpMime("malformed multipart body")
    return messages


def _bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _contains_armor(message: Message) -> bool:
    return any(ARMOR_BEGIN in _bytes(part) for part in message.walk() if not part.is_multipart())
