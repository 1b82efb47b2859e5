"""Meta-tests of the form catalogue: every form has a schema that compiles, a policy, and samples
that validate exactly as they declare."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from lxml import etree

from gateway.core import config as configuration
from gateway.core.config import BUILTIN_FORMS
from gateway.core.errors import ConfigError
from gateway.core.limits import XmlLimits
from gateway.forms.catalogue import FormCatalogue, load_form
from gateway.forms.xmlforms import FormValidator

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
    "REFUSAL",
    "CLARIFICATION",
    "CLARIFICATION-ANSWER",
    "ART40-REQUEST",
    "ART40-URGENT",
    "ART41-NOTICE",
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


def _schema_depths() -> dict[str, int]:
    """The deepest instance each built-in root element allows, by walking the schemas' types.

    Types are keyed by local name across all files (a conservative merge), so a cycle anywhere
    shows up as a RecursionError rather than passing unnoticed.
    """
    xs = "{http://www.w3.org/2001/XMLSchema}"
    types: dict[str, list[etree._Element]] = {}
    roots: dict[str, etree._Element] = {}
    for path in sorted(configuration.BUILTIN_XSD.glob("**/*.xsd")):
        schema = etree.parse(str(path)).getroot()
        for definition in schema.iterchildren(f"{xs}complexType", f"{xs}simpleType"):
            types.setdefault(definition.get("name"), []).append(definition)
        for element in schema.iterchildren(f"{xs}element"):
            roots[element.get("name")] = element

    def local(name: str | None) -> str:
        return (name or "").rpartition(":")[2]

    def depth_of_type(name: str, seen: tuple[str, ...]) -> int:
        if name in seen:
            raise RecursionError(" -> ".join((*seen, name)))
        return max((depth_of_content(d, (*seen, name)) for d in types.get(name, [])), default=0)

    def depth_of_content(node: etree._Element, seen: tuple[str, ...]) -> int:
        deepest = 0
        for child in node.iterdescendants(f"{xs}element", f"{xs}extension", f"{xs}restriction"):
            if child.tag == f"{xs}element" and child.getparent() is not None:
                # an element one level down: its own type, inline or named
                inline = 1 + max(
                    (depth_of_content(c, seen) for c in child.iterchildren(f"{xs}complexType")),
                    default=0,
                )
                named = 1 + depth_of_type(local(child.get("type")), seen)
                deepest = max(deepest, inline, named)
            elif child.get("base"):
                deepest = max(deepest, depth_of_type(local(child.get("base")), seen))
        return deepest

    return {name: 1 + depth_of_content(element, ()) for name, element in roots.items()}


def test_builtin_schemas_bound_the_depth() -> None:
    """The built-in set is marked bounded_depth: no type contains itself, and no valid form is
    deeper than the default depth limit, so valid forms can skip the depth check."""
    schema_sets, _ = configuration.builtin_schema_sets()
    assert schema_sets[0].bounded_depth
    depths = _schema_depths()
    assert len(depths) >= 16
    assert max(depths.values()) <= XmlLimits().max_depth, depths


def test_only_the_request_for_clarification_pauses(catalogue: FormCatalogue) -> None:
    assert [form.code for form in catalogue if form.reply.pauses] == ["CLARIFICATION"]
    clarification = catalogue.get("CLARIFICATION")
    assert clarification.channel == "any"
    assert clarification.reply.answered_by == ("CLARIFICATION-ANSWER",)
    # Every form that answers a request of another bureau names the refusal among its answers.
    for code in ("I", "J", "EU-RFI", "IP-MSG", "IP-QUERY", "ART40-REQUEST", "ART40-URGENT"):
        assert "REFUSAL" in catalogue.get(code).reply.answered_by, code


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("expected = false\npauses = true", "answered_by, deadline rules and pauses need expected"),
        ("expected = true\npauses = 1", "pauses"),
    ],
)
def test_a_policy_that_pauses_without_a_reply_is_refused(
    tmp_path: Path, reply: str, reason: str
) -> None:
    path = tmp_path / "ASK.toml"
    path.write_text(
        'code = "ASK"\nchannel = "any"\ntitle = "Ask"\nschema = "answer.xsd"\n'
        f'root = "{{urn:ipc-gateway:answer:1}}ClarificationRequest"\n\n[reply]\n{reply}\n'
    )
    with pytest.raises(ConfigError, match=reason) as refused:
        load_form(path)
    assert "ASK.toml" in str(refused.value)
