"""Strict, typed reading of TOML tables: every value checked, every unknown key refused by path."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Any, NoReturn

from gateway.core.durations import parse_duration
from gateway.core.errors import ConfigError

_MISSING: Any = object()


def load_toml(path: Path) -> Table:
    """Read a TOML file into a strict Table; an unreadable or malformed file is a ConfigError."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None
    return Table(data, str(path))


class Table:
    """A TOML table being read. Each getter marks its key as known; ``finish`` refuses the rest."""

    def __init__(self, data: Mapping[str, Any], source: str, path: str = "") -> None:
        self._data = data
        self._seen: set[str] = set()
        self.source = source
        self.prefix = path

    def where(self, key: str) -> str:
        return ".".join(part for part in (self.prefix, key) if part)

    def fail(self, key: str, reason: str) -> NoReturn:
        raise ConfigError(self.source, self.where(key), reason)

    def has(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> list[str]:
        return list(self._data)

    def _get(self, key: str, default: Any, kind: type | tuple[type, ...], kind_name: str) -> Any:
        self._seen.add(key)
        if key not in self._data:
            if default is _MISSING:
                self.fail(key, "missing")
            return default
        value = self._data[key]
        # bool is an int in Python; TOML keeps them apart and so do we
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            self.fail(key, f"must be {kind_name}, not {_toml_type(value)}")
        return value

    def text(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        pattern: str | None = None,
        choices: Sequence[str] | None = None,
        hint: str = "",
    ) -> Any:
        value = self._get(key, default, str, "a string")
        if value is default and key not in self._data:
            return value
        if choices is not None and value not in choices:
            self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        if pattern is not None and not re.fullmatch(pattern, value):
            self.fail(key, f"{value!r} is not valid" + (f": {hint}" if hint else ""))
        return value

    def integer(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> Any:
        value = self._get(key, default, int, "an integer")
        if key in self._data:
            if minimum is not None and value < minimum:
                self.fail(key, f"{value} is below the minimum {minimum}")
            if maximum is not None and value > maximum:
                self.fail(key, f"{value} is above the maximum {maximum}")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default, bool, "true or false")

    def fraction_list(self, key: str, default: Any = _MISSING) -> Any:
        values = self._get(key, default, list, "an array of numbers")
        if key not in self._data:
            return default
        fractions = []
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                self.fail(key, f"{value!r} is not a fraction strictly between 0 and 1")
            fractions.append(float(value))
        if fractions != sorted(set(fractions)):
            self.fail(key, "fractions must be increasing and distinct")
        return tuple(fractions)

    def str_list(self, key: str, default: Any = _MISSING) -> Any:
        values = self._get(key, default, list, "an array of strings")
        if key not in self._data:
            return default
        for value in values:
            if not isinstance(value, str):
                self.fail(key, f"{value!r} is not a string")
        return tuple(values)

    def duration(self, key: str, default: Any = _MISSING, *, allow_zero: bool = False) -> Any:
        text = self._get(key, default, str, 'an ISO 8601 duration string such as "PT12H"')
        if key not in self._data:
            return default
        try:
            return parse_duration(text, allow_zero=allow_zero)
        except ValueError as exc:
            self.fail(key, str(exc))

    def path(self, key: str, base: Path, default: Any = _MISSING) -> Any:
        """A filesystem path; relative paths are taken from ``base`` (the file's folder)."""
        text = self._get(key, default, str, "a path string")
        if key not in self._data:
            return default
        if not text:
            self.fail(key, "must not be empty")
        return (base / Path(text).expanduser()).resolve()

    def table(self, key: str, *, required: bool = False) -> Table:
        value = self._get(key, _MISSING if required else {}, dict, "a table")
        return Table(value, self.source, self.where(key))

    def tables(self, key: str) -> list[Table]:
        values = self._get(key, [], list, "an array of tables ([[...]])")
        tables = []
        for index, value in enumerate(values):
            if not isinstance(value, dict):
                self.fail(f"{key}[{index}]", f"must be a table, not {_toml_type(value)}")
            tables.append(Table(value, self.source, f"{self.where(key)}[{index}]"))
        return tables

    def str_table(self, key: str) -> dict[str, str]:
        """A table of string values, e.g. ``when = { InformationAccess = "direct" }``."""
        values = self._get(key, {}, dict, "a table of strings")
        for name, value in values.items():
            if not isinstance(value, str):
                self.fail(f"{key}.{name}", f"must be a string, not {_toml_type(value)}")
        return dict(values)

    def finish(self) -> None:
        """Refuse any key that no getter asked for: a typo must not pass silently."""
        unknown = [key for key in self._data if key not in self._seen]
        if unknown:
            self.fail(unknown[0], "unknown key" + _did_you_mean(unknown[0], self._seen))


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _toml_type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _did_you_mean(key: str, known: set[str]) -> str:
    close = get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
