"""What a handler may attach to a form it sends from the console or the API: the limits, from the
configuration's message size, and the check of the files' names, sizes and number before their
bytes are read; the media type a sender gave, or application/octet-stream."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.core.config import Config

DOWNLOAD_TYPE = "application/octet-stream"

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
