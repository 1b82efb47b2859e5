"""Which attachments are shown inline (a raster photo by its media type AND its first bytes,
never an SVG nor a file disguised as a photo), what type every other file goes out with, and the
RFC 6266 Content-Disposition that names it safely."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from webkit import png

from gateway.crypto.pgpmime import Attachment
from gateway.service import attachments

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00" + b"\x00" * 16
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 16
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
HTML = b"<html><script>alert(1)</script></html>"


@pytest.mark.parametrize(
    ("media_type", "data"),
    [("image/png", png()), ("image/jpeg", JPEG), ("image/gif", GIF), ("image/webp", WEBP)],
)
def test_a_photo_whose_type_and_bytes_agree_is_shown_inline_with_its_type(
    media_type: str, data: bytes
) -> None:
    item = Attachment("photo", media_type, data)
    assert attachments.is_photo(item)
    out = attachments.served(item, 1)
    assert out.inline and out.media_type == media_type and out.data == data
    assert out.disposition == 'inline; filename="photo"'
    as_file = attachments.served(item, 1, inline_photos=False)
    assert not as_file.inline and as_file.media_type == media_type
    assert as_file.disposition.startswith("attachment;")


@pytest.mark.parametrize(
    ("media_type", "data"),
    [
        ("image/svg+xml", SVG),  # never inline, whatever it holds
        ("image/png", HTML),  # HTML disguised as a PNG
        ("image/png", SVG),
        ("image/jpeg", png()),  # a real photo under another photo's type
        ("image/png", b""),
        ("text/html", HTML),
        ("application/pdf", b"%PDF-1.7\n"),
        ("application/octet-stream", png()),  # a PNG not declared as one
        ("image/bmp", b"BM" + b"\x00" * 30),
    ],
)
def test_anything_else_is_a_download_of_octet_stream(media_type: str, data: bytes) -> None:
    item = Attachment("file.png", media_type, data)
    assert not attachments.is_photo(item)
    out = attachments.served(item, 2)
    assert not out.inline and out.media_type == "application/octet-stream"
    assert out.disposition == 'attachment; filename="file.png"'


@pytest.mark.parametrize(
    ("name", "plain"),
    [
        ('a "quoted"; name=x.pdf', "a _quoted__ name_x.pdf"),
        ("Fotografie ștefan.jpg", "Fotografie _tefan.jpg"),
        ("../../etc/passwd", "etcpasswd"),
        ("..\\boot.ini", "boot.ini"),
        ("line\r\nSet-Cookie: x=1", "lineSet-Cookie_ x_1"),
        ("文件.pdf", "__.pdf"),
    ],
)
def test_the_file_name_is_plain_ascii_and_given_whole_in_filename_star(
    name: str, plain: str
) -> None:
    header = attachments.disposition(name, 3, inline=False)
    assert all(32 <= ord(c) < 127 for c in header)
    whole = "".join(c for c in name if c.isprintable() and c not in "/\\").lstrip(". ")
    if plain == whole:  # nothing to add: a path's separators are simply dropped
        assert header == f'attachment; filename="{plain}"'
    else:
        assert header.startswith(f"attachment; filename=\"{plain}\"; filename*=UTF-8''")
        assert unquote(header.split("filename*=UTF-8''", 1)[1]) == whole


def test_a_name_of_nothing_usable_becomes_the_part_code() -> None:
    assert attachments.disposition("...", 4, inline=True) == 'inline; filename="attachment-4"'
    assert attachments.disposition("\x00\x01", 5, inline=False) == (
        'attachment; filename="attachment-5"'
    )


def test_attachments_are_numbered_from_one_and_picked_by_number() -> None:
    files = (Attachment("a.png", "image/png", png()), Attachment("b.txt", "text/plain", b"hi"))
    listed = attachments.listed(files)
    assert [(i.number, i.part, i.photo, i.size) for i in listed] == [
        (1, "attachment-1", True, len(png())),
        (2, "attachment-2", False, 2),
    ]
    assert listed[1].sha256 == files[1].sha256
    assert attachments.pick(files, 2) is files[1]
    for number in (0, 3, -1):
        with pytest.raises(attachments.NoSuchAttachment):
            attachments.pick(files, number)
