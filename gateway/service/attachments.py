"""A received message's attachments as the console and the API hand them out: one by its number
(1, 2, ...: a file name from abroad never goes into a URL), shown inline only when it is a raster
photo whose media type and first bytes agree, every other file a download of a safe type, and the
RFC 6266 Content-Disposition that names it without letting its name break the header."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from gateway.access.accesslog import Access, AccessLog, Purpose, Seen
from gateway.access.roles import Role
from gateway.core.config import Config
from gateway.crypto.pgpmime import Attachment
from gateway.service import received
from gateway.service.services import Services
from gateway.store.ledger import MessageRow


def _jpeg(head: bytes) -> bool:
    return head.startswith(b"\xff\xd8\xff")


def _png(head: bytes) -> bool:
    return head.startswith(b"\x89PNG\r\n\x1a\n")


def _gif(head: bytes) -> bool:
    return head[:6] in (b"GIF87a", b"GIF89a")


def _webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


# The photos a browser may show inline: media type -> does this start of a file match it.
PHOTOS: dict[str, Callable[[bytes], bool]] = {
    "image/jpeg": _jpeg,
    "image/png": _png,
    "image/gif": _gif,
    "image/webp": _webp,
}
DOWNLOAD_TYPE = "application/octet-stream"
_PLAIN_NAME_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+ ()"
)
_LONGEST_NAME = 120


# A form lists at most so many attachments (the Attachment elements' maxOccurs in xsd/).
MAX_FILES = 20
# Room for a multipart request's own parts (headers, boundaries, a compose page's fields).
MULTIPART_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class UploadLimits:
    """What a handler may attach to a form in the console or the API."""

    per_file: int
    total: int
    files: int
    body: int  # the most a multipart request that carries them may be


def upload_limits(config: Config) -> UploadLimits:
    """The limits from the configuration's message size: a sealed message grows about 1.8 times
    (base64 inside, ASCII armor outside), so the files together may be half of
    ``smtp.listen.max_message_bytes``: with the form, the message then stays within what a
    gateway with the same limit accepts. One file may take all of it."""
    total = config.listen.max_message_bytes // 2
    return UploadLimits(
        per_file=total,
        total=total,
        files=MAX_FILES,
        body=total + config.xml.max_bytes + MULTIPART_OVERHEAD,
    )


class UploadRefused(Exception):
    """Files that cannot be attached, each reason a line for the sender (413 when too large)."""

    def __init__(self, reasons: list[str], *, too_large: bool) -> None:
        super().__init__("\n".join(reasons))
        self.reasons = reasons
        self.too_large = too_large


# A file name a form's Attachment list can hold (xsd/common.xsd FileName) and a media type.
_FILE_NAME = re.compile(r"[^./\\:\x00-\x1f\x7f-\x9f][^/\\:\x00-\x1f\x7f-\x9f]{0,199}")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+\-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+\-]{0,126}")


def media_type_of(given: str | None) -> str:
    """The media type a sender gave a file (its parameters left out), application/octet-stream
    when it gave none or one a form cannot list."""
    kind = (given or "").split(";", 1)[0].strip().lower()
    return kind if _MEDIA_TYPE.fullmatch(kind) else DOWNLOAD_TYPE


def check_uploads(files: list[tuple[str, int]], limits: UploadLimits) -> None:
    """Files given as (name, size) before their bytes are read: UploadRefused naming every one
    that cannot be attached (a name a form cannot list, too large alone or together, too
    many)."""
    reasons: list[str] = []
    too_large = False
    if len(files) > limits.files:
        reasons.append(f"{len(files)} files: a form lists at most {limits.files}")
    for name, size in files:
        if _FILE_NAME.fullmatch(name) is None:
            reasons.append(
                f"file {name!r}: a file name of 1 to 200 characters, not starting with a dot, "
                "without / \\ : or control characters"
            )
        if size > limits.per_file:
            too_large = True
            reasons.append(f"file {name!r} is {size} bytes: at most {limits.per_file} a file")
    total = sum(size for _, size in files)
    if total > limits.total:
        too_large = True
        reasons.append(f"the files are {total} bytes together: at most {limits.total}")
    if reasons:
        raise UploadRefused(reasons, too_large=too_large)


class NoSuchAttachment(Exception):
    """The message has no attachment of that number."""


@dataclass(frozen=True)
class Listed:
    """An attachment as the message view and the API list it (its name is data from abroad)."""

    number: int  # 1-based, its part code "attachment-N" and its URL's last step
    filename: str
    media_type: str
    size: int
    sha256: str
    photo: bool  # shown inline

    @property
    def part(self) -> str:
        return part_code(self.number)


@dataclass(frozen=True)
class Served:
    """What goes out for one attachment: the bytes and the headers they go with."""

    data: bytes
    media_type: str
    disposition: str
    inline: bool


def part_code(number: int) -> str:
    return f"attachment-{int(number)}"


def is_photo(attachment: Attachment) -> bool:
    """A raster photo (JPEG, PNG, GIF, WebP) by its media type AND its magic bytes: an SVG, or
    HTML sent as image/png, is not one."""
    check = PHOTOS.get(attachment.media_type.strip().lower())
    return check is not None and check(attachment.data[:16])


def listed(attachments: tuple[Attachment, ...]) -> list[Listed]:
    return [
        Listed(
            number=number,
            filename=item.filename,
            media_type=item.media_type,
            size=len(item.data),
            sha256=item.sha256,
            photo=is_photo(item),
        )
        for number, item in enumerate(attachments, 1)
    ]


def pick(attachments: tuple[Attachment, ...], number: int) -> Attachment:
    """The attachment of that number (1-based); NoSuchAttachment when there is none."""
    if not 1 <= number <= len(attachments):
        raise NoSuchAttachment(f"no attachment {number}")
    return attachments[number - 1]


def served(attachment: Attachment, number: int, *, inline_photos: bool = True) -> Served:
    """How ``attachment`` goes out: a photo inline with its own type (when ``inline_photos``),
    anything else (or a photo asked for as a file) as a download; a download of a photo keeps
    its checked type, every other file is application/octet-stream."""
    photo = is_photo(attachment)
    inline = photo and inline_photos
    kind = attachment.media_type.strip().lower() if photo else DOWNLOAD_TYPE
    return Served(
        data=attachment.data,
        media_type=kind,
        disposition=disposition(attachment.filename, number, inline=inline),
        inline=inline,
    )


def disposition(filename: str, number: int, *, inline: bool) -> str:
    """An RFC 6266 Content-Disposition: a plain ASCII ``filename`` (other characters as "_")
    and, when the name is more than that, its UTF-8 form in ``filename*`` (percent-encoded)."""
    kind = "inline" if inline else "attachment"
    name = "".join(c for c in filename if c.isprintable() and c not in "/\\")
    name = name.lstrip(". ")[:_LONGEST_NAME].rstrip() or part_code(number)
    plain = "".join(c if c in _PLAIN_NAME_CHARS else "_" for c in name)
    header = f'{kind}; filename="{plain}"'
    if plain != name:
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


def hand_out(
    services: Services,
    access_log: AccessLog,
    row: MessageRow,
    number: int,
    *,
    user: str,
    role: Role,
    purpose: Purpose,
    inline_photos: bool = True,
) -> Served:
    """Attachment ``number`` of the received message ``row``, read from its spooled copy and
    checked again, then recorded in the access log (a view when it is shown inline, a download
    otherwise) before it is given: nothing is recorded for a file that cannot be given, and
    nothing is given that was not recorded. received.NotReadable, NoSuchAttachment."""
    attachment = pick(received.delivery_of(services, row).attachments, number)
    out = served(attachment, number, inline_photos=inline_photos)
    with services.ledger.transaction() as tx:
        access_log.record_view(
            tx,
            user,
            role,
            Seen(
                row.id,
                partner=row.partner,
                form=row.form,
                reference=row.reference,
                part=part_code(number),
            ),
            purpose,
            kind=Access.VIEW if out.inline else Access.DOWNLOAD,
        )
    return out
