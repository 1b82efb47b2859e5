"""The hardening of form parsing at its edges: each limit at and one past its value, every foreign
byte order mark, the UTF-8 spellings, where a refusal points, and the parser's own options."""

from __future__ import annotations

import codecs
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.core.config import BUILTIN_FORMS
from gateway.forms.xmlforms import FormValidator, _hardened_parser, _SetResolver

VALID_G = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()
SIRENE = "urn:ipc-gateway:sirene:1"
ACTION = (
    b"<ActionTaken>Person arrested on the basis of the European Arrest Warrant and held in custody."
    b"</ActionTaken>"
)


def limited(validator: FormValidator, **changes: int) -> FormValidator:
    return validator.with_limits(replace(validator.limits, **changes))


def reasons(validator: FormValidator, data: bytes) -> list[str]:
    return [str(error) for error in validator.validate(data).errors]


def with_action(text: bytes) -> bytes:
    assert ACTION in VALID_G
    return VALID_G.replace(ACTION, b"<ActionTaken>" + text + b"</ActionTaken>")


def line_of(data: bytes, part: bytes) -> int:
    return data[: data.index(part)].count(b"\n") + 1


# ------------------------------------------------------------------------ size


def test_a_document_of_exactly_the_size_limit_is_read(validator: FormValidator) -> None:
    assert limited(validator, max_bytes=len(VALID_G)).validate(VALID_G).valid
    assert reasons(limited(validator, max_bytes=len(VALID_G) - 1), VALID_G) == [
        f"/: document is {len(VALID_G)} bytes, over the limit of {len(VALID_G) - 1}"
    ]


def test_text_of_exactly_the_text_limit_passes_the_limit(validator: FormValidator) -> None:
    text = b"Person arrested " + b"x" * 984
    strict = limited(validator, max_text_bytes=len(text))
    assert strict.validate(with_action(text)).valid
    line = line_of(VALID_G, ACTION)
    assert reasons(strict, with_action(text + b"x")) == [
        f"{line}: /FormG/Hit/ActionTaken: text over the limit of {len(text)} bytes"
    ]


def test_the_text_limit_counts_bytes_not_characters(validator: FormValidator) -> None:
    text = "Persoană arestată ".encode() + "ă".encode() * 500  # 2 bytes a character
    strict = limited(validator, max_text_bytes=len(text.decode()) + 10)
    assert "text over the limit" in " ".join(reasons(strict, with_action(text)))


def test_text_between_elements_counts_too(validator: FormValidator) -> None:
    strict = limited(validator, max_text_bytes=1024)
    data = VALID_G.replace(ACTION, ACTION + b"y" * 2000)
    assert reasons(strict, data)[0].endswith(
        "/FormG/Hit/ActionTaken: text over the limit of 1024 bytes"
    )


def test_a_text_node_over_libxml2s_own_limit(validator: FormValidator) -> None:
    """10 MB in one text node is refused by the parser itself (no huge_tree), before the text
    limit or the schema look at it."""
    roomy = limited(validator, max_bytes=12 << 20, max_text_bytes=11 << 20)
    found = reasons(roomy, with_action(b"x" * 10_000_001))
    assert len(found) == 1 and "not well-formed XML" in found[0]
    assert "Text node too long" in found[0]


# ------------------------------------------------------------------------ depth


def nested(levels: int) -> bytes:
    """The sample with a chain of ``levels`` unknown elements inside ActionTaken's parent."""
    chain = b"<Deep>" * levels + b"x" + b"</Deep>" * levels
    return VALID_G.replace(ACTION, chain + ACTION)


def test_depth_at_the_limit_and_one_past_it(validator: FormValidator) -> None:
    """FormG/Hit/Deep...: the chain starts at depth 3 (the root is 1), so six make 8 levels.
    Both are invalid forms; only the deeper one is refused for its depth, at the element that
    passes the limit."""
    at_limit = reasons(limited(validator, max_depth=8), nested(6))
    assert not any("nested deeper" in reason for reason in at_limit)
    past = reasons(limited(validator, max_depth=8), nested(7))
    assert past == [
        f"{line_of(VALID_G, ACTION)}: /FormG/Hit/Deep/Deep/Deep/Deep/Deep/Deep/Deep: "
        "elements nested deeper than the limit of 8"
    ]


def test_nesting_past_libxml2s_own_depth_limit(validator: FormValidator) -> None:
    """libxml2 stops at 256 levels without huge_tree (2048 with it)."""
    deep = b"<a>" * 1000 + b"</a>" * 1000
    found = reasons(validator, f'<FormG xmlns="{SIRENE}">'.encode() + deep + b"</FormG>")
    assert len(found) == 1 and "not well-formed XML" in found[0]
    assert "Excessive depth" in found[0]


# ------------------------------------------------------------------------ encodings


@pytest.mark.parametrize(
    "bom",
    [codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE],
    ids=["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"],
)
def test_every_foreign_byte_order_mark(validator: FormValidator, bom: bytes) -> None:
    codec = {
        codecs.BOM_UTF16_LE: "utf-16-le",
        codecs.BOM_UTF16_BE: "utf-16-be",
        codecs.BOM_UTF32_LE: "utf-32-le",
        codecs.BOM_UTF32_BE: "utf-32-be",
    }[bom]
    data = bom + VALID_G.decode().replace('encoding="UTF-8"', "").encode(codec)
    assert reasons(validator, data) == [
        "1: /: forms must be encoded in UTF-8 (found a UTF-16/32 byte order mark)"
    ]


@pytest.mark.parametrize("spelling", ["UTF-8", "utf-8", "utf8", "Utf8"])
def test_utf8_by_any_spelling(validator: FormValidator, spelling: str) -> None:
    data = VALID_G.replace(b'encoding="UTF-8"', f"encoding='{spelling}'".encode())
    assert validator.validate(data).valid


def test_a_foreign_encoding_after_a_utf8_bom(validator: FormValidator) -> None:
    data = b"\xef\xbb\xbf" + VALID_G.replace(b'encoding="UTF-8"', b'encoding = "latin1"')
    assert reasons(validator, data) == [
        "1: /: the XML declaration says encoding 'latin1'; forms must be UTF-8"
    ]


def test_bytes_that_are_not_utf8_are_named_with_their_line(validator: FormValidator) -> None:
    data = VALID_G.replace(b"Person arrested", b"Person arr\xe9sted")
    at, line = data.index(b"\xe9"), line_of(data, b"\xe9")
    assert reasons(validator, data) == [
        f"{line}: /: not valid UTF-8 at byte {at}; forms must be UTF-8"
    ]


# ------------------------------------------------------------------------ DTDs and entities


@pytest.mark.parametrize("data", [b"", b"   \n\t  "])
def test_an_empty_document_is_named_so(validator: FormValidator, data: bytes) -> None:
    assert reasons(validator, data) == ["/: empty document"]


def test_lines_are_counted_from_the_first_byte(validator: FormValidator) -> None:
    """A document that starts with a line break: its first line is line 1, the next line 2."""
    doctype = b'\n<!DOCTYPE FormG><FormG xmlns="' + SIRENE.encode() + b'"/>'
    assert reasons(validator, doctype)[0].startswith("2: /: DOCTYPE")
    latin1 = b'\n<FormG xmlns="' + SIRENE.encode() + b'">\xe9</FormG>'
    assert reasons(validator, latin1)[0].startswith("2: /: not valid UTF-8")


def test_a_doctype_at_the_very_start(validator: FormValidator) -> None:
    data = b'<!DOCTYPE FormG><FormG xmlns="' + SIRENE.encode() + b'"/>'
    assert reasons(validator, data) == [
        "1: /: DOCTYPE and ENTITY declarations are not allowed in forms (no DTDs, no entities)"
    ]


def test_an_entity_declaration_is_placed_on_its_line(validator: FormValidator) -> None:
    data = VALID_G.replace(ACTION, b'\n\n<!ENTITY x "y">' + ACTION)
    line = line_of(data, b"<!ENTITY")
    assert reasons(validator, data)[0].startswith(f"{line}: /: DOCTYPE and ENTITY")


class _Recording(etree.Resolver):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def resolve(self, url: str, pubid: str | None, context: Any) -> Any:
        self.asked.append(url)
        return self.resolve_string("<!ENTITY e 'from the DTD'>", context)


def test_the_parser_loads_no_external_dtd(tmp_path: Path) -> None:
    """Past the byte check, the parser still never asks for a DTD or an external entity."""
    dtd = tmp_path / "form.dtd"
    dtd.write_text("<!ENTITY e 'from the DTD'>")
    resolver = _Recording()
    root = etree.fromstring(
        f'<!DOCTYPE r SYSTEM "{dtd}"><r>&e;</r>'.encode(), _hardened_parser(resolver)
    )
    assert resolver.asked == []
    assert "from the DTD" not in etree.tostring(root, encoding="unicode")


def test_the_parser_validates_against_no_dtd() -> None:
    root = etree.fromstring(b"<r><undeclared/></r>", _hardened_parser())
    assert root[0].tag == "undeclared"


def test_a_document_that_is_not_well_formed_is_placed_on_its_line(
    validator: FormValidator,
) -> None:
    data = VALID_G.replace(b"<Country>NO</Country>", b"<Country>NO</Countri>")
    found = reasons(validator, data)
    assert len(found) == 1
    assert found[0].startswith(f"{line_of(data, b'</Countri>')}: /: not well-formed XML: ")


def test_the_first_declaration_is_the_one_named(validator: FormValidator) -> None:
    """A DOCTYPE at byte 0 whose ENTITY declarations follow on later lines, and the same words
    again in a comment further down: the refusal points at line 1."""
    data = b"<!DOCTYPE FormG [\n<!ENTITY a 'x'>\n]>\n" + VALID_G.replace(
        ACTION, ACTION + b"\n<!-- <!DOCTYPE <!ENTITY -->"
    )
    assert reasons(validator, data)[0].startswith("1: /: DOCTYPE and ENTITY")
    entity_twice = VALID_G.replace(ACTION, b'<!ENTITY x "y">\n<!ENTITY z "w">' + ACTION)
    line = line_of(entity_twice, b"<!ENTITY")
    assert reasons(validator, entity_twice)[0].startswith(f"{line}: /: DOCTYPE and ENTITY")


# ------------------------------------------------------------------------ what a refusal names


def test_a_refused_form_still_names_its_root_and_form(validator: FormValidator) -> None:
    """The pipeline names the form of a refused document (audit line, desk notice)."""
    tag = f"{{{SIRENE}}}FormG"
    for refused in (
        limited(validator, max_text_bytes=1024).validate(with_action(b"x" * 2000)),
        limited(validator, max_depth=8).validate(nested(7)),
        validator.validate(VALID_G.replace(b"NO-2026-000123", b"nope")),
    ):
        assert not refused.valid
        assert refused.root == tag
        assert refused.form is not None and refused.form.code == "G"
    unknown = validator.validate(b'<Shopping xmlns="urn:example:list"/>')
    assert (unknown.root, unknown.form) == ("{urn:example:list}Shopping", None)


# ------------------------------------------------------------------------ what a schema may load


def test_the_schema_resolver_maps_only_local_files_of_the_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """file:// URLs and paths inside the set's folder; never a network URL, even one that would
    read as a relative path from the working folder (the set's own folder here)."""
    monkeypatch.chdir(tmp_path)
    resolver = _SetResolver(None, [tmp_path])
    inside = tmp_path / "common.xsd"
    assert resolver.local_path(f"file://{inside}") == inside
    assert resolver.local_path(str(inside)) == inside
    assert resolver.local_path("http://example.org/common.xsd") is None
    assert resolver.local_path(f"file://{tmp_path.parent / 'elsewhere.xsd'}") is None
