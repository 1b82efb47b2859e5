"""Schema errors worded for a handler: the built-in wording, and what a schema set from elsewhere
gets (a pattern this gateway does not know is never shown), on documents the validator refuses."""

from __future__ import annotations

import pytest

from gateway.core.config import BUILTIN_FORMS
from gateway.forms.formwording import Fault, sentence
from gateway.forms.setup import load_validator
from gateway.forms.xmlforms import FormValidator

SEIZED = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_text()


@pytest.fixture(scope="module")
def validator() -> FormValidator:
    return load_validator(None)


def reasons(validator: FormValidator, text: str) -> list[str]:
    result = validator.validate(text.encode())
    assert not result.valid
    return [f"{error.path}: {error.reason}" for error in result.errors]


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("<Hit>", '<Hit foo="1">'), "/FormG/Hit: attribute foo is not allowed here"),
        (("<Hit>", "<Hit>stray"), "/FormG/Hit: text is not allowed here, only elements"),
        ((' article="26"', ""), "/FormG/Header/AlertRef: attribute article is missing"),
        (("1980-01-01", "1980-13-01"), "'1980-13-01' is not a date: write it as YYYY-MM-DD"),
        (("2026-11-25T09:14:00+01:00", " "), "/FormG/Header/Created: must not be empty"),
        (("<Locality>", "<Locality><b>x</b>"), "only text is allowed here, no elements"),
        (
            ("<Hit>", '<Hit xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="F">'),
            "/FormG/Hit: xsi:type names F, which is not a kind this form knows",
        ),
    ],
)
def test_a_change_to_a_valid_form_is_said_plainly(
    validator: FormValidator, change: tuple[str, str], said: str
) -> None:
    old, new = change
    assert old in SEIZED
    found = reasons(validator, SEIZED.replace(old, new, 1))
    assert any(said in reason for reason in found), found


def test_an_unknown_pattern_is_named_by_its_type_never_shown() -> None:
    fault = Fault("pattern", value="AB12", type_name="CaseNumber", patterns=(r"[0-9]{2}/[A-Z]+",))
    assert sentence(fault) == "'AB12' is not in the form a case number must have"
    assert sentence(Fault("pattern", value="x", patterns=(r"\d+",))) == (
        "'x' is not in the form a value must have"
    )


def test_long_values_are_cut_and_lists_shortened() -> None:
    fault = Fault("enumeration", value="y" * 80, type_name="CountryCode", choices=("AD",) * 20)
    said = sentence(fault)
    assert said.startswith("'" + "y" * 37 + "...' is not allowed: not in the list of 20 country")
    assert said.count("AD") == 3


def test_the_samples_folder_is_the_reference() -> None:
    """Every invalid sample's expected.toml now declares the worded reasons (checked in full by
    test_catalogue); here: none of them still holds the library's phrasing."""
    for expected in (BUILTIN_FORMS / "samples").glob("*/expected.toml"):
        text = expected.read_text("utf-8")
        for leak in ("doesn't match any pattern", "Tag '", "Unexpected child", "lesser than"):
            assert leak not in text, (expected, leak)
