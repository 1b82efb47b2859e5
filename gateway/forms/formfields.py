"""A form's XSD read (with xmlschema) into a description of its fields, for a form page: each
element's key, label, kind, whether it is required, its choices, repeats, lengths and pattern."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from xmlschema.validators import XsdElement, XsdGroup

from gateway.forms.formwording import words
from gateway.forms.xmlforms import FormValidator

# The built-in types a field's kind follows from; anything else is text.
_KINDS = {
    "date": "date",
    "dateTime": "datetime",
    "boolean": "boolean",
    "decimal": "number",
    "integer": "number",
    "positiveInteger": "number",
    "nonNegativeInteger": "number",
    "int": "number",
    "long": "number",
    "short": "number",
}
_LONG_TEXT = 255  # a text that may be longer than this is a text area
_SPACES = re.compile(r"\s+")
_XSD_PREFIX = "{http://www.w3.org/2001/XMLSchema}"


@dataclass(frozen=True)
class Leaf:
    """An element (or attribute) with text content: one input."""

    name: str  # the element's local name, or "@name" for an attribute
    label: str
    help: str
    kind: str  # text, longtext, date, datetime, enumeration, number, boolean, flag (empty element)
    min_occurs: int
    max_occurs: int | None  # None: unbounded
    choices: tuple[str, ...] = ()
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    attributes: tuple[Leaf, ...] = ()  # the attributes of an element with simple content

    @property
    def required(self) -> bool:
        return self.min_occurs > 0

    @property
    def repeats(self) -> bool:
        return self.max_occurs != 1


@dataclass(frozen=True)
class Option:
    """One alternative of a choice: what it contains."""

    label: str
    content: tuple[Node, ...]


@dataclass(frozen=True)
class Choice:
    """A choice between alternatives (sequences or single elements): one is picked."""

    min_occurs: int
    options: tuple[Option, ...]

    @property
    def required(self) -> bool:
        return self.min_occurs > 0


@dataclass(frozen=True)
class Variant:
    """A concrete type an element of an abstract type may name with xsi:type."""

    type_name: str  # local name, written as xsi:type
    label: str
    content: tuple[Node, ...]


@dataclass(frozen=True)
class Group:
    """An element with element content: its parts in order (or the variants of its type)."""

    name: str
    label: str
    help: str
    min_occurs: int
    max_occurs: int | None
    content: tuple[Node, ...] = ()
    variants: tuple[Variant, ...] = ()  # when its type is abstract

    @property
    def required(self) -> bool:
        return self.min_occurs > 0

    @property
    def repeats(self) -> bool:
        return self.max_occurs != 1


Node = Leaf | Group | Choice


@dataclass(frozen=True)
class FormDescription:
    """A form as fields: the root element's namespace and name, and its content."""

    code: str
    namespace: str
    root: Group


class Descriptions:
    """The description of each form of a validator's catalogue, read once and kept."""

    def __init__(self, validator: FormValidator) -> None:
        self.validator = validator
        self._made: dict[str, FormDescription] = {}
        self._lock = threading.Lock()

    def get(self, code: str) -> FormDescription:
        """The form's description; KeyError for a form the catalogue does not hold."""
        with self._lock:
            found = self._made.get(code)
            if found is None:
                form = self.validator.catalogue.get(code)
                found = describe(code, self.validator.schema_of(form), form.root)
                self._made[code] = found
            return found


def describe(code: str, schema: Any, root: str) -> FormDescription:
    """The description of the global element ``root`` ({namespace}name) of an xmlschema schema."""
    namespace, _, local = root[1:].partition("}")
    element = schema.elements[local]
    group = _node(element, schema, ())
    if not isinstance(group, Group):
        raise ValueError(f"{root} has no element content")
    return FormDescription(code=code, namespace=namespace, root=group)


def _node(element: XsdElement, schema: Any, seen: tuple[str, ...]) -> Leaf | Group:
    """One element as a leaf (text) or a group (elements)."""
    name = element.local_name
    xsd_type: Any = element.type
    occurs = (element.min_occurs, element.max_occurs)
    help_text = _documentation(element) or _documentation(xsd_type)
    if xsd_type.is_simple() or xsd_type.has_simple_content():
        simple = xsd_type if xsd_type.is_simple() else xsd_type.content
        attributes = () if xsd_type.is_simple() else _attributes(xsd_type)
        return _leaf(name, simple, occurs, help_text, attributes)
    if xsd_type.is_empty():
        return Leaf(name, words(name), help_text, "flag", *occurs)
    type_name = xsd_type.name or ""
    if type_name and type_name in seen:
        raise ValueError(f"type {type_name} contains itself: a form page cannot show it")
    inside = (*seen, type_name)
    if xsd_type.abstract:
        variants = tuple(
            Variant(
                _local(other.name),
                words(_local(other.name)),
                _content(other.content, schema, inside),
            )
            for other in list(schema.types.values())
            if other is not xsd_type
            and not getattr(other, "abstract", False)
            and other.is_complex()
            and other.is_derived(xsd_type)
        )
        return Group(name, words(name), help_text, *occurs, variants=variants)
    return Group(name, words(name), help_text, *occurs, _content(xsd_type.content, schema, inside))


def _content(group: XsdGroup, schema: Any, seen: tuple[str, ...]) -> tuple[Node, ...]:
    """The parts of a sequence in order; a choice becomes one Choice node."""
    if group.model == "choice":
        return (_choice(group, schema, seen),)
    nodes: list[Node] = []
    for item in group:
        if isinstance(item, XsdElement):
            nodes.append(_node(item, schema, seen))
        elif isinstance(item, XsdGroup):
            if item.model == "choice":
                nodes.append(_choice(item, schema, seen))
            else:
                nodes.extend(_content(item, schema, seen))
        else:
            raise ValueError(f"{type(item).__name__} is not supported on a form page")
    return tuple(nodes)


def _choice(group: XsdGroup, schema: Any, seen: tuple[str, ...]) -> Choice:
    options = []
    for item in group:
        if isinstance(item, XsdElement):
            node = _node(item, schema, seen)
            options.append(Option(node.label, (node,)))
        elif isinstance(item, XsdGroup):
            content = _content(item, schema, seen)
            options.append(Option(_option_label(content), content))
        else:
            raise ValueError(f"{type(item).__name__} is not supported on a form page")
    return Choice(group.min_occurs, tuple(options))


def _option_label(content: tuple[Node, ...]) -> str:
    """An alternative named by its parts: the required ones, then the optional in brackets."""
    named = [node for node in content if isinstance(node, Leaf | Group)]
    required = [node.label for node in named if node.required]
    optional = [node.label for node in named if not node.required]
    label = ", ".join(required) or "(none)"
    return label + (f" (and optionally {', '.join(optional)})" if optional else "")


def _leaf(
    name: str,
    simple: Any,
    occurs: tuple[int, int | None],
    help_text: str,
    attributes: tuple[Leaf, ...] = (),
) -> Leaf:
    base = _builtin(simple)
    choices = tuple(str(value) for value in (simple.enumeration or ()))
    kind = "enumeration" if choices else _KINDS.get(base, "text")
    max_length = simple.max_length
    patterns = getattr(simple, "patterns", None)
    regexps = tuple(getattr(patterns, "regexps", ()) or ())
    if kind == "text" and (max_length or 0) > _LONG_TEXT:
        kind = "longtext"
    return Leaf(
        name,
        words(name.removeprefix("@")),
        help_text or _documentation(simple),
        kind,
        *occurs,
        choices=choices,
        min_length=simple.min_length,
        max_length=max_length,
        pattern=regexps[0] if len(regexps) == 1 else None,
        attributes=attributes,
    )


def _attributes(xsd_type: Any) -> tuple[Leaf, ...]:
    return tuple(
        _leaf(
            "@" + _local(name),
            attribute.type,
            (1 if attribute.use == "required" else 0, 1),
            _documentation(attribute.type),
        )
        for name, attribute in xsd_type.attributes.items()
        if name is not None
    )


def _builtin(simple: Any) -> str:
    """The local name of the first built-in type a simple type derives from."""
    current = simple
    while current is not None:
        name = current.name or ""
        if name.startswith(_XSD_PREFIX):
            return _local(name)
        current = getattr(current, "base_type", None)
    return "string"


def _documentation(component: Any) -> str:
    annotation = getattr(component, "annotation", None)
    if annotation is None:
        return ""
    texts = [(item.text or "") for item in getattr(annotation, "documentation", ())]
    return _SPACES.sub(" ", " ".join(texts)).strip()


def _local(name: str | None) -> str:
    return (name or "").rpartition("}")[2]
