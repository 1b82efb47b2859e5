"""A received message's attachments as the console and the API hand them out: one by its number
(1, 2, ...: a file name from abroad never goes into a URL), shown inline only when it is a raster
photo whose media type and first bytes agree, every other file a download of a safe type, and the
RFC 6266 Content-Disposition that names it without letting its name break the header."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from gateway.access.accesslog import Access, AccessLog, Purpose, Seen
from gateway.access.roles import Role
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
