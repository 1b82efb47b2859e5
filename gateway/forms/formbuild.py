"""A form's XML built from the values of its fields (keys given by its description), the values
read back from a form's XML, and the validator's errors placed beside the fields they concern.

A field's key is its path in the description: element names from the root (``Hit/Place/Country``),
``[n]`` on a step that may repeat, ``~k`` for the k-th choice of a sequence and ``~k.n/`` before
the parts of its n-th alternative, ``=Type/`` before the parts of an abstract element's variant,
``/@name`` for an attribute. Beside them, ``KEY#`` holds how many times a repeatable part is shown,
``~k`` which alternative is picked, ``KEY/=`` which variant."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from lxml import etree

from gateway.forms.formfields import Choice, FormDescription, Group, Leaf, Node
from gateway.forms.xmlforms import FormError, element_path

XSI = "http://www.w3.org/2001/XMLSchema-instance"
CHECKED = "on"  # the value of a ticked box (an optional empty element)
_LOCAL_INSTANT = re.compile(r"\s*(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2})?\s*")
_OCCURRENCE = re.compile(r"(?P<base>.*)\[(?P<index>\d+)\]")


def join(parent: str, step: str) -> str:
    return f"{parent}/{step}" if parent else step


def step_key(parent: str, node: Leaf | Group, index: int) -> str:
    """The key of one occurrence (1-based) of an element under ``parent``."""
    return join(parent, f"{node.name}[{index}]" if node.repeats else node.name)


def count_key(parent: str, node: Leaf | Group) -> str:
    return join(parent, node.name) + "#"


def choice_key(parent: str, ordinal: int) -> str:
    return join(parent, f"~{ordinal}")


def option_key(parent: str, ordinal: int, number: int) -> str:
    return join(parent, f"~{ordinal}.{number}")


def variant_key(key: str) -> str:
    return join(key, "=")


def occurrences(parent: str, node: Leaf | Group, values: Mapping[str, str]) -> int:
    """How many times a part is shown: as the values say, within its bounds; by default its
    minimum (a text field at least once)."""
    default = node.min_occurs if isinstance(node, Group) else max(node.min_occurs, 1)
    if not node.repeats and isinstance(node, Leaf):
        return 1
    given = values.get(count_key(parent, node), "")
    count = int(given) if given.isdigit() else default
    upper = node.max_occurs if node.max_occurs is not None else 1000
    return max(node.min_occurs, min(count, upper))


def selected(parent: str, ordinal: int, choice: Choice, values: Mapping[str, str]) -> int | None:
    """The number (1-based) of the alternative picked; without one, the first of a choice that
    must be made, none of an optional one."""
    given = values.get(choice_key(parent, ordinal), "")
    if given.isdigit() and 1 <= int(given) <= len(choice.options):
        return int(given)
    return 1 if choice.required else None


def chosen_variant(key: str, group: Group, values: Mapping[str, str]) -> str | None:
    given = values.get(variant_key(key), "")
    names = [variant.type_name for variant in group.variants]
    if given in names:
        return given
    return None


@dataclass
class Built:
    """The XML of the values, and which field each element's path stands for."""

    xml: bytes
    fields: dict[str, str] = field(default_factory=dict)  # element path -> key

    def place(self, errors: tuple[FormError, ...] | list[FormError]) -> Placed:
        """Each error beside the field (or group) its path names, the nearest one that exists;
        those that name none at all (the document as a whole) apart."""
        placed = Placed()
        for error in errors:
            path = error.path
            while path and path not in self.fields:
                path = path.rpartition("/")[0]
            if path:
                placed.by_key.setdefault(self.fields[path], []).append(error.reason)
            else:
                placed.general.append(error.reason)
        return placed


@dataclass
class Placed:
    by_key: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)


def added(values: Mapping[str, str], key: str, shown: int) -> dict[str, str]:
    """The values with one more occurrence of the repeatable part whose count key is ``key``
    (``shown`` now)."""
    return {**values, key: str(shown + 1)}


def removed(values: Mapping[str, str], key: str, shown: int) -> dict[str, str]:
    """The values without the occurrence ``key`` (``.../Name[i]``) of a repeatable part shown
    ``shown`` times: its values dropped, those of the later ones moved up one."""
    found = _OCCURRENCE.fullmatch(key)
    if found is None:  # an optional part that does not repeat: shown no more
        kept = {name: value for name, value in values.items() if not name.startswith(key + "/")}
        return {**kept, key + "#": "0"}
    base, gone = found.group("base"), int(found.group("index"))
    inside = re.compile(re.escape(base) + r"\[(\d+)\](/.*)?")
    moved: dict[str, str] = {}
    for name, value in values.items():
        match = inside.fullmatch(name)
        if match is None:
            moved[name] = value
            continue
        index = int(match.group(1))
        if index != gone:
            at = index - 1 if index > gone else index
            moved[f"{base}[{at}]{match.group(2) or ''}"] = value
    moved[base + "#"] = str(max(shown - 1, 0))
    return moved


def build(
    description: FormDescription, values: Mapping[str, str], zone: tzinfo | None = None
) -> Built:
    """The form's XML from the values: a part is written when required (empty if left empty,
    so that the validator names it) or filled in; nothing is checked here but the shape. An
    instant written without its offset (``2026-12-05T14:03``) is taken in ``zone``, if given."""
    root_group = description.root
    namespace = description.namespace
    tag = _tag(namespace, root_group.name)
    root = etree.Element(tag, nsmap={None: namespace} if namespace else None)
    made: list[tuple[Any, str]] = [(root, "")]
    _Writer(_Values(values, zone), namespace, made).group(root, root_group, "")
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"
    built = Built(body)
    for element, key in made:
        built.fields[element_path(element)] = key
    return built


class _Writer:
    """Writes the elements of the values under a root, noting each element's key."""

    def __init__(self, values: _Values, namespace: str, made: list[tuple[Any, str]]) -> None:
        self.values = values
        self.namespace = namespace
        self.made = made

    def group(self, element: Any, group: Group, key: str) -> None:
        content = group.content
        prefix = key
        if group.variants:
            name = chosen_variant(key, group, self.values)
            if name is None:
                return  # the validator says that the kind is missing
            variant = next(variant for variant in group.variants if variant.type_name == name)
            element.set(f"{{{XSI}}}type", name)
            content = variant.content
            prefix = join(key, f"={name}")
        self.fill(element, content, prefix)

    def fill(self, parent: Any, content: tuple[Node, ...], key: str) -> None:
        values = self.values
        ordinal = 0
        for node in content:
            if isinstance(node, Choice):
                ordinal += 1
                number = selected(key, ordinal, node, values)
                if number is not None:
                    inner = option_key(key, ordinal, number)
                    self.fill(parent, node.options[number - 1].content, inner)
                continue
            for index in range(1, occurrences(key, node, values) + 1):
                own = step_key(key, node, index)
                if isinstance(node, Group):
                    child = self.element(parent, node.name, own)
                    self.group(child, node, own)
                elif node.kind == "flag":
                    if node.required or values.get(own) == CHECKED:
                        self.element(parent, node.name, own)
                else:
                    self.leaf(parent, node, own, index)

    def leaf(self, parent: Any, node: Leaf, key: str, index: int) -> None:
        text = _text(self.values.get(key, ""))
        if node.kind == "datetime":
            text = self.values.instant(text)
        attributes = {
            attribute.name[1:]: _text(self.values.get(join(key, attribute.name), ""))
            for attribute in node.attributes
        }
        filled = text.strip() or any(value.strip() for value in attributes.values())
        if not filled and not (node.required and index <= max(node.min_occurs, 1)):
            return
        child = self.element(parent, node.name, key)
        child.text = text
        for name, value in attributes.items():
            if value.strip() or _required_attribute(node, name):
                child.set(name, value)

    def element(self, parent: Any, name: str, key: str) -> Any:
        child = etree.SubElement(parent, _tag(self.namespace, name))
        self.made.append((child, key))
        return child


class _Values(dict[str, str]):
    """The submitted values, and the zone an instant without offset is read in."""

    def __init__(self, values: Mapping[str, str], zone: tzinfo | None) -> None:
        super().__init__(values)
        self.zone = zone

    def instant(self, text: str) -> str:
        found = _LOCAL_INSTANT.fullmatch(text)
        if self.zone is None or found is None:
            return text
        date, minutes, seconds = found.groups()
        local = datetime.fromisoformat(f"{date}T{minutes}{seconds or ':00'}")
        return local.replace(tzinfo=self.zone).isoformat(timespec="seconds")


def _required_attribute(node: Leaf, name: str) -> bool:
    return any(attribute.name == "@" + name and attribute.required for attribute in node.attributes)


def _text(value: str) -> str:
    """Text as a browser sends it (CR LF in a text area) as the form keeps it."""
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}" if namespace else name


# ---------------------------------------------------------------------- values from XML


def values_of(description: FormDescription, data: bytes) -> dict[str, str]:
    """The field values of a form's XML (a valid one: the inverse of ``build``)."""
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    values: dict[str, str] = {}
    _read_group(root, description.root, "", values)
    return values


def _read_group(element: Any, group: Group, key: str, values: dict[str, str]) -> None:
    content, prefix = group.content, key
    if group.variants:
        name = element.get(f"{{{XSI}}}type", "").rpartition(":")[2]
        variant = next((v for v in group.variants if v.type_name == name), None)
        if variant is None:
            return
        values[variant_key(key)] = name
        content, prefix = variant.content, join(key, f"={name}")
    children = [child for child in element if isinstance(child.tag, str)]
    _read(children, 0, content, prefix, values)


def _read(
    children: list[Any], at: int, content: tuple[Node, ...], key: str, values: dict[str, str]
) -> int:
    """Read ``content`` from ``children[at:]``; returns where it stopped."""
    ordinal = 0
    for node in content:
        if isinstance(node, Choice):
            ordinal += 1
            for number, option in enumerate(node.options, start=1):
                trial: dict[str, str] = {}
                end = _read(children, at, option.content, option_key(key, ordinal, number), trial)
                if end > at and _satisfied(option.content, children[at:end]):
                    values[choice_key(key, ordinal)] = str(number)
                    values.update(trial)
                    at = end
                    break
            continue
        count = 0
        upper = node.max_occurs if node.max_occurs is not None else len(children)
        while at < len(children) and count < upper and _local(children[at]) == node.name:
            count += 1
            own = step_key(key, node, count)
            child = children[at]
            if isinstance(node, Group):
                _read_group(child, node, own, values)
            elif node.kind == "flag":
                values[own] = CHECKED
            else:
                values[own] = child.text or ""
                for attribute in node.attributes:
                    found = child.get(attribute.name[1:])
                    if found is not None:
                        values[join(own, attribute.name)] = found
            at += 1
        if node.repeats or isinstance(node, Group):
            values[count_key(key, node)] = str(count)
    return at


def _satisfied(content: tuple[Node, ...], taken: list[Any]) -> bool:
    """Whether the elements taken hold every required part of an alternative."""
    names = {_local(child) for child in taken}
    return all(
        node.name in names for node in content if isinstance(node, Leaf | Group) and node.required
    )


def _local(element: Any) -> str:
    return str(etree.QName(element).localname)
