"""The form catalogue: one FormSpec per forms/*.toml with its schema, reply rules and deadlines."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from gateway.core.errors import ConfigError
from gateway.core.tomlread import Table, load_toml
from gateway.core.vocabulary import CHANNELS, PRIORITIES

DEFAULT_REMINDERS = (0.5, 0.9)
_CODE = r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)*"
_CLARK = r"\{[^{}\s]+\}[A-Za-z_][\w.\-]*"
_CONDITION_PATH = r"[A-Za-z_][\w.\-]*(/[A-Za-z_][\w.\-]*)*"


@dataclass(frozen=True)
class DeadlineRule:
    """One line of a reply policy: when it applies, and how long the partner has to reply."""

    within: timedelta
    priority: str | None = None
    when: Mapping[str, str] = field(default_factory=dict)
    reminders: tuple[float, ...] = DEFAULT_REMINDERS
    escalate_after: timedelta | None = None

    def matches(self, priority: str, values: Mapping[str, str]) -> bool:
        if self.priority is not None and self.priority != priority:
            return False
        return all(values.get(path) == expected for path, expected in self.when.items())


@dataclass(frozen=True)
class ReplyPolicy:
    """Whether a form expects a reply, which forms answer it, and the deadline rules in order.
    ``pauses``: the form asks for clarification of the form it replies to (its InReplyTo), whose
    reply deadline then waits until this form is answered."""

    expected: bool = False
    answered_by: tuple[str, ...] = ()
    deadlines: tuple[DeadlineRule, ...] = ()
    pauses: bool = False

    def deadline(self, priority: str, values: Mapping[str, str]) -> DeadlineRule | None:
        """The first rule that applies, or None when this message owes no reply."""
        if not self.expected:
            return None
        return next((rule for rule in self.deadlines if rule.matches(priority, values)), None)

    @property
    def condition_paths(self) -> frozenset[str]:
        """The element paths (relative to the root) that the rules look at."""
        return frozenset(path for rule in self.deadlines for path in rule.when)


@dataclass(frozen=True)
class FormSpec:
    code: str
    channel: str
    title: str
    schema_set: str
    schema: str
    root: str
    reply: ReplyPolicy
    source: Path

    @property
    def namespace(self) -> str:
        return self.root[1 : self.root.index("}")]

    @property
    def local_name(self) -> str:
        return self.root[self.root.index("}") + 1 :]


class FormCatalogue:
    """The forms the gateway knows, by code and by root element."""

    def __init__(self, forms: Iterable[FormSpec]) -> None:
        self._by_code: dict[str, FormSpec] = {}
        self._by_root: dict[str, FormSpec] = {}
        for form in forms:
            for index, key, taken in (
                (self._by_code, "code", form.code),
                (self._by_root, "root", form.root),
            ):
                if taken in index:
                    raise ConfigError(
                        str(form.source),
                        key,
                        f"{taken!r} is already declared by {index[taken].source}",
                    )
                index[taken] = form
        for form in self._by_code.values():
            for answer in form.reply.answered_by:
                if answer not in self._by_code:
                    raise ConfigError(
                        str(form.source), "reply.answered_by", f"unknown form {answer!r}"
                    )

    def __iter__(self) -> Iterator[FormSpec]:
        return iter(sorted(self._by_code.values(), key=lambda form: form.code))

    def __len__(self) -> int:
        return len(self._by_code)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def get(self, code: str) -> FormSpec:
        try:
            return self._by_code[code]
        except KeyError:
            raise KeyError(f"unknown form code {code!r}") from None

    def by_root(self, root: str) -> FormSpec | None:
        return self._by_root.get(root)

    @classmethod
    def load(cls, folders: Iterable[tuple[Path, str]]) -> FormCatalogue:
        """Read every ``*.toml`` in each folder; each folder belongs to the named schema set."""
        return cls(
            load_form(path, schema_set)
            for folder, schema_set in folders
            for path in sorted(folder.glob("*.toml"))
        )


def load_form(path: Path, schema_set: str = "builtin") -> FormSpec:
    table = load_toml(path)
    code = table.text("code", pattern=_CODE, hint="upper-case letters, digits and dashes")
    if path.stem != code:
        table.fail("code", f"{code!r} must match the file name {path.name!r}")
    form = FormSpec(
        code=code,
        channel=table.text("channel", choices=CHANNELS),
        title=table.text("title"),
        schema_set=table.text("schema_set", schema_set),
        schema=table.text("schema", pattern=r"[\w.\-/]+\.xsd", hint="a relative path to an .xsd"),
        root=table.text("root", pattern=_CLARK, hint='Clark notation, "{namespace}Name"'),
        reply=_reply_policy(table.table("reply")),
        source=path,
    )
    table.finish()
    return form


def _reply_policy(table: Table) -> ReplyPolicy:
    expected = table.boolean("expected", False)
    pauses = table.boolean("pauses", False)
    answered_by = table.str_list("answered_by", ())
    reminders = table.fraction_list("reminders", DEFAULT_REMINDERS)
    rules = tuple(_deadline_rule(rule, reminders) for rule in table.tables("deadline"))
    table.finish()
    if expected:
        if not answered_by:
            table.fail(
                "answered_by", "a form that expects a reply must name the forms that answer it"
            )
        if not rules:
            table.fail("deadline", "a form that expects a reply needs at least one deadline rule")
    elif answered_by or rules or pauses:
        table.fail("expected", "answered_by, deadline rules and pauses need expected = true")
    return ReplyPolicy(expected=expected, answered_by=answered_by, deadlines=rules, pauses=pauses)


def _deadline_rule(table: Table, reminders: tuple[float, ...]) -> DeadlineRule:
    when = table.str_table("when")
    for path in when:
        if not re.fullmatch(_CONDITION_PATH, path):
            table.fail(f"when.{path}", "must be a path of element names relative to the root")
    rule = DeadlineRule(
        within=table.duration("within"),
        priority=table.text("priority", None, choices=PRIORITIES),
        when=when,
        reminders=table.fraction_list("reminders", reminders),
        escalate_after=table.duration("escalate_after", None),
    )
    table.finish()
    return rule
