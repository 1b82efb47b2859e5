"""A form's fields read from its XSD, and its XML built from their values: every valid sample of
every form of the catalogue entered through the description gives back the same form, which
validates; the validator's errors land beside the fields they concern; repeated parts added and
removed; instants without an offset read in the bureau's zone."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from gateway.core.config import BUILTIN_FORMS
from gateway.forms.formbuild import added, build, removed, values_of
from gateway.forms.formfields import Choice, Descriptions, FormDescription, Group, Leaf, Node
from gateway.forms.setup import load_validator
from gateway.forms.xmlforms import FormValidator

SAMPLES = BUILTIN_FORMS / "samples"
VALIDATOR = load_validator(None)
DESCRIPTIONS = Descriptions(VALIDATOR)
VALID = sorted(
    (form.code, path)
    for form in VALIDATOR.catalogue
    for path in (SAMPLES / form.code).glob("valid-*.xml")
)


def canonical(data: bytes) -> bytes:
    """The document without the white space between elements, in canonical form."""
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    root = etree.fromstring(data, parser)
    for element in root.iter():
        if len(element) and element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    return bytes(etree.tostring(root, method="c14n"))


def find(nodes: tuple[Node, ...], path: str) -> Node:
    """A node of a description by element names (``Hit/Place/Country``), through choices."""
    name, _, rest = path.partition("/")
    for node in nodes:
        if isinstance(node, Choice):
            for option in node.options:
                try:
                    return find(option.content, path)
                except KeyError:
                    continue
        elif node.name == name:
            if not rest:
                return node
            assert isinstance(node, Group)
            return find(node.content, rest)
    raise KeyError(path)


def test_every_form_of_the_catalogue_has_a_description_with_samples() -> None:
    codes = {form.code for form in VALIDATOR.catalogue}
    assert codes == {code for code, _ in VALID}
    for code in codes:
        description = DESCRIPTIONS.get(code)
        assert isinstance(description, FormDescription)
        assert DESCRIPTIONS.get(code) is description  # read once, kept


@pytest.mark.parametrize(("code", "path"), VALID, ids=[f"{c}/{p.name}" for c, p in VALID])
def test_a_sample_entered_through_its_fields_gives_back_the_same_valid_form(
    code: str, path: Path
) -> None:
    description = DESCRIPTIONS.get(code)
    original = path.read_bytes()
    values = values_of(description, original)

    built = build(description, values)

    validation = VALIDATOR.validate(built.xml)
    assert validation.valid, [str(error) for error in validation.errors]
    assert canonical(built.xml) == canonical(original)
    assert values_of(description, built.xml) == values


def test_the_description_of_form_g_names_kinds_labels_and_bounds() -> None:
    root = DESCRIPTIONS.get("G").root
    assert root.name == "FormG"
    language = find(root.content, "Header/Language")
    assert isinstance(language, Leaf)
    assert (language.kind, language.label, language.required) == ("enumeration", "Language", True)
    assert "en" in language.choices and len(language.choices) == 184
    priority = find(root.content, "Header/Priority")
    assert isinstance(priority, Group)
    choice = priority.content[0]
    assert isinstance(choice, Choice)
    assert [option.label for option in choice.options] == ["Normal", "Urgent"]
    reason = find(root.content, "Header/Priority/Urgent/UrgencyReason")
    assert isinstance(reason, Leaf) and reason.kind == "longtext" and reason.max_length == 8000
    alert = find(root.content, "Header/AlertRef")
    assert isinstance(alert, Leaf) and alert.required and alert.pattern == "[A-Z]{2}[0-9A-Z]{8,30}"
    assert [(a.name, a.required, a.choices) for a in alert.attributes] == [
        ("@article", True, ("26", "32", "34", "36", "38", "40"))
    ]
    assert "SIS alert" in alert.help
    time = find(root.content, "Hit/Time")
    assert isinstance(time, Leaf) and time.kind == "datetime"
    born = find(root.content, "Hit/Subject/Person/DateOfBirth")
    assert isinstance(born, Leaf)
    assert (born.kind, born.label, born.required) == ("date", "Date of birth", False)
    family = find(root.content, "Hit/Subject/Person/FamilyName")
    assert isinstance(family, Leaf)
    assert (family.min_occurs, family.max_occurs, family.max_length) == (1, 5, 100)
    documents = find(root.content, "Hit/Subject/Person/IdentityDocument")
    assert isinstance(documents, Group)
    assert (documents.min_occurs, documents.max_occurs, documents.repeats) == (0, 10, True)
    attachments = find(root.content, "Attachment")
    assert isinstance(attachments, Group) and attachments.max_occurs == 20


def test_numbers_flags_and_abstract_kinds_are_described() -> None:
    sequence = find(DESCRIPTIONS.get("A").root.content, "Warrant/SequenceNumber")
    assert isinstance(sequence, Leaf) and sequence.kind == "number"
    end = find(DESCRIPTIONS.get("M").root.content, "EndOfMessage")
    assert isinstance(end, Leaf) and (end.kind, end.required) == ("flag", False)
    message = DESCRIPTIONS.get("IP-MSG").root
    assert message.content == ()
    assert [variant.type_name for variant in message.variants] == [
        "Request",
        "Reply",
        "Information",
    ]
    reply = next(variant for variant in message.variants if variant.type_name == "Reply")
    in_reply_to = find(reply.content, "Header/InReplyTo")
    assert isinstance(in_reply_to, Leaf) and in_reply_to.required


def sample_values(code: str, name: str) -> tuple[FormDescription, dict[str, str]]:
    description = DESCRIPTIONS.get(code)
    return description, values_of(description, (SAMPLES / code / name).read_bytes())


def test_each_error_is_placed_beside_its_field() -> None:
    description, values = sample_values("G", "valid-person-arrested.xml")
    values["Hit/Place/Country"] = "UK"
    values["Hit/Subject/~1.1/Person/DateOfBirth"] = "1 January 1980"
    values["Hit/ActionTaken"] = "   "

    built = build(description, values)
    validation = VALIDATOR.validate(built.xml)
    placed = built.place(list(validation.errors))

    assert not validation.valid
    assert set(placed.by_key) == {
        "Hit/Place/Country",
        "Hit/Subject/~1.1/Person/DateOfBirth",
        "Hit/ActionTaken",
    }
    assert placed.by_key["Hit/Place/Country"][0].startswith("'UK' is not allowed")
    assert "date" in placed.by_key["Hit/Subject/~1.1/Person/DateOfBirth"][0]
    assert placed.general == []


def test_a_required_field_left_empty_is_written_empty_so_that_its_error_lands_on_it() -> None:
    description, values = sample_values("G", "valid-person-arrested.xml")
    values["Header/Priority/~1"] = "2"
    values["Header/Priority/~1.2/Urgent/UrgencyReason"] = ""
    del values["Header/AlertRef"], values["Header/AlertRef/@article"]

    built = build(description, values)
    placed = built.place(list(VALIDATOR.validate(built.xml).errors))

    assert "must not be empty" in placed.by_key["Header/Priority/~1.2/Urgent/UrgencyReason"][0]
    assert len(placed.by_key["Header/AlertRef"]) >= 1
    assert placed.general == []


def test_an_error_of_the_form_as_a_whole_lands_on_its_root() -> None:
    description, values = sample_values("IP-MSG", "valid-reply.xml")
    del values["="]  # no kind of message chosen

    built = build(description, values)
    placed = built.place(list(VALIDATOR.validate(built.xml).errors))

    assert list(placed.by_key) == [""]
    assert "xsi:type" in placed.by_key[""][0]


def test_the_elements_of_the_errors_of_a_repeated_part_are_told_apart() -> None:
    description, values = sample_values("M", "valid-information-without-alert.xml")
    assert values["Subject#"] == "2"
    values["Subject[2]/~1.3/Document/IssuingCountry"] = "ZZ"

    built = build(description, values)
    placed = built.place(list(VALIDATOR.validate(built.xml).errors))

    assert list(placed.by_key) == ["Subject[2]/~1.3/Document/IssuingCountry"]


def test_a_repeated_part_is_added_and_a_middle_one_removed() -> None:
    description, values = sample_values("IP-DIFF", "valid-wanted-person.xml")
    names = {key: value for key, value in values.items() if "FamilyName[" in key}
    assert names, "the sample names a person"
    base = next(iter(names)).rpartition("[")[0]
    values = added(values, base + "#", int(values[base + "#"]))
    count = int(values[base + "#"])
    values[f"{base}[{count}]"] = "LAST"
    values = added(values, base + "#", count)
    values[f"{base}[{count + 1}]"] = "AFTER"

    values = removed(values, f"{base}[{count}]", count + 1)

    assert values[base + "#"] == str(count)
    assert values[f"{base}[{count}]"] == "AFTER"
    assert f"{base}[{count + 1}]" not in values
    built = build(description, values)
    assert b"<FamilyName>AFTER</FamilyName>" in built.xml and b"LAST" not in built.xml


def test_an_optional_part_removed_is_written_no_more() -> None:
    description, values = sample_values("M", "valid-information-without-alert.xml")
    assert values["Header/Handling#"] == "1"

    values = removed(values, "Header/Handling", 1)

    assert values["Header/Handling#"] == "0"
    assert not any(key.startswith("Header/Handling/") for key in values)
    built = build(description, values)
    assert b"Handling" not in built.xml
    assert VALIDATOR.validate(built.xml).valid


def test_an_instant_without_offset_is_read_in_the_bureau_s_zone() -> None:
    description, values = sample_values("G", "valid-person-arrested.xml")
    values["Hit/Time"] = "2026-12-05T14:03"

    bucharest = build(description, values, ZoneInfo("Europe/Bucharest"))
    unzoned = build(description, values)

    assert b"<Time>2026-12-05T14:03:00+02:00</Time>" in bucharest.xml
    assert VALIDATOR.validate(bucharest.xml).valid
    assert not VALIDATOR.validate(unzoned.xml).valid  # no offset: the schema refuses it


def test_a_type_that_contains_itself_is_refused(tmp_path: Path) -> None:
    """A page cannot show a recursive type; the built-in set has none (bounded_depth)."""
    schema = tmp_path / "loop.xsd"
    schema.write_text(
        """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:complexType name="Node"><xs:sequence>
    <xs:element name="Child" type="Node" minOccurs="0"/>
  </xs:sequence></xs:complexType>
  <xs:element name="Root" type="Node"/>
</xs:schema>"""
    )
    import xmlschema  # noqa: PLC0415 (this test only)

    from gateway.forms.formfields import describe  # noqa: PLC0415

    with pytest.raises(ValueError, match="contains itself"):
        describe("LOOP", xmlschema.XMLSchema(str(schema)), "{}Root")


def test_the_validator_gives_the_schema_of_each_form() -> None:
    assert isinstance(VALIDATOR, FormValidator)
    form = VALIDATOR.catalogue.get("M")
    assert "FormM" in VALIDATOR.schema_of(form).elements
