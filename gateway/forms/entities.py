"""The searchable entities a validated form carries (persons, documents, vehicles, firearms,
objects, phone numbers and e-mail addresses written in any text, references), read from its
parsed tree in one walk.

What is read is recognised by its structure in the common types (xsd/common.xsd), whatever the
element is named in a form: a Person has FamilyName and Sex (form Q calls it Identity), a
Document has Type, Number and IssuingCountry (Interpol's TravelDocument), and so on. The values
are as written; folding them for search is gateway.search's job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Kinds of entity, as the index and the searches name them.
PERSON = "person"
DOCUMENT = "document"
VEHICLE = "vehicle"
FIREARM = "firearm"
OBJECT = "object"
PHONE = "phone"
EMAIL = "email"
REFERENCE = "reference"
KINDS = (PERSON, DOCUMENT, VEHICLE, FIREARM, OBJECT, PHONE, EMAIL, REFERENCE)

# References to other records: SIS alerts, Interpol notices and warrants, national cases.
_REFERENCES = {
    "AlertRef": "sis-alert",
    "NationalReference": "national-case",
    "NationalCaseReference": "national-case",
    "CaseReference": "national-case",
    "WarrantReference": "warrant",
    "RecordReference": "interpol-record",
    "NoticeReference": "interpol-notice",
}
_REFERENCE_TAGS = tuple("{*}" + name for name in _REFERENCES)
# Identifiers of objects that are not a common Object (Boat).
_OBJECT_IDENTIFIERS = (
    "{*}HullIdentificationNumber",
    "{*}RegistrationNumber",
    "{*}EngineSerialNumber",
)
_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_PHONE = re.compile(r"(?<![\w+])\+[1-9][0-9][0-9 ().-]{5,18}[0-9]")
_MAX_FOUND = 500  # per form: the schemas cap their lists; this caps what free text may add


@dataclass(frozen=True)
class Entity:
    """One searchable thing in a form.

    ``kind`` is one of KINDS; ``role`` says which of its kind (a person's ``name``, ``alias`` or
    ``original-script`` name; a document's type; an object's element; a reference's register);
    ``value`` is as written (a person: given names then family names); ``born`` an ISO date;
    ``country`` the nationality, issuing or registration country; ``element`` the local name of
    the element it was read from."""

    kind: str
    role: str
    value: str
    born: str | None = None
    country: str | None = None
    element: str = ""


def entities(tree: Any) -> list[Entity]:
    """Every searchable entity of a parsed, valid form, by kind, duplicates dropped."""
    found: list[Entity] = []
    seen: set[Entity] = set()
    for entity in _walk(tree.getroot()):
        if entity.value and entity not in seen:
            seen.add(entity)
            found.append(entity)
            if len(found) >= _MAX_FOUND:
                break
    return found


def _walk(root: Any) -> Iterator[Entity]:
    """The entities, found by the elements that mark them: lxml picks those out by name in C,
    so a form's other elements cost nothing here."""
    for family in root.iter("{*}FamilyName"):
        person = family.getparent()
        if person.find("{*}Sex") is not None and family.getprevious() is None:
            yield from _person(person, _local(person.tag))
    for number in root.iter("{*}Number"):
        document = number.getparent()
        country = document.find("{*}IssuingCountry")
        kind = document.find("{*}Type")
        if country is not None and kind is not None:
            yield Entity(
                DOCUMENT, _text(kind), _text(number), country=_text(country),
                element=_local(document.tag),
            )  # fmt: skip
    for mark in root.iter("{*}VIN", "{*}Plate"):
        vehicle = mark.getparent()
        role = "vin" if _local(mark.tag) == "VIN" else "plate"
        country = _child_text(vehicle, "RegistrationCountry")
        yield Entity(VEHICLE, role, _text(mark), country=country, element=_local(vehicle.tag))
    for serial in root.iter("{*}SerialNumber"):
        owner = serial.getparent()
        name = _local(owner.tag)
        if owner.find("{*}Make") is not None and name != "Boat":
            yield Entity(FIREARM, "serial", _text(serial), element=name)
        else:
            yield Entity(OBJECT, name.lower(), _text(serial), element=name)
    for identifier in root.iter("{*}Identifier", *_OBJECT_IDENTIFIERS):
        owner = identifier.getparent()
        name = _local(owner.tag)
        kind = owner.find("{*}Type")
        role = _text(kind) if kind is not None else name.lower()
        yield Entity(OBJECT, role, _text(identifier), element=name)
    for reference in root.iter(*_REFERENCE_TAGS):
        name = _local(reference.tag)
        yield Entity(REFERENCE, _REFERENCES[name], _text(reference), element=name)
    for text in root.itertext(with_tail=False):
        if ("@" in text or "+" in text) and not text.startswith("<"):  # not a <Message-ID>
            yield from _contacts(text)


def _local(tag: Any) -> str:
    """An element's local name ("" for a comment or processing instruction)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _person(element: Any, name: str) -> Iterator[Entity]:
    """A person's names (as written, in its original script, its aliases), in one pass over
    its children."""
    parts: dict[str, list[str]] = {"GivenName": [], "FamilyName": [], "Nationality": []}
    aliases: list[str] = []
    born = original = None
    for child in element:
        local = _local(child.tag)
        if local in parts:
            parts[local].append(_text(child))
        elif local == "Alias":
            aliases.append(_full_name(child))
        elif local == "DateOfBirth":
            born = _text(child)
        elif local == "OriginalScriptName":
            original = _text(child)
    country = ",".join(parts["Nationality"]) or None
    latin = " ".join(filter(None, (*parts["GivenName"], *parts["FamilyName"])))
    yield Entity(PERSON, "name", latin, born, country, name)
    if original:
        yield Entity(PERSON, "original-script", original, born, country, name)
    for alias in aliases:
        yield Entity(PERSON, "alias", alias, born, country, name)


def _contacts(text: str) -> Iterator[Entity]:
    """E-mail addresses and international phone numbers (+country code) in free text."""
    for match in _EMAIL.finditer(text):
        yield Entity(EMAIL, "address", match.group(0))
    for match in _PHONE.finditer(text):
        yield Entity(PHONE, "number", match.group(0))


def _full_name(element: Any) -> str:
    given = [_text(item) for item in element.iterchildren("{*}GivenName")]
    family = [_text(item) for item in element.iterchildren("{*}FamilyName")]
    return " ".join(part for part in (*given, *family) if part)


def _child_text(element: Any, name: str) -> str | None:
    child = element.find("{*}" + name)
    return _text(child) or None if child is not None else None


def _text(element: Any) -> str:
    return (element.text or "").strip()
