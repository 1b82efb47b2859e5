"""Roles and desks as the ledger stores them (comma-separated names) and back, into Principals."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.access.roles import Principal, Role, parse_roles


def joined(values: Iterable[str]) -> str:
    return ",".join(sorted(values))


def split(text: str) -> frozenset[str]:
    return frozenset(value for value in text.split(",") if value)


def principal_of(name: str, roles: str, desks: str) -> Principal:
    return Principal(name=name, roles=parse_roles(split(roles)), desks=split(desks))


def roles_text(roles: Iterable[Role]) -> str:
    return joined(str(role) for role in roles)
