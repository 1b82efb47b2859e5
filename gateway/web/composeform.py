"""A form's description and values as the rows of a compose page: fieldsets, inputs by kind
(select for an enumeration, date input for a date), alternatives as radio buttons, add and
remove buttons for repeatable parts, and each error beside the field it concerns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.forms.formbuild import (
    CHECKED,
    Placed,
    choice_key,
    chosen_variant,
    count_key,
    join,
    occurrences,
    option_key,
    selected,
    step_key,
    variant_key,
)
from gateway.forms.formfields import Choice, FormDescription, Group, Leaf, Node

REQUIRED = "Required: fill this in."
INPUTS = {
    "text": "text",
    "longtext": "textarea",
    "date": "date",
    "datetime": "datetime",
    "enumeration": "select",
    "number": "number",
    "boolean": "boolean",
    "flag": "checkbox",
}


@dataclass(frozen=True)
class Row:
    """One line of the page. ``kind``: open/close (a fieldset), leaf (an input), count (a hidden
    count of occurrences), add (a button), choice/option/option-end/choice-end (radio
    alternatives)."""

    kind: str
    key: str = ""
    label: str = ""
    help: str = ""
    input: str = ""
    value: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    remove: str = ""  # the occurrence a remove button takes away
    checked: bool = False
    max_length: int | None = None


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    general: list[str]  # errors that concern no field shown


def page(
    description: FormDescription,
    values: Mapping[str, str],
    placed: Placed,
    hidden: frozenset[str],
) -> Page:
    walker = _Walker(values, placed, hidden)
    walker.group_content(description.root, "")
    shown = walker.shown
    general = list(placed.general) + placed.by_key.get("", [])
    general += [
        error
        for key, errors in placed.by_key.items()
        if key and key not in shown
        for error in errors
    ]
    return Page(walker.rows, general)


class _Walker:
    def __init__(self, values: Mapping[str, str], placed: Placed, hidden: frozenset[str]) -> None:
        self.values = values
        self.placed = placed
        self.hidden = hidden
        self.rows: list[Row] = []
        self.shown: set[str] = set()

    def errors(self, key: str) -> tuple[str, ...]:
        self.shown.add(key)
        return tuple(self.placed.by_key.get(key, ()))

    def group_content(self, group: Group, key: str) -> None:
        if not group.variants:
            self.content(group.content, key)
            return
        chosen = chosen_variant(key, group, self.values)
        picker = variant_key(key)
        self.rows.append(Row("choice", picker, "Kind", required=True, errors=self.errors(picker)))
        for variant in group.variants:
            self.rows.append(
                Row(
                    "option",
                    picker,
                    variant.label,
                    value=variant.type_name,
                    checked=variant.type_name == chosen,
                )
            )
            self.content(variant.content, join(key, f"={variant.type_name}"))
            self.rows.append(Row("option-end"))
        self.rows.append(Row("choice-end"))

    def content(self, content: tuple[Node, ...], key: str) -> None:
        ordinal = 0
        for node in content:
            if isinstance(node, Choice):
                ordinal += 1
                self.choice(node, key, ordinal)
            else:
                self.element(node, key)

    def choice(self, choice: Choice, key: str, ordinal: int) -> None:
        picker = choice_key(key, ordinal)
        number = selected(key, ordinal, choice, self.values)
        self.rows.append(Row("choice", picker, "One of", required=choice.required))
        for index, option in enumerate(choice.options, start=1):
            self.rows.append(
                Row("option", picker, option.label, value=str(index), checked=index == number)
            )
            self.content(option.content, option_key(key, ordinal, index))
            self.rows.append(Row("option-end"))
        self.rows.append(Row("choice-end"))

    def element(self, node: Leaf | Group, key: str) -> None:
        if join(key, node.name) in self.hidden:
            return
        count = occurrences(key, node, self.values)
        counted = isinstance(node, Group) or node.repeats
        if counted:
            self.rows.append(Row("count", count_key(key, node), value=str(count)))
        for index in range(1, count + 1):
            own = step_key(key, node, index)
            if own in self.hidden:
                continue
            removable = (
                counted and count > node.min_occurs and not (isinstance(node, Leaf) and count == 1)
            )
            label = node.label + (f" {index}" if node.repeats else "")
            if isinstance(node, Group):
                self.rows.append(
                    Row(
                        "open",
                        own,
                        label,
                        node.help,
                        required=node.required,
                        errors=self.errors(own),
                        remove=own if removable else "",
                    )
                )
                self.group_content(node, own)
                self.rows.append(Row("close"))
            elif node.kind == "flag" and node.required:
                self.errors(own)  # written whenever its part is: nothing to enter
            else:
                self.leaf(node, own, label, own if removable else "")
        upper = node.max_occurs
        if counted and (upper is None or count < upper):
            self.rows.append(Row("add", count_key(key, node), f"Add {node.label.lower()}"))

    def leaf(self, node: Leaf, key: str, label: str, remove: str) -> None:
        value = self.values.get(key, "")
        errors = self.errors(key)
        if errors and node.required and not value.strip():
            errors = (REQUIRED,)
        self.rows.append(
            Row(
                "leaf",
                key,
                label,
                node.help,
                INPUTS[node.kind],
                value,
                required=node.required,
                choices=node.choices,
                errors=errors,
                remove=remove,
                checked=value == CHECKED,
                max_length=node.max_length,
            )
        )
        for attribute in node.attributes:
            own = join(key, attribute.name)
            self.rows.append(
                Row(
                    "leaf",
                    own,
                    f"{label}: {attribute.label.lower()}",
                    attribute.help,
                    INPUTS[attribute.kind],
                    self.values.get(own, ""),
                    required=attribute.required,
                    choices=attribute.choices,
                    errors=self.errors(own),
                    max_length=attribute.max_length,
                )
            )
