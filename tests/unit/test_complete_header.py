"""FormValidator.complete_header: Created and Reference filled in where a handler left them out,
in their place in the header, and nothing else of the form touched."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from gateway.core.config import BUILTIN_FORMS
from gateway.forms.xmlforms import FormValidator

SAMPLE = (BUILTIN_FORMS / "samples" / "G" / "valid-vehicle-seized.xml").read_bytes()
CREATED = "2027-02-01T08:00:00Z"
REFERENCE = "RO-2027-000001"
HEADER_ORDER = ["Created", "Reference", "Sender", "Recipient", "AlertRef", "Priority"]


def without(data: bytes, *names: str) -> bytes:
    """The form with these header elements left out, each with the line it stood on."""
    for name in names:
        data, count = re.subn(rf"\n[ \t]*<{name}>[^<]*</{name}>".encode(), b"", data, count=1)
        assert count == 1
    return data


def complete(validator: FormValidator, data: bytes) -> bytes:
    return validator.complete_header(data, created=CREATED, reference=REFERENCE)


def header(data: bytes) -> list[tuple[str, str]]:
    """(local name, text) of the header's children, in order."""
    head = etree.fromstring(data).find("{*}Header")
    return [
        (etree.QName(child).localname, (child.text or "").strip())
        for child in head.iterchildren("{*}*")
    ]


@pytest.mark.parametrize(
    "left_out", [("Created", "Reference"), ("Reference",), ("Created",)], ids=" and ".join
)
def test_what_is_left_out_is_inserted_in_its_place(
    validator: FormValidator, left_out: tuple[str, ...]
) -> None:
    completed = complete(validator, without(SAMPLE, *left_out))
    fields = header(completed)
    assert [name for name, _ in fields][: len(HEADER_ORDER)] == HEADER_ORDER
    values = dict(fields)
    assert values["Created"] == (CREATED if "Created" in left_out else "2026-11-24T22:05:00Z")
    assert values["Reference"] == (REFERENCE if "Reference" in left_out else "RO-2026-004512")
    assert validator.validate(completed).valid
    assert etree.QName(etree.fromstring(completed).find("{*}Header/{*}Reference")).namespace == (
        "urn:ipc-gateway:sirene:1"
    )


@pytest.mark.parametrize(
    "empty",
    [b"<Created/><Reference/>", b"<Created></Created><Reference>  </Reference>"],
    ids=["self-closing", "blank"],
)
def test_empty_elements_are_filled(validator: FormValidator, empty: bytes) -> None:
    data = re.sub(
        rb"<Created>[^<]*</Created>\s*<Reference>[^<]*</Reference>", empty, SAMPLE, count=1
    )
    assert data != SAMPLE
    completed = complete(validator, data)
    assert header(completed)[:2] == [("Created", CREATED), ("Reference", REFERENCE)]
    assert validator.validate(completed).valid


def test_a_complete_header_leaves_the_document_as_it_was(validator: FormValidator) -> None:
    assert complete(validator, SAMPLE) is SAMPLE


def test_the_rest_of_the_form_is_kept(validator: FormValidator) -> None:
    completed = complete(validator, without(SAMPLE, "Reference"))
    assert "Nădlac border crossing".encode() in completed  # UTF-8 kept, not escaped
    assert b"<H3>Not to be shared with third countries.</H3>" in completed
    assert completed.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<FormG xmlns=")
    before = etree.fromstring(SAMPLE)
    after = etree.fromstring(completed)
    assert etree.tostring(after.find("{*}Hit")) == etree.tostring(before.find("{*}Hit"))
    assert etree.tostring(after.find("{*}Attachment")) == etree.tostring(
        before.find("{*}Attachment")
    )


def test_the_elements_the_handler_wrote_keep_their_lines(validator: FormValidator) -> None:
    """Validation errors name lines of the completed document: they must be the lines of the
    handler's file, or an error points at the wrong line."""
    data = without(SAMPLE, "Created", "Reference")
    completed = complete(validator, data)
    assert header(completed)[0] == ("Created", CREATED)

    def lines(document: bytes) -> dict[str, int]:
        root = etree.fromstring(document)
        return {etree.QName(e).localname: e.sourceline for e in root.iter("{*}*")}

    kept = lines(data)
    assert {name: lines(completed)[name] for name in kept} == kept


def test_a_comment_at_the_head_of_the_header_does_not_misplace_reference(
    validator: FormValidator,
) -> None:
    data = without(SAMPLE, "Reference").replace(
        b"<Header>\n", b"<Header>\n    <!-- Reference: filled in by the gateway -->\n", 1
    )
    completed = complete(validator, data)
    assert [name for name, _ in header(completed)][:3] == ["Created", "Reference", "Sender"]
    assert validator.validate(completed).valid


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not XML at all",
        SAMPLE[: len(SAMPLE) // 2],
        b'<?xml version="1.0"?>\n<!DOCTYPE FormG [<!ENTITY x "y">]>\n<FormG><Header/></FormG>',
        b"<FormG xmlns='urn:ipc-gateway:sirene:1'><Hit/></FormG>",
        b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<FormG><Header/></FormG>',
    ],
    ids=["empty", "not XML", "truncated", "DOCTYPE", "no header", "not UTF-8"],
)
def test_what_cannot_be_read_is_returned_unchanged(validator: FormValidator, data: bytes) -> None:
    assert complete(validator, data) is data


def test_a_form_without_namespace_gets_elements_without_namespace(
    validator: FormValidator,
) -> None:
    completed = complete(validator, b"<Form><Header><Sender/></Header></Form>")
    head = etree.fromstring(completed).find("Header")
    assert [(child.tag, child.text) for child in head] == [
        ("Created", CREATED),
        ("Reference", REFERENCE),
        ("Sender", None),
    ]
