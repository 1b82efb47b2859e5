"""The roles and what each may do: the table walked permission by permission, desk scope, and
the rules of an assignment (desks for handlers, an auditor alone)."""

from __future__ import annotations

import pytest

from gateway.access.roles import (
    ALL_DESKS,
    CONTENT_PERMISSIONS,
    DESK_BOUND,
    PERMISSIONS,
    Permission,
    Principal,
    Role,
    check_assignment,
    check_name,
    parse_roles,
)
from gateway.core.vocabulary import ROLES

P = Permission
EXPECTED = {
    Role.HANDLER: {P.METADATA, P.CONTENT, P.DOWNLOAD, P.SEARCH, P.SEND, P.CLAIM},
    Role.SUPERVISOR: {
        P.METADATA,
        P.CONTENT,
        P.DOWNLOAD,
        P.SEARCH,
        P.SEND,
        P.CLAIM,
        P.DASHBOARDS,
        P.SUBJECT_REPORT,
    },
    Role.DUTY_OFFICER: {
        P.METADATA,
        P.CONTENT,
        P.DOWNLOAD,
        P.SEARCH,
        P.SEND,
        P.CLAIM,
        P.DASHBOARDS,
        P.ESCALATIONS,
    },
    Role.OPERATOR: {P.METADATA, P.QUEUES, P.OPERATIONS},
    Role.AUDITOR: {P.AUDIT, P.SUBJECT_REPORT},
}


def test_the_roles_are_the_words_of_the_configuration() -> None:
    assert tuple(Role) == tuple(Role(name) for name in ROLES)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_the_table_cell_by_cell(role: Role, permission: Permission) -> None:
    """Every (role, permission) pair: allowed exactly where the table says, on a desk in scope
    for a desk-bound permission, and refused on a desk out of a handler's scope."""
    principal = Principal(
        "ana", frozenset({role}), frozenset({"sirene"}) if role == "handler" else frozenset()
    )
    expected = permission in EXPECTED[role]
    assert (permission in PERMISSIONS[role]) is expected
    assert principal.may(permission, "sirene") is expected
    if permission in DESK_BOUND:
        assert principal.may(permission, "interpol") is (expected and role in ALL_DESKS)
        assert principal.may(permission) is (expected and role in ALL_DESKS)
    assert principal.role_for(permission, "sirene") == (role if expected else None)


def test_operators_and_auditors_never_see_content() -> None:
    for role in (Role.OPERATOR, Role.AUDITOR):
        assert not PERMISSIONS[role] & CONTENT_PERMISSIONS
    assert {Role.HANDLER, Role.SUPERVISOR, Role.DUTY_OFFICER} == {
        role for role in Role if PERMISSIONS[role] >= CONTENT_PERMISSIONS
    }


def test_every_permission_belongs_to_some_role() -> None:
    assert set().union(*PERMISSIONS.values()) == set(Permission)


def test_the_role_that_allows_is_named_in_the_order_of_the_roles() -> None:
    both = Principal("ana", frozenset({Role.HANDLER, Role.SUPERVISOR}), frozenset({"sirene"}))
    assert both.role_for(P.CONTENT, "sirene") is Role.HANDLER
    assert both.role_for(P.CONTENT, "interpol") is Role.SUPERVISOR
    assert both.role_for(P.DASHBOARDS) is Role.SUPERVISOR
    assert both.role_for(P.AUDIT) is None


@pytest.mark.parametrize(
    ("roles", "desks", "reason"),
    [
        ((), (), "at least one role"),
        (("handler",), (), "a handler needs at least one desk"),
        (("operator",), ("sirene",), "desks are given to handlers only"),
        (("auditor", "supervisor"), (), "an auditor holds no other role"),
        (("handler",), ("Sirene",), "is not a desk name"),
    ],
)
def test_assignments_refused(roles: tuple[str, ...], desks: tuple[str, ...], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_assignment(parse_roles(roles), frozenset(desks))


def test_assignments_accepted() -> None:
    check_assignment(parse_roles(["handler", "duty_officer"]), frozenset({"sirene"}))
    check_assignment(parse_roles(["auditor"]), frozenset())


def test_names_and_roles_by_name() -> None:
    assert check_name("ana.pop") == "ana.pop"
    for bad in ("Ana", "a", "1ana", "ana pop", "ana@x", "a" * 33):
        with pytest.raises(ValueError, match="not a valid name"):
            check_name(bad)
    with pytest.raises(ValueError, match="unknown role 'admin'"):
        parse_roles(["admin"])


def test_desks_for_names_the_desks_a_permission_reaches() -> None:
    handler = Principal("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}))
    supervisor = Principal("sue", frozenset({Role.SUPERVISOR}))
    operator = Principal("olaf", frozenset({Role.OPERATOR}))
    auditor = Principal("aud", frozenset({Role.AUDITOR}))
    both = Principal("bo", frozenset({Role.HANDLER, Role.OPERATOR}), frozenset({"sirene"}))
    assert handler.desks_for(Permission.CONTENT) == frozenset({"sirene"})
    assert supervisor.desks_for(Permission.CONTENT) is None
    assert operator.desks_for(Permission.METADATA) is None
    assert operator.desks_for(Permission.CONTENT) == frozenset()
    assert auditor.desks_for(Permission.METADATA) == frozenset()
    assert both.desks_for(Permission.METADATA) is None
    assert both.desks_for(Permission.CONTENT) == frozenset({"sirene"})
