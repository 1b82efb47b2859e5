"""Hostile and broken documents: each refused with a clear error, touching no file or network."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from lxml import etree

from gateway.core.config import BUILTIN_FORMS
from gateway.core.errors import InvalidForm
from gateway.core.limits import XmlLimits
from gateway.forms.catalogue import FormCatalogue
from gateway.forms.xmlforms import FormValidator, _hardened_parser

VALID_G = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()
SIRENE = "urn:ipc-gateway:sirene:1"


class _Recorder(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = b"<secret>from the network</secret>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request: proof that nothing was fetched."""
    hits: list[str] = []
    handler = type("Recorder", (_Recorder,), {"hits": hits})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-MARKER")
    return path


def _reasons(validator: FormValidator, data: bytes) -> str:
    result = validator.validate(data)
    assert not result.valid
    assert result.errors, "an invalid document must say why"
    text = " | ".join(str(error) for error in result.errors)
    assert "TOP-SECRET-MARKER" not in text and "from the network" not in text
    return text


def test_valid_form(validator: FormValidator) -> None:
    result = validator.validate(VALID_G)
    assert result.valid and result.form is not None and result.form.code == "G"
    assert result.header().priority == "urgent"


def test_not_xml(validator: FormValidator) -> None:
    assert "not well-formed XML" in _reasons(validator, b"this is not XML at all")


def test_truncated_xml(validator: FormValidator) -> None:
    assert "not well-formed XML" in _reasons(validator, VALID_G[: len(VALID_G) // 2])


@pytest.mark.parametrize("data", [b"", b"   \n\t  "])
def test_empty(validator: FormValidator, data: bytes) -> None:
    assert "empty document" in _reasons(validator, data)


def test_unknown_root(validator: FormValidator) -> None:
    text = _reasons(validator, b'<Shopping xmlns="urn:example:list"><Item/></Shopping>')
    assert "unknown root element {urn:example:list}Shopping" in text


def test_wrong_namespace(validator: FormValidator) -> None:
    data = VALID_G.replace(SIRENE.encode(), b"urn:ipc-gateway:sirene:2")
    text = _reasons(validator, data)
    assert "unknown root element {urn:ipc-gateway:sirene:2}FormG" in text
    assert f"did you mean {{{SIRENE}}}FormG" in text


def test_no_namespace(validator: FormValidator) -> None:
    data = VALID_G.replace(f' xmlns="{SIRENE}"'.encode(), b"")
    assert "unknown root element FormG" in _reasons(validator, data)


def test_xxe_local_file(validator: FormValidator, secret_file: Path) -> None:
    data = (
        f'<?xml version="1.0"?><!DOCTYPE FormG [<!ENTITY x SYSTEM "file://{secret_file}">]>'
        f'<FormG xmlns="{SIRENE}">&x;</FormG>'
    ).encode()
    assert "DOCTYPE and ENTITY declarations are not allowed" in _reasons(validator, data)


def test_xxe_network(validator: FormValidator, web: tuple[str, list[str]]) -> None:
    url, hits = web
    data = (
        f'<!DOCTYPE FormG [<!ENTITY x SYSTEM "{url}/xxe">]><FormG xmlns="{SIRENE}">&x;</FormG>'
    ).encode()
    assert "DOCTYPE" in _reasons(validator, data)
    data = f'<!DOCTYPE FormG SYSTEM "{url}/dtd"><FormG xmlns="{SIRENE}"/>'.encode()
    assert "DOCTYPE" in _reasons(validator, data)
    assert hits == []


def test_parser_itself_resolves_nothing(secret_file: Path, web: tuple[str, list[str]]) -> None:
    """Defence in depth: even past the DOCTYPE refusal, the parser loads no external entity,
    general or parameter, from a file or from the network."""
    url, hits = web
    data = (
        f'<!DOCTYPE r [<!ENTITY f SYSTEM "file://{secret_file}"><!ENTITY n SYSTEM "{url}/n">'
        f'<!ENTITY % p SYSTEM "{url}/p"> %p;]><r>&f;&n;</r>'
    ).encode()
    text = etree.tostring(etree.fromstring(data, _hardened_parser()), encoding="unicode")
    assert "TOP-SECRET-MARKER" not in text and "from the network" not in text
    assert hits == []


def test_billion_laughs(validator: FormValidator) -> None:
    entities = '<!ENTITY l0 "ha">' + "".join(
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    )
    data = f'<?xml version="1.0"?><!DOCTYPE FormG [{entities}]><FormG xmlns="{SIRENE}">&l9;</FormG>'
    assert "DOCTYPE" in _reasons(validator, data.encode())


def test_quadratic_blowup(validator: FormValidator) -> None:
    big = "A" * 50_000
    data = f'<!DOCTYPE FormG [<!ENTITY a "{big}">]><FormG xmlns="{SIRENE}">{"&a;" * 10_000}</FormG>'
    assert "DOCTYPE" in _reasons(replace_limits(validator, max_bytes=64 << 20), data.encode())


def test_plain_doctype(validator: FormValidator) -> None:
    data = VALID_G.replace(b"<FormG", b"<!DOCTYPE FormG>\n<FormG", 1)
    text = _reasons(validator, data)
    assert text.startswith("2: /: DOCTYPE")


def test_entity_without_doctype(validator: FormValidator) -> None:
    assert "ENTITY" in _reasons(validator, b'<!ENTITY x "y"><FormG xmlns="urn:x"/>')


def test_text_node_over_limit(validator: FormValidator) -> None:
    strict = replace_limits(validator, max_text_bytes=1024)
    data = VALID_G.replace(b"Person arrested", b"Person arrested " + b"x" * 2000)
    text = _reasons(strict, data)
    assert "/FormG/Hit/ActionTaken: text over the limit of 1024 bytes" in text


def test_attribute_over_text_limit(validator: FormValidator) -> None:
    strict = replace_limits(validator, max_text_bytes=1024)
    data = VALID_G.replace(b'article="26"', b'article="' + b"2" * 2000 + b'"')
    assert "/FormG/Header/AlertRef: text over the limit" in _reasons(strict, data)


def test_nesting_over_depth_limit(validator: FormValidator) -> None:
    deep = b"<Deep>" * 40 + b"x" + b"</Deep>" * 40
    data = VALID_G.replace(b"<ActionTaken>", deep + b"<ActionTaken>")
    text = _reasons(validator, data)
    assert "elements nested deeper than the limit of 32" in text


def test_nesting_beyond_the_parser_limit(validator: FormValidator) -> None:
    deep = b"<a>" * 5000 + b"</a>" * 5000
    assert "not well-formed XML" in _reasons(
        validator, f'<FormG xmlns="{SIRENE}">'.encode() + deep + b"</FormG>"
    )


def test_document_over_size_limit(validator: FormValidator) -> None:
    strict = replace_limits(validator, max_bytes=1024)
    assert f"{len(VALID_G)} bytes, over the limit of 1024" in _reasons(strict, VALID_G)


@pytest.mark.parametrize("declared", ["UTF-16", "ISO-8859-1", "windows-1252", "ascii"])
def test_encoding_declaration_that_lies(validator: FormValidator, declared: str) -> None:
    data = VALID_G.replace(b'encoding="UTF-8"', f'encoding="{declared}"'.encode())
    assert f"the XML declaration says encoding '{declared}'; forms must be UTF-8" in _reasons(
        validator, data
    )


def test_declared_utf8_but_latin1_bytes(validator: FormValidator) -> None:
    data = VALID_G.replace(b"Test", "Tést".encode("latin-1"))
    assert "not valid UTF-8" in _reasons(validator, data)


def test_utf16_document(validator: FormValidator) -> None:
    data = VALID_G.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert "byte order mark" in _reasons(validator, data)


def test_utf8_bom_is_accepted(validator: FormValidator) -> None:
    assert validator.validate(b"\xef\xbb\xbf" + VALID_G).valid


def test_schema_location_hints_are_ignored(
    validator: FormValidator, web: tuple[str, list[str]], secret_file: Path
) -> None:
    url, hits = web
    hint = (
        f' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        f' xsi:schemaLocation="{SIRENE} {url}/evil.xsd"'
    )
    data = VALID_G.replace(f'xmlns="{SIRENE}"'.encode(), f'xmlns="{SIRENE}"{hint}'.encode())
    assert validator.validate(data).valid
    bad = data.replace(b"NO-2026-000123", b"bad")
    assert not validator.validate(bad).valid
    assert hits == []


def test_xinclude_is_not_processed(validator: FormValidator, secret_file: Path) -> None:
    include = (
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{secret_file}" '
        'parse="text"/>'
    )
    data = VALID_G.replace(b"<ActionTaken>", b"<ActionTaken>" + include.encode())
    _reasons(validator, data)


def test_errors_are_capped_but_counted(validator: FormValidator) -> None:
    strict = replace_limits(validator, max_errors=2)
    data = VALID_G.replace(b"<Sex>M</Sex>", b"<Sex>M</Sex>" + b"<Junk/>" * 5).replace(
        b"NO-2026-000123", b"nope"
    )
    result = strict.validate(data)
    assert len(result.errors) == 2
    assert result.error_count > 2


def test_raise_for_errors_carries_the_smtp_meaning(validator: FormValidator) -> None:
    result = validator.validate(VALID_G.replace(b"NO-2026-000123", b"nope"))
    with pytest.raises(InvalidForm) as caught:
        result.raise_for_errors()
    assert caught.value.smtp_reply().startswith("550 5.6.0 5: /FormG/Header/Reference:")


def test_deadline_values_come_from_the_document(
    catalogue: FormCatalogue, validator: FormValidator
) -> None:
    result = validator.validate(VALID_G)
    assert result.values(["Hit/Place/Country", "Hit/Missing"]) == {"Hit/Place/Country": "NO"}


def replace_limits(validator: FormValidator, **changes: int) -> FormValidator:
    return validator.with_limits(replace(validator.limits, **changes))


def test_limits_defaults_are_sane() -> None:
    limits = XmlLimits()
    assert limits.max_text_bytes < limits.max_bytes
    assert limits.max_depth >= 16
