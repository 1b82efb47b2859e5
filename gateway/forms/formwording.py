"""Schema errors as a handler would say them: what is wrong with which element, never a regex,
a Python class or a library's phrasing. xmlforms.py describes each error as a Fault; this words it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CHOICES_SHOWN = 12
_WORD_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# The patterns of the built-in schemas, said in words (keyed by the pattern as the XSD writes it).
PATTERNS: dict[str, str] = {
    r"\s*\S[\s\S]*": "must not be empty or blank",
    r"[A-Z]{2}-[0-9]{4}-[0-9]{6}": (
        "is not a Reference: the country code, the year and six digits, e.g. NO-2026-000123"
    ),
    r"[A-Z]{2}-[A-Z][A-Z0-9]{1,15}": (
        "is not a bureau code: the country code, a hyphen and the bureau in capitals, "
        "e.g. NO-SIRENE"
    ),
    r".+(Z|[+\-][0-9]{2}:[0-9]{2})": (
        "has no UTC offset: end it with Z or the offset, e.g. 2026-12-05T14:03:00+01:00"
    ),
    r"[0-9a-f]{64}": "is not a SHA-256 digest: 64 hexadecimal digits in lower case",
    r"[A-HJ-NPR-Z0-9]{17}": (
        "is not a vehicle identification number: 17 capital letters and digits, without I, O or Q"
    ),
    r"[A-Z]{3}": "must be three capital letters, e.g. the currency code EUR",
    r"[0-9]{3}": "must be three digits, e.g. 023",
    r"[A-Z]{2}[0-9A-Z]{8,30}": (
        "is not a SIS alert number: the country code and 8 to 30 capital letters or digits"
    ),
    r"[^./\\:\p{Cc}][^/\\:\p{Cc}]{0,199}": (
        "is not a plain file name: no folders (/ \\ :), not starting with a dot, "
        "at most 200 characters"
    ),
    r"[a-z0-9][a-z0-9!#$&^_.+\-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+\-]{0,126}": (
        "is not a media type in lower case, e.g. application/pdf"
    ),
}
_MESSAGE_ID = (
    "is not a Message-ID: an address-like identifier in angle brackets, e.g. <a1@b.example>"
)

# XSD built-in types a value failed to be, said as what to write instead.
BUILTINS: dict[str, str] = {
    "date": "is not a date: write it as YYYY-MM-DD, e.g. 2026-12-05",
    "dateTime": (
        "is not a date and time: write it as YYYY-MM-DDThh:mm:ss with its offset, "
        "e.g. 2026-12-05T14:03:00+01:00"
    ),
    "time": "is not a time: write it as hh:mm:ss, e.g. 14:03:00",
    "gYear": "is not a year: write four digits, e.g. 2026",
    "integer": "is not a whole number",
    "positiveInteger": "is not a whole number above zero",
    "nonNegativeInteger": "is not a whole number (zero or more)",
    "decimal": "is not a number: digits with a point for decimals, e.g. 12.5",
    "boolean": "must be true or false",
}


# What xmlschema's checks of built-in integer kinds say, and what a handler is told instead.
FUNCTIONS: dict[str, str] = {
    "value must be positive": "must be a whole number above zero",
    "value must be non negative": "must be a whole number, zero or more",
    "value must be negative": "must be a whole number below zero",
    "value must be non positive": "must be a whole number, zero or less",
}


# Other phrasings of xmlschema and libxml2, said plainly (namespaces are removed before).
PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"'([\w.:-]+)' attribute not allowed for element"),
        r"attribute \1 is not allowed here",
    ),
    (re.compile(r"missing required attribute '([\w.:-]+)'"), r"attribute \1 is missing"),
    (
        re.compile(r"a simple content element can't have child elements"),
        "only text is allowed here, no elements",
    ),
    (
        re.compile(r"character data between child elements not allowed"),
        "text is not allowed here, only elements",
    ),
    (re.compile(r"^Element '([\w.:-]+)'(?:, attribute '([\w.:-]+)')?: "), ""),
    (
        re.compile(
            r"The QName value '([\w.:-]+)' of the xsi:type attribute does not resolve to a "
            r"type definition\.?"
        ),
        r"xsi:type names \1, which is not a kind this form knows",
    ),
)


@dataclass(frozen=True)
class Fault:
    """One schema error, described by what the validator found rather than by its message."""

    kind: str  # pattern | enumeration | min_length | max_length | length | builtin
    # | incomplete | unexpected | other
    value: str | None = None
    attribute: str | None = None  # the attribute the error is about, if not the element's text
    type_name: str = ""  # local name of the simple type (or built-in) that refused the value
    patterns: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    limit: int | None = None
    element: str = ""  # local name of the element the error is about
    tag: str = ""  # unexpected: the child found
    expected: tuple[str, ...] = ()  # incomplete, unexpected: the children that could come
    text: str = ""  # other: the library's reason, namespaces already removed


def sentence(fault: Fault) -> str:
    """The error as one sentence for a handler."""
    subject = f"attribute {fault.attribute}: " if fault.attribute else ""
    shown = _quoted(fault.value)
    if fault.kind == "pattern":
        return subject + _pattern(fault, shown)
    if fault.kind == "enumeration":
        return subject + _enumeration(fault, shown)
    text = subject or "the text "
    if fault.kind == "min_length" and fault.limit is not None:
        if fault.limit <= 1:
            return subject + "must not be empty"
        return text + f"is too short: at least {fault.limit} characters{_length(fault)}"
    if fault.kind == "max_length" and fault.limit is not None:
        return text + f"is too long: at most {fault.limit} characters{_length(fault)}"
    if fault.kind == "length" and fault.limit is not None:
        return text + f"must be exactly {fault.limit} characters long{_length(fault)}"
    if fault.kind == "builtin":
        if not shown:
            return subject + "must not be empty"
        return (
            subject
            + f"{shown} {BUILTINS.get(fault.type_name, f'is not a valid {fault.type_name}')}"
        )
    if fault.kind == "incomplete":
        return f"{words(fault.element)} is incomplete: {_one_of(fault.expected)} is missing"
    if fault.kind == "unexpected":
        found = words(fault.tag)
        if fault.expected:
            return (
                f"{found} is not allowed here: {_one_of(fault.expected)} is expected at this "
                "place (missing, or elements in the wrong order)"
            )
        return f"{found} is not allowed here (one too many, or not allowed together with another)"
    if fault.kind == "other" and fault.text in FUNCTIONS:
        said = FUNCTIONS[fault.text]
        return subject + (f"{shown} {said}" if shown else said)
    return subject + plain(fault.text)


def plain(text: str) -> str:
    """A reason from the library as the handler reads it (the phrasings known here)."""
    for pattern, replacement in PHRASES:
        text = pattern.sub(replacement, text)
    return text


def words(name: str) -> str:
    """An element name as a label: ``DateOfBirth`` -> ``Date of birth``; acronyms stay."""
    first, *rest = _WORD_BREAK.sub(" ", name).split() or [""]
    return " ".join(
        [first[:1].upper() + first[1:], *(w if w.isupper() else w.lower() for w in rest)]
    )


def _pattern(fault: Fault, shown: str) -> str:
    said = next((PATTERNS[p] for p in fault.patterns if p in PATTERNS), None)
    if said is None and any(p.startswith("<") and "@" in p for p in fault.patterns):
        said = _MESSAGE_ID
    if said is None:
        kind = words(fault.type_name).lower() if fault.type_name else "value"
        said = f"is not in the form a {kind} must have"
    if said.startswith("must not be empty") or not shown:
        return "must not be empty" if not said.startswith("must not") else said
    return f"{shown} {said}"


def _enumeration(fault: Fault, shown: str) -> str:
    choices = fault.choices
    start = f"{shown} is not allowed" if shown else "is not allowed"
    if len(choices) == 1:
        return f"{start}: it must be {choices[0]}"
    if len(choices) > _CHOICES_SHOWN:
        kind = f" {words(fault.type_name).lower()}" if fault.type_name else ""
        return (
            f"{start}: not in the list of {len(choices)}{kind} values "
            f"(e.g. {', '.join(choices[:3])})"
        )
    return f"{start}: it must be one of {', '.join(choices)}"


def _one_of(names: tuple[str, ...]) -> str:
    labels = [words(name) for name in names]
    if len(labels) == 1:
        return labels[0]
    return "one of " + ", ".join(labels)


def _length(fault: Fault) -> str:
    return f" (it has {len(fault.value)})" if fault.value is not None else ""


def _quoted(value: str | None) -> str:
    if value is None:
        return ""
    flat = " ".join(value.split())
    if not flat:
        return ""
    return repr(flat if len(flat) <= 40 else flat[:37] + "...")
