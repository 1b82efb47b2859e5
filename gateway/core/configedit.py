"""Edit the configuration file in place, keeping its comments (tomlkit); never half-written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import tomlkit
from tomlkit.items import AoT, Table

from gateway.core import config as configuration
from gateway.core.errors import ConfigError


def set_own_fingerprint(path: Path, fingerprint: str) -> configuration.Config:
    def change(document: tomlkit.TOMLDocument) -> None:
        section = document.get("openpgp")
        if section is None:
            section = tomlkit.table()
            document["openpgp"] = section
        section["fingerprint"] = fingerprint

    return _edit(path, change)


def pin_partner(path: Path, code: str, fingerprint: str) -> configuration.Config:
    def change(document: tomlkit.TOMLDocument) -> None:
        for partner in document.get("partners", []):
            if partner.get("code") == code:
                partner["fingerprint"] = fingerprint
                return
        raise ConfigError(
            str(path), "partners", f"no partner {code!r}: add it with `gateway partners add`"
        )

    return _edit(path, change)


Value = str | int | bool | list[str]


def add_partner(
    path: Path, fields: dict[str, Value], *, before_replace: Callable[[], object] | None = None
) -> configuration.Config:
    """Append a [[partners]] table; ``before_replace`` runs once the new file has been checked
    whole and before it replaces the old one (nothing is written if either fails)."""

    def change(document: tomlkit.TOMLDocument) -> None:
        partners = document.get("partners")
        if partners is None:
            partners = tomlkit.aot()
            document.append("partners", partners)
        if not isinstance(partners, AoT):
            raise ConfigError(str(path), "partners", "must be an array of tables ([[partners]])")
        if any(partner.get("code") == fields["code"] for partner in partners):
            raise ConfigError(str(path), "partners", f"partner {fields['code']!r} exists already")
        table: Table = tomlkit.table()
        for key, value in fields.items():
            table[key] = value
        partners.append(table)

    return _edit(path, change, before_replace)


def _edit(
    path: Path,
    change: Callable[[tomlkit.TOMLDocument], None],
    before_replace: Callable[[], object] | None = None,
) -> configuration.Config:
    """Apply a change, check the result as a whole, then replace the file atomically."""
    try:
        document = tomlkit.parse(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    change(document)
    candidate = path.with_name(f".{path.name}.new")
    candidate.write_text(tomlkit.dumps(document), "utf-8")
    try:
        configuration.load(candidate)
    except ConfigError as exc:
        candidate.unlink(missing_ok=True)
        raise ConfigError(str(path), exc.key, exc.reason) from None
    try:
        if before_replace is not None:
            before_replace()
        with candidate.open("rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        candidate.unlink(missing_ok=True)
        raise
    candidate.replace(path)
    return configuration.load(path)
