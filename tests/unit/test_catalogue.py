"""Meta-tests of the form catalogue: every form has a schema that compiles, a policy, and samples
that validate exactly as they declare."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.config import BUILTIN_FORMS
from gateway.forms import FormCatalogue, load_form
from gateway.xmlforms import FormValidator

SAMPLES = BUILTIN_FORMS / "samples"
FORM_FILES = sorted(BUILTIN_FORMS.glob("*.toml"))
CATALOGUE = (
    "A",
    "F",
    "G",
    "H",
    "I",
    "J",
    "M",
    "Q",
    "EU-RFI",
    "EU-INFO",
    "IP-MSG",
    "IP-DIFF",
    "IP-NOTICE",
    "IP-QUERY",
    "IP-QUERY-RESULT",
    "ACK",
)


def _samples(kind: str) -> list[Path]:
    return sorted(SAMPLES.glob(f"*/{kind}-*.xml"))


def _expected(sample: Path) -> list[dict[str, object]]:
    declared = tomllib.loads((sample.parent / "expected.toml").read_text("utf-8"))
    assert sample.name in declared, f"{sample} declares no expected errors in expected.toml"
    errors: list[dict[str, object]] = declared[sample.name]["errors"]
    return errors


def test_every_form_of_the_catalogue_is_defined(catalogue: FormCatalogue) -> None:
    assert sorted(form.code for form in catalogue) == sorted(CATALOGUE)


@pytest.mark.parametrize("path", FORM_FILES, ids=lambda path: path.stem)
def test_form_has_samples(path: Path) -> None:
    form = load_form(path)
    folder = SAMPLES / form.code
    assert len(list(folder.glob("valid-*.xml"))) >= 2, f"{form.code}: fewer than 2 valid samples"
    assert len(list(folder.glob("invalid-*.xml"))) >= 3, (
        f"{form.code}: fewer than 3 invalid samples"
    )
    declared = tomllib.loads((folder / "expected.toml").read_text("utf-8"))
    for name in declared:
        assert (folder / name).is_file(), f"{folder}/expected.toml names a missing sample {name}"


@pytest.mark.parametrize("path", FORM_FILES, ids=lambda path: path.stem)
def test_reply_policy_is_complete(path: Path, catalogue: FormCatalogue) -> None:
    form = load_form(path)
    if form.reply.expected:
        assert form.reply.deadlines, f"{form.code} expects a reply but has no deadline"
        for answer in form.reply.answered_by:
            assert catalogue.get(answer).channel in (form.channel, "any")


@pytest.mark.parametrize(
    "sample", _samples("valid"), ids=lambda path: f"{path.parent.name}/{path.name}"
)
def test_valid_sample_is_valid(sample: Path, validator: FormValidator) -> None:
    result = validator.validate(sample.read_bytes())
    assert result.errors == ()
    assert result.form is not None and result.form.code == sample.parent.name
    header = result.header()
    assert header.reference and header.sender and header.recipient


@pytest.mark.parametrize(
    "sample", _samples("valid"), ids=lambda path: f"{path.parent.name}/{path.name}"
)
def test_both_engines_accept_valid_sample(sample: Path, validator: FormValidator) -> None:
    """xmlschema, which explains rejections, agrees with lxml, which decides them."""
    result = validator.validate(sample.read_bytes())
    entry = validator._by_root[result.root or ""]
    assert list(entry.explainer().iter_errors(str(sample))) == []


@pytest.mark.parametrize(
    "sample", _samples("invalid"), ids=lambda path: f"{path.parent.name}/{path.name}"
)
def test_invalid_sample_fails_as_declared(sample: Path, validator: FormValidator) -> None:
    expected = _expected(sample)
    result = validator.validate(sample.read_bytes())
    assert not result.valid
    got = [(error.line, error.path, error.reason) for error in result.errors]
    assert len(got) == len(expected), f"{sample.name}: got {got}"
    for (line, path, reason), want in zip(got, expected, strict=True):
        assert (line, path) == (want["line"], want["path"]), f"{sample.name}: got {got}"
        assert str(want["reason"]) in reason, f"{sample.name}: got {got}"
