"""Files sent with a form (multipart/form-data) for the compose page and the API's send: the
parts read by Starlette (python-multipart spools each file to disk past 1 MiB; the BodyLimit
counts the request's bytes as they arrive), each file's name, size and count checked against the
configuration's limits before its bytes are read, then taken as Attachments."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from gateway.core.config import Config
from gateway.crypto.pgpmime import Attachment
from gateway.service import attaching
from gateway.service.attaching import UploadLimits

FIELD = "attachment"  # the name of the parts that carry files


@dataclass(frozen=True)
class Received:
    """A multipart request: its text fields and the files of its ``attachment`` parts."""

    fields: dict[str, str]
    files: tuple[UploadFile, ...]
    others: dict[str, UploadFile]  # parts with a file that are not ``attachment``, by name


def limits_of(config: Config) -> UploadLimits:
    return attaching.upload_limits(config)


async def parse(request: Request, limits: UploadLimits, *, max_field: int) -> Received:
    """The request's form, read once (Starlette keeps it for later reads of request.form()):
    a text field over ``max_field`` bytes or more files than allowed, 400."""
    form: FormData = await request.form(max_files=limits.files + 1, max_part_size=max_field)
    fields: dict[str, str] = {}
    files: list[UploadFile] = []
    others: dict[str, UploadFile] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(name, value)
        elif name != FIELD:
            others.setdefault(name, value)
        elif value.filename or (value.size or 0) > 0:  # an empty file input sends an empty part
            files.append(value)
    return Received(fields, tuple(files), others)


async def taken(files: tuple[UploadFile, ...], limits: UploadLimits) -> tuple[Attachment, ...]:
    """The files as Attachments (name, media type as sent, bytes), checked first:
    attaching.UploadRefused names every one that cannot be attached, none of them read."""
    attaching.check_uploads([(item.filename or "", item.size or 0) for item in files], limits)
    found = []
    for item in files:
        await item.seek(0)
        data = await item.read(limits.per_file + 1)
        if len(data) > limits.per_file:  # pragma: no cover - size came from these bytes
            raise attaching.UploadRefused([f"file {item.filename!r} is too large"], too_large=True)
        found.append(
            Attachment(
                item.filename or "",
                attaching.media_type_of(item.content_type),
                data,
            )
        )
    return tuple(found)


async def read_part(item: UploadFile, most: int) -> bytes | None:
    """A part sent as a file, up to ``most`` bytes; None when it is larger."""
    if (item.size or 0) > most:
        return None
    await item.seek(0)
    data = await item.read(most + 1)
    return data if len(data) <= most else None


async def close(received: Received) -> None:
    for item in (*received.files, *received.others.values()):
        await item.close()
