"""The roles, what each may do (one table), and the desks each may do it on."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.vocabulary import ROLES

NAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")
"""A user's or an API key's name: a short lower-case code (it is written in the audit chain)."""
DESK = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class Role(StrEnum):
    HANDLER = "handler"  # the desks named for the user
    SUPERVISOR = "supervisor"  # every desk, the dashboards
    DUTY_OFFICER = "duty_officer"  # every desk, the escalations
    OPERATOR = "operator"  # queues, partners, keys: metadata only, never a form's content
    AUDITOR = "auditor"  # the audit and access log, no content


class Permission(StrEnum):
    METADATA = "message.metadata"  # form, partner, reference, state, deadlines of a message
    CONTENT = "message.content"  # the form itself and its attachments, shown
    DOWNLOAD = "message.download"  # an attachment or the form, downloaded
    SEARCH = "message.search"  # search in what forms say
    SEND = "message.send"  # compose, reply, send
    CLAIM = "message.claim"  # claim, release, hand over on the worklist
    DASHBOARDS = "board.all"  # the deadlines board and statistics of every desk
    ESCALATIONS = "escalation.handle"  # take and close escalations
    QUEUES = "queue.manage"  # retry, release, requeue, drop spool items
    OPERATIONS = "operations.view"  # partners, keys, schema sets, the gateway's health
    AUDIT = "audit.read"  # the audit chain and the access log
    # A data subject's report: every exchange about a person on every desk (dates, partners,
    # forms, retention), for the data-protection officer (an auditor) and supervisors.
    SUBJECT_REPORT = "subject.report"


# The permissions that show what a form says: never to an operator or an auditor.
CONTENT_PERMISSIONS = frozenset({Permission.CONTENT, Permission.DOWNLOAD, Permission.SEARCH})
_DESK_WORK = frozenset(
    {
        Permission.METADATA,
        Permission.CONTENT,
        Permission.DOWNLOAD,
        Permission.SEARCH,
        Permission.SEND,
        Permission.CLAIM,
    }
)

PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.HANDLER: _DESK_WORK,
    Role.SUPERVISOR: _DESK_WORK | {Permission.DASHBOARDS, Permission.SUBJECT_REPORT},
    Role.DUTY_OFFICER: _DESK_WORK | {Permission.DASHBOARDS, Permission.ESCALATIONS},
    Role.OPERATOR: frozenset({Permission.METADATA, Permission.QUEUES, Permission.OPERATIONS}),
    Role.AUDITOR: frozenset({Permission.AUDIT, Permission.SUBJECT_REPORT}),
}
"""What each role may do. Desk-bound permissions (``DESK_BOUND``) apply to the desks in scope."""

# The permissions that concern one desk's messages; the others are not about a desk.
DESK_BOUND = _DESK_WORK
# The roles whose scope is every desk; a handler's is the desks named for the user.
ALL_DESKS = frozenset({Role.SUPERVISOR, Role.DUTY_OFFICER, Role.OPERATOR})


@dataclass(frozen=True)
class Principal:
    """Who acts: a user or an API key, with its roles and (for the handler role) its desks."""

    name: str  # a user's name, or "key:" and an API key's name
    roles: frozenset[Role]
    desks: frozenset[str] = frozenset()

    def role_for(self, permission: Permission, desk: str | None = None) -> Role | None:
        """The role that allows ``permission`` (on ``desk``, for a desk-bound one), in the order
        of Role; None when none does. The console answers a desk out of scope with 404."""
        for role in Role:
            if role not in self.roles or permission not in PERMISSIONS[role]:
                continue
            if permission not in DESK_BOUND or role in ALL_DESKS:
                return role
            if desk is not None and desk in self.desks:
                return role
        return None

    def may(self, permission: Permission, desk: str | None = None) -> bool:
        return self.role_for(permission, desk) is not None

    def desks_for(self, permission: Permission) -> frozenset[str] | None:
        """The desks on which ``permission`` is allowed: None for every desk (a role of
        ALL_DESKS that has it), else the handler's desks, empty when no role has it."""
        if any(role in ALL_DESKS and permission in PERMISSIONS[role] for role in self.roles):
            return None
        if Role.HANDLER in self.roles and permission in PERMISSIONS[Role.HANDLER]:
            return self.desks
        return frozenset()


def parse_roles(values: Iterable[str]) -> frozenset[Role]:
    """Roles by name; ValueError naming the unknown one."""
    roles = set()
    for value in values:
        if value not in ROLES:
            raise ValueError(f"unknown role {value!r}: one of {', '.join(ROLES)}")
        roles.add(Role(value))
    return frozenset(roles)


def check_assignment(roles: frozenset[Role], desks: frozenset[str]) -> None:
    """A consistent set of roles and desks; ValueError with the reason otherwise.

    Roles must not be empty; desks go with the handler role and only with it; an auditor is
    nothing else (whoever audits the access log must not be in it as a reader of content)."""
    if not roles:
        raise ValueError("give at least one role")
    for desk in desks:
        if DESK.fullmatch(desk) is None:
            raise ValueError(f"{desk!r} is not a desk name")
    if Role.HANDLER in roles and not desks:
        raise ValueError("a handler needs at least one desk (--desk)")
    if desks and Role.HANDLER not in roles:
        raise ValueError("desks are given to handlers only")
    if Role.AUDITOR in roles and len(roles) > 1:
        raise ValueError("an auditor holds no other role")


def check_name(name: str) -> str:
    if NAME.fullmatch(name) is None:
        raise ValueError(
            f"{name!r} is not a valid name: 2 to 32 of a-z, 0-9, '.', '_', '-', starting "
            "with a letter"
        )
    return name
