"""Pipeline.accept under Hypothesis: mutated sealed messages, random MIME structures, forms
mutated before sealing. The only outcomes allowed: Accepted, or a 5xx GatewayError that left
one "rejected" audit line (partner, digest of the raw message) and nothing in spool or ledger.

A real gateway's parts (gpg homes, SQLite ledger, spool, validator), without its SMTP server:
the input reaches the pipeline as aiosmtpd hands it over. The examples are the same on every
run; GATEWAY_FUZZ=long runs many more (tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import gpgkit
import pytest
from dbkit import upgraded
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from integration.inboundkit import (
    FORM,
    World,
    gateway_config,
    gateway_fingerprint,
    ledger_messages,
    message,
    spooled,
)

from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.core.config import BUILTIN_FORMS
from gateway.core.errors import ConflictingReference, GatewayError
from gateway.inbound.pipeline import Accepted
from gateway.service.server import Gateway
from gateway.service.services import open_services

PARTNER = "NO-SIRENE"
FORM_Q = (
    (BUILTIN_FORMS / "samples" / "Q" / "valid-stolen-passport-misused.xml")
    .read_bytes()
    .replace(b"CZ-SIRENE", b"NO-SIRENE")
    .replace(b"CZ-2026-", b"NO-2026-")
)


def fuzz(share: float) -> settings:
    """The profile's settings with ``share`` of its examples (tests/conftest.py)."""
    return settings(
        max_examples=max(int(share * settings().max_examples), 1),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def intake(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway's intake, not listening: Pipeline.accept is called as the SMTP handler does."""
    folder = tmp_path_factory.mktemp("fuzz")
    config = configuration.load(gateway_config(world, folder))
    upgraded(config.database_url)
    clock = FakeClock(datetime(2026, 11, 25, 12, tzinfo=UTC))
    with open_services(config, clock=clock) as services:
        built = Gateway(services)
        yield built
        for pool in (built.executor, built.background, built.outbox_worker):
            pool.shutdown(wait=True)


def detached(world: World, form: bytes) -> bytes:
    """Signed first (RFC 3156 multipart/signed), then encrypted without a signature."""
    content = gpgkit.entity(form)
    signature = gpgkit.sign_detached(world.no.home, world.no.fingerprint, content)
    ciphertext = gpgkit.sign_encrypt(
        world.no.home,
        [],
        [gateway_fingerprint(world)],
        gpgkit.multipart_signed(content, signature),
    )
    return gpgkit.pgp_mime(ciphertext, world.no.address, "sirene@ro.example", "SIRENE G")


@pytest.fixture(scope="module")
def sealed(world: World, intake: Gateway) -> list[bytes]:
    """A handful of messages sealed once, each accepted as it is: what the mutations start from."""
    bases = [
        message(world, FORM),
        message(world, FORM_Q),
        detached(world, FORM.replace(b"NO-2026-000123", b"NO-2026-000900")),
    ]
    bases.append(bases[0].replace(b"\r\n", b"\n"))  # LF only, as a careless client sends
    for raw in bases:
        assert isinstance(intake.pipeline.accept(world.no.address, raw), Accepted)
    return bases


@dataclass(frozen=True)
class Snapshot:
    spool: list[str]
    ledger: list[tuple[str, str, str]]
    audit: int


def snapshot(intake: Gateway) -> Snapshot:
    return Snapshot(spooled(intake), ledger_messages(intake), len(intake.audit.entries()))


def accept_or_refuse(world: World, intake: Gateway, raw: bytes) -> None:
    """Run the pipeline on ``raw`` and hold it to the only outcomes allowed."""
    before = snapshot(intake)
    try:
        accepted = intake.pipeline.accept(world.no.address, raw)
    except GatewayError as error:
        event(f"{error.enhanced} {type(error).__name__}")
        reply = f"{error.smtp_code} {error.enhanced} {type(error).__name__}: {error}"
        assert 500 <= error.smtp_code < 600, f"a refusal of the input must be 5xx: {reply}"
        after = snapshot(intake)
        assert after.spool == before.spool, reply
        assert after.ledger == before.ledger, reply
        added = intake.audit.entries()[before.audit :]
        rejected = [entry for entry in added if entry.kind == "rejected"]
        assert len(rejected) == 1, reply
        assert (rejected[0].partner, rejected[0].digest) == (PARTNER, sha256(raw))
        assert rejected[0].reason == f"{error.enhanced} {type(error).__name__}"
        others = [entry.kind for entry in added if entry.kind != "rejected"]
        expected = ["alert.conflict"] if isinstance(error, ConflictingReference) else []
        assert others == expected, reply
        return
    event("duplicate" if accepted.duplicate else "accepted")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------- (a) mutated messages

ARMORED = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----\r?\n?", re.S)
BOUNDARY = re.compile(rb'boundary="([^"]+)"')
BOUNDARY_CHANGES = [b"", b"x", b"b" * 71, b"\xc3\xa9", b"outer-ipc", b"a b", b'"', b"--"]
SNIPPETS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"--",
    b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: message/delivery-status\r\n\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"=?utf-8?b?w6k=?=",
    b"\x00",
    b"\xff\xfe",
    b"-----BEGIN PGP MESSAGE-----\r\n",
]


def _armored(raw: bytes) -> re.Match[bytes] | None:
    return ARMORED.search(raw)


@st.composite
def mutation(draw: st.DrawFn, raw: bytes) -> bytes:
    """One change to ``raw``: the bytes, its lines, its headers, its boundaries, its nesting,
    its line ends, or the OpenPGP packets inside a still valid armor."""
    kind = draw(
        st.sampled_from(
            [
                "flip",
                "insert",
                "delete",
                "duplicate-line",
                "repeat-header",
                "boundary",
                "nest",
                "line-ends",
                "truncate",
                "packet",
            ]
        )
    )
    at = draw(st.integers(0, max(len(raw) - 1, 0)))
    if kind == "flip" and raw:
        return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    if kind == "insert":
        piece = draw(st.one_of(st.sampled_from(SNIPPETS), st.binary(min_size=1, max_size=64)))
        return raw[:at] + piece + raw[at:]
    if kind == "delete":
        return raw[:at] + raw[at + draw(st.integers(1, 200)) :]
    lines = raw.splitlines(keepends=True)
    if kind == "duplicate-line" and lines:
        index = draw(st.integers(0, len(lines) - 1))
        return b"".join(lines[: index + 1] + lines[index:])
    if kind == "repeat-header":
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        field = draw(st.sampled_from(head)) + b"\r\n"
        return field * draw(st.integers(1, 120)) + raw
    if kind == "boundary":
        found = BOUNDARY.search(raw)
        if found is not None:
            new = draw(st.sampled_from(BOUNDARY_CHANGES))
            count = draw(st.sampled_from([1, -1]))
            return raw.replace(found.group(1), new, count)
    if kind == "nest":
        levels = draw(st.integers(1, 12))
        kind_of = draw(st.sampled_from([b"multipart/mixed", b"message/rfc822"]))
        for level in range(levels):
            if kind_of == b"message/rfc822":
                raw = b"Content-Type: message/rfc822\r\n\r\n" + raw
            else:
                boundary = b"n%d" % level
                raw = (b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--') + (
                    boundary + b"\r\n" + raw + b"\r\n--" + boundary + b"--\r\n"
                )
        return raw
    if kind == "line-ends":
        end = draw(st.sampled_from([b"\n", b"\r", b"\r\r\n", b"\n\r"]))
        return raw.replace(b"\r\n", end, draw(st.sampled_from([1, 5, -1])))
    if kind == "truncate":
        return raw[:at]
    armored = _armored(raw)
    if kind == "packet" and armored is not None:
        try:
            binary_length = len(gpgkit.dearmor(armored.group(0)))
        except ValueError:  # an earlier mutation broke the armor (binascii.Error is one)
            return raw
        if binary_length == 0:
            return raw
        position = draw(st.integers(0, binary_length - 1))
        flipped = gpgkit.flip_byte(armored.group(0), position).replace(b"\n", b"\r\n")
        return raw[: armored.start()] + flipped + raw[armored.end() :]
    return raw


@st.composite
def mutated(draw: st.DrawFn, bases: list[bytes]) -> bytes:
    raw = draw(st.sampled_from(bases))
    for _ in range(draw(st.integers(1, 4))):
        raw = draw(mutation(raw))
    return raw


def test_mutated_sealed_messages(world: World, intake: Gateway, sealed: list[bytes]) -> None:
    @fuzz(2)
    @given(raw=mutated(sealed))
    def check(raw: bytes) -> None:
        accept_or_refuse(world, intake, raw)

    check()


# ---------------------------------------------------------------------- (b) random MIME


BCHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-./:=? "
LEAF_TYPES = [
    "application/pgp-encrypted",
    "application/octet-stream",
    "application/xml",
    "text/plain",
    "application/pgp-signature",
]


@st.composite
def mime_tree(draw: st.DrawFn, ciphertext: bytes, depth: int = 0) -> list[bytes]:
    """The lines of a random entity: multiparts (of any subtype, multipart/encrypted among
    them), message/rfc822, leaves with random headers and bodies, the real ciphertext or a
    Version line where PGP/MIME puts them."""
    containers = ["multipart/mixed", "multipart/encrypted", "multipart/signed", "message/rfc822"]
    kind = draw(st.sampled_from(containers + LEAF_TYPES if depth < 4 else LEAF_TYPES))
    boundary = draw(
        st.one_of(st.sampled_from(["b", "a", "=_x", "b--"]), st.text(BCHARS, max_size=75))
    )
    headers = [b"Content-Type: " + kind.encode()]
    if kind.startswith("multipart/"):
        headers[0] += b'; boundary="' + boundary.encode() + b'"'
        if kind == "multipart/encrypted":
            headers[0] += b'; protocol="application/pgp-encrypted"'
    headers += draw(
        st.lists(
            st.one_of(
                st.sampled_from([b"Content-Transfer-Encoding: base64", b"X-A: 1", b" folded"]),
                st.binary(max_size=40).map(lambda value: b"X-Random: " + value),
            ),
            max_size=3,
        )
    )
    lines = [*headers, b""]
    if kind.startswith("multipart/"):
        for _ in range(draw(st.integers(0, 4))):
            lines.append(b"--" + boundary.encode() + draw(st.sampled_from([b"", b"  "])))
            lines += draw(mime_tree(ciphertext, depth + 1))
        if draw(st.booleans()):
            lines.append(b"--" + boundary.encode() + b"--")
    elif kind == "message/rfc822":
        lines += draw(mime_tree(ciphertext, depth + 1))
    elif kind == "application/octet-stream" and draw(st.booleans()):
        lines += ciphertext.splitlines()
    elif kind == "application/pgp-encrypted":
        lines.append(b"Version: 1")
    else:
        lines += draw(st.binary(max_size=200)).splitlines()
    return lines


@st.composite
def random_message(draw: st.DrawFn, ciphertext: bytes) -> bytes:
    envelope = [b"From: sirene@no.example", b"To: sirene@ro.example", b"MIME-Version: 1.0"]
    if draw(st.booleans()):
        return _joined(draw, envelope + draw(mime_tree(ciphertext)))
    # PGP/MIME's shape, each of its parts either right or a random tree, parts added or lost
    boundary = draw(st.sampled_from([b"b", b"=_x", b"outer-ipc-test-boundary-0123456789"]))
    control = [b"Content-Type: application/pgp-encrypted", b"", b"Version: 1"]
    body = [b"Content-Type: application/octet-stream", b"", *ciphertext.splitlines()]
    parts = [
        control if draw(st.booleans()) else draw(mime_tree(ciphertext, 3)),
        body if draw(st.integers(0, 3)) else draw(mime_tree(ciphertext, 3)),
        *draw(st.lists(mime_tree(ciphertext, 3), max_size=1)),
    ]
    lines = [
        *envelope,
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";',
        b' boundary="' + boundary + b'"',
        b"",
    ]
    for part in parts:
        lines += [b"--" + boundary, *part]
    lines.append(b"--" + boundary + b"--")
    return _joined(draw, lines)


def _joined(draw: st.DrawFn, lines: list[bytes]) -> bytes:
    """The lines with line ends of every kind: mostly CRLF."""
    ends = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"])
    return b"".join(line + draw(ends) for line in lines)


def test_random_mime_structures(world: World, intake: Gateway, sealed: list[bytes]) -> None:
    found = _armored(sealed[0])
    assert found is not None
    ciphertext = found.group(0)

    @fuzz(1)
    @given(raw=random_message(ciphertext))
    def check(raw: bytes) -> None:
        accept_or_refuse(world, intake, raw)

    check()


# ---------------------------------------------------------------------- (c) mutated forms

XML_SNIPPETS = [
    b'<!DOCTYPE FormG [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    b"&e;",
    b"&amp;",
    b"<![CDATA[x]]>",
    b"<x>" * 300,
    b"</Header>",
    b"<Reference>NO-2026-999999</Reference>",
    b"<Sender><Bureau>RS-NCB</Bureau></Sender>",
    b'<?xml version="1.0" encoding="UTF-16"?>',
    b'xmlns:x="http://example.invalid/"',
    b"\x00",
    b"\xff\xfe",
    b"\xc3",
    b"\r\n",
]


@st.composite
def mutated_form(draw: st.DrawFn) -> bytes:
    form = draw(st.sampled_from([FORM, FORM_Q]))
    # most forms get a Reference of their own, so that the XML stage is what decides
    reference = draw(st.integers(1, 99_999))
    if draw(st.integers(0, 4)):
        form = re.sub(rb"NO-2026-\d+", b"NO-2026-%06d" % reference, form, count=1)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(form) - 1))
        change = draw(st.sampled_from(["flip", "insert", "delete", "text"]))
        if change == "flip":
            form = form[:at] + bytes([form[at] ^ draw(st.integers(1, 255))]) + form[at + 1 :]
        elif change == "insert":
            piece = draw(st.one_of(st.sampled_from(XML_SNIPPETS), st.binary(max_size=32)))
            form = form[:at] + piece + form[at:]
        elif change == "delete":
            form = form[:at] + form[at + draw(st.integers(1, 80)) :]
        else:
            texts = list(re.finditer(rb">([^<>]+)<", form))
            target = draw(st.sampled_from(texts)) if texts else None
            if target is not None:
                value = draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")
                form = form[: target.start(1)] + value + form[target.end(1) :]
    return form


def test_forms_mutated_before_sealing(world: World, intake: Gateway, sealed: list[bytes]) -> None:
    @fuzz(0.5)
    @given(form=mutated_form())
    def check(form: bytes) -> None:
        accept_or_refuse(world, intake, message(world, form))

    check()


# ---------------------------------------------------------------------- inputs found by fuzzing
