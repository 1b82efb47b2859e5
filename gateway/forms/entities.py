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

from lxml import etree

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
# Identifiers of objects that are not a common Object (Boat, Banknote).
_OBJECT_IDENTIFIERS = (
    "HullIdentificationNumber",
    "RegistrationNumber",
    "EngineSerialNumber",
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
    """Every searchable entity of a parsed, valid form, in document order, duplicates dropped."""
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
    for element in root.iter("{*}*"):
        name = etree.QName(element).localname
        children = {etree.QName(child).localname: child for child in element.iterchildren("{*}*")}
        if "FamilyName" in children and "Sex" in children:
            yield from _person(element, name)
        elif {"Type", "Number", "IssuingCountry"} <= children.keys():
            yield Entity(
                DOCUMENT,
                _text(children["Type"]),
                _text(children["Number"]),
                country=_text(children["IssuingCountry"]),
                element=name,
            )
        elif "VIN" in children or "Plate" in children:
            yield from _vehicle(element, name, children)
        elif "SerialNumber" in children and "Make" in children:
            for serial in element.iterchildren("{*}SerialNumber"):
                yield Entity(FIREARM, "serial", _text(serial), element=name)
        elif "Type" in children and "Description" in children:
            for identifier in element.iterchildren("{*}Identifier"):
                yield Entity(OBJECT, _text(children["Type"]), _text(identifier), element=name)
        elif name == "Banknote" or "HullIdentificationNumber" in children or name == "Boat":
            yield from _other_object(element, name)
        elif name in _REFERENCES and element.text:
            yield Entity(REFERENCE, _REFERENCES[name], _text(element), element=name)
        elif not children and element.text and ("@" in element.text or "+" in element.text):
            yield from _contacts(element.text, name)


def _person(element: Any, name: str) -> Iterator[Entity]:
    born = _child_text(element, "DateOfBirth")
    nationality = ",".join(_text(item) for item in element.iterchildren("{*}Nationality"))
    country = nationality or None
    yield Entity(PERSON, "name", _full_name(element), born, country, name)
    original = _child_text(element, "OriginalScriptName")
    if original:
        yield Entity(PERSON, "original-script", original, born, country, name)
    for alias in element.iterchildren("{*}Alias"):
        yield Entity(PERSON, "alias", _full_name(alias), born, country, name)


def _vehicle(element: Any, name: str, children: dict[str, Any]) -> Iterator[Entity]:
    country = _child_text(element, "RegistrationCountry")
    if "VIN" in children:
        yield Entity(VEHICLE, "vin", _text(children["VIN"]), country=country, element=name)
    if "Plate" in children:
        yield Entity(VEHICLE, "plate", _text(children["Plate"]), country=country, element=name)


def _other_object(element: Any, name: str) -> Iterator[Entity]:
    for field in ("SerialNumber", *_OBJECT_IDENTIFIERS):
        for item in element.iterchildren("{*}" + field):
            yield Entity(OBJECT, name.lower(), _text(item), element=name)


def _contacts(text: str, name: str) -> Iterator[Entity]:
    """E-mail addresses and international phone numbers (+country code) in free text."""
    for match in _EMAIL.finditer(text):
        yield Entity(EMAIL, "address", match.group(0), element=name)
    for match in _PHONE.finditer(text):
        yield Entity(PHONE, "number", match.group(0), element=name)


def _full_name(element: Any) -> str:
    given = [_text(item) for item in element.iterchildren("{*}GivenName")]
    family = [_text(item) for item in element.iterchildren("{*}FamilyName")]
    return " ".join(part for part in (*given, *family) if part)


def _child_text(element: Any, name: str) -> str | None:
    child = element.find("{*}" + name)
    return _text(child) or None if child is not None else None


def _text(element: Any) -> str:
    return (element.text or "").strip()
