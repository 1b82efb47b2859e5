"""Entities read from validated forms (real XSDs, the built-in samples) and their folding."""

from __future__ import annotations

import pytest

from gateway.core import config as configuration
from gateway.forms.entities import Entity
from gateway.forms.setup import load_validator
from gateway.forms.xmlforms import FormValidator
from gateway.search import folding, index

SAMPLES = configuration.BUILTIN_FORMS / "samples"


@pytest.fixture(scope="module")
def validator() -> FormValidator:
    return load_validator(None)


def read(validator: FormValidator, sample: str, *changes: tuple[bytes, bytes]) -> list[Entity]:
    data = (SAMPLES / sample).read_bytes()
    for old, new in changes:
        assert old in data
        data = data.replace(old, new)
    validation = validator.validate(data)
    validation.raise_for_errors()
    return validation.entities()


def test_a_person_with_aliases_a_document_and_references(validator: FormValidator) -> None:
    assert read(validator, "A/valid-eaw-prosecution.xml") == [
        Entity("person", "name", "Test EXAMPLE", "1980-01-01", "RO", "Person"),
        Entity("person", "alias", "Testo SAMPLE", "1980-01-01", "RO", "Person"),
        Entity("person", "alias", "EXEMPLU", "1980-01-01", "RO", "Person"),
        Entity("document", "passport", "X0000000", None, "RO", "IdentityDocument"),
        Entity("reference", "sis-alert", "RO0000000000123456", element="AlertRef"),
        Entity("reference", "national-case", "0000/0/2026", element="NationalReference"),
    ]


def test_the_original_script_name_is_valid_and_read(validator: FormValidator) -> None:
    given = b"<GivenName>Test</GivenName>"
    original = "<OriginalScriptName>Тест Пример</OriginalScriptName>".encode()
    found = read(validator, "G/valid-person-arrested.xml", (given, given + original))
    assert Entity("person", "original-script", "Тест Пример", "1980-01-01", "RO", "Person") in found


def test_vehicles_firearms_and_other_objects(validator: FormValidator) -> None:
    seized = read(validator, "G/valid-vehicle-seized.xml")
    assert [(e.kind, e.role, e.value) for e in seized][:2] == [
        ("vehicle", "vin", "WVWZZZ1JZXW000001"),
        ("vehicle", "plate", "AB-12-CD"),
    ]
    assert read(validator, "IP-MSG/valid-information-firearm.xml")[0] == Entity(
        "firearm", "serial", "EXA000123", element="Firearm"
    )
    assert [e.value for e in read(validator, "IP-QUERY/valid-banknote.xml")] == [
        "EX0000000001",
        "EX0000000002",
    ]
    assert read(validator, "IP-DIFF/valid-stolen-object.xml")[0].kind == "object"


def test_phones_and_addresses_in_text_but_no_message_id(validator: FormValidator) -> None:
    found = read(validator, "ART40-REQUEST/valid-normal-fraud.xml")
    assert ("phone", "+40 21 000 00 00") in [(e.kind, e.value) for e in found]
    assert read(validator, "ACK/valid-europol-request.xml") == []  # <id@host> is no address


def test_an_invalid_form_has_no_entities(validator: FormValidator) -> None:
    validation = validator.validate(b"<FormG xmlns='urn:ipc-gateway:sirene:1'/>")
    with pytest.raises(ValueError, match="only a valid form has entities"):
        validation.entities()


@pytest.mark.parametrize(
    ("written", "parts", "key"),
    [
        ("Jürgen MÜLLER-Lüden", ["jurgen", "muller", "luden"], "iurgen luden muler"),
        ("Mueller, Hans", ["mueller", "hans"], "hans muler"),
        ("Иванов Иван", ["ivanov", "ivan"], "ivan ivanov"),
        ("Iwanow Iwan", ["iwanow", "iwan"], "ivan ivanov"),
        ("Novák", ["novak"], "novak"),
        ("Nowak", ["nowak"], "novak"),
        ("Νίκος", ["nikos"], "nikos"),
        ("H4ns Mül1er", ["h4ns", "muller"], "h4ns muler"),
    ],
)
def test_names_fold_to_parts_and_keys(written: str, parts: list[str], key: str) -> None:
    assert folding.name_parts(written) == parts
    assert folding.name_key(parts) == key


def test_identifiers_fold_spaces_dashes_and_confusable_letters() -> None:
    assert folding.identifier("ab-12 cd") == "AB12CD"
    assert folding.identifier("XO1I 23") == folding.identifier("X0 1-1-23") == "X01123"
    assert folding.phone("+47 (22) 00-00") == "47220000"
    assert folding.email(" Ivan.Ivanov@Example.ORG ") == "ivan.ivanov@example.org"
    assert index.fold("document", "ab 123-456") == ("AB123456", "AB123456")
    assert index.index_rows([Entity("document", "passport", " - ")]) == []  # nothing to find
