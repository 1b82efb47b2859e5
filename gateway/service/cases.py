"""Cases as users work on them (console, CLI): list, show, and by hand link, unlink, merge, close,
reopen, open around a message, change the owner desk; who may do which; each change a timeline
event and an audit entry (user, case number, ledger ids, reason: never content); and the regroup
that catches up on messages the automatic grouping missed.

The rules: handlers see and act on the cases of their desks, supervisors and duty officers on
every case (and only they change a case's desk); auditors read, never act; operators see no case.
A case out of a user's scope is "not found" (the console answers 404). Every action needs a
reason: one printable line, codes and references only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from gateway.access.accesslog import AccessLog, Purpose, Seen
from gateway.access.roles import DESK, Permission, Principal, Role
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.store import case_rows, grouping, search_rows
from gateway.store.audit import AuditLog
from gateway.store.case_rows import BY_HAND, CLOSED, OPEN, Case, CaseEvent, Member
from gateway.store.grouping import ToGroup
from gateway.store.ledger import Ledger, MessageRow
from gateway.store.unit import Transaction

log = logging.getLogger("gateway.cases")
REASON_LIMIT = 200
REGROUP_BATCH = 500
# Why a role consults a case's messages, written in the access log with the view.
PURPOSES = {
    Role.HANDLER: Purpose.CASE_WORK,
    Role.SUPERVISOR: Purpose.SUPERVISION,
    Role.DUTY_OFFICER: Purpose.ESCALATION,
    Role.AUDITOR: Purpose.AUDIT,
}
MESSAGE_NAME_LIMIT = 64
LARGEST_ID = 2**63 - 1  # the databases' integer: a larger id is no case or message


class CaseRefused(Exception):
    """An action that cannot be made as asked; ``str()`` says why in one line, for the user."""


class CaseNotFound(CaseRefused):
    """No such case, or not one the user may see (the console answers 404 for both)."""


@dataclass(frozen=True)
class CaseView:
    case: Case
    members: list[Member]
    timeline: list[CaseEvent]


def check_reason(reason: str) -> str:
    cleaned = " ".join(reason.split())
    if not cleaned or len(cleaned) > REASON_LIMIT or not cleaned.isprintable():
        raise CaseRefused(
            f"a reason is required: one printable line of 1 to {REASON_LIMIT} characters"
        )
    return cleaned


def may_view(principal: Principal, desk: str | None) -> bool:
    return principal.may(Permission.CONTENT, desk) or principal.may(Permission.AUDIT)


def may_see_cases(principal: Principal) -> bool:
    """Whether any case may be seen: a form's content on some desk, or the audit."""
    return principal.desks_for(Permission.CONTENT) != frozenset() or principal.may(Permission.AUDIT)


def may_act(principal: Principal, desk: str | None) -> bool:
    return principal.may(Permission.CLAIM, desk)


class Cases:
    def __init__(self, ledger: Ledger, audit: AuditLog) -> None:
        self.ledger = ledger
        self.audit = audit

    # -- reads ---------------------------------------------------------------------------

    def listed(
        self, principal: Principal | None, *, desk: str | None = None, status: str | None = None
    ) -> list[Case]:
        """Cases newest first; ``principal`` None: the gateway's own command line (every case,
        metadata only)."""
        if status is not None and status not in case_rows.STATUSES:
            raise CaseRefused(f"status is one of {', '.join(case_rows.STATUSES)}")
        if principal is None or principal.may(Permission.AUDIT):
            desks = None
        else:
            desks = principal.desks_for(Permission.CONTENT)
            if desks is not None and not desks:
                raise CaseRefused("your role sees no cases")
        with self.ledger.reading() as tx:
            return case_rows.listed(tx, desks=desks, desk=desk, status=status)

    def find(self, principal: Principal | None, wanted: str) -> Case:
        """A case by id or number, if ``principal`` may see it; CaseNotFound otherwise."""
        with self.ledger.reading() as tx:
            return self._visible(tx, principal, wanted)

    def view(self, principal: Principal | None, wanted: str) -> CaseView:
        with self.ledger.reading() as tx:
            case = self._visible(tx, principal, wanted)
            return CaseView(case, case_rows.members(tx, case.id), case_rows.timeline(tx, case.id))

    def message(self, wanted: str) -> MessageRow:
        """A message by ledger id or Reference (receipts left out); CaseRefused when none or
        several."""
        wanted = wanted.strip()
        if wanted.isdigit() and int(wanted) <= LARGEST_ID:
            try:
                return self.ledger.get(int(wanted))
            except KeyError:
                raise CaseRefused(f"no message {wanted}") from None
        if not wanted or len(wanted) > MESSAGE_NAME_LIMIT:
            raise CaseRefused("name the message by its Reference or ledger id")
        found = [row for row in self.ledger.by_reference(wanted) if row.form != RECEIPT_FORM]
        if not found:
            raise CaseRefused(f"no message {wanted}")
        if len(found) > 1:
            ids = ", ".join(str(row.id) for row in found)
            raise CaseRefused(f"several messages have Reference {wanted}: give a ledger id ({ids})")
        return found[0]

    def view_logged(self, principal: Principal, wanted: str, access_log: AccessLog) -> CaseView:
        """``view`` for a user, each message shown written to the access log (one line a
        message, the role that allowed it and its purpose) before it is returned."""
        view = self.view(principal, wanted)
        role = principal.role_for(Permission.CONTENT, view.case.desk) or Role.AUDITOR
        purpose = PURPOSES.get(role, Purpose.CASE_WORK)
        if view.members:
            with self.ledger.transaction() as tx:
                for member in view.members:
                    access_log.record_view(
                        tx,
                        principal.name,
                        role,
                        Seen(
                            member.message_id,
                            partner=member.partner,
                            form=member.form,
                            reference=member.reference,
                            part="case",
                        ),
                        purpose,
                    )
        return view

    def case_of(self, principal: Principal, message_id: int) -> Case | None:
        with self.ledger.reading() as tx:
            case_id = case_rows.case_of_message(tx, message_id)
            if case_id is None:
                return None
            found = case_rows.get(tx, case_id)
        return found if found is not None and may_view(principal, found.desk) else None

    # -- actions -------------------------------------------------------------------------

    def open_around(self, principal: Principal, message: MessageRow, reason: str) -> Case:
        """A new case by hand, holding ``message`` (which must be in none)."""
        reason = check_reason(reason)
        self._require_message(principal, message)
        now = self.ledger.clock.now()
        with self.ledger.transaction() as tx:
            if case_rows.case_of_message(tx, message.id) is not None:
                raise CaseRefused(f"ledger {message.id} is in a case already")
            case_id = case_rows.open_in(
                tx,
                desk=message.desk,
                title=f"{message.form} {message.reference}",
                actor=principal.name,
                reason=reason,
                now=now,
            )
            self._add(tx, principal, case_id, message, reason, now=now)
            case = self._get(tx, case_id)
            self._audit(tx, "case.opened", principal, case, reason=reason, message=message)
        return case

    def link(self, principal: Principal, wanted: str, message: MessageRow, reason: str) -> Case:
        """``message`` (in no case) joins an open case."""
        reason = check_reason(reason)
        self._require_message(principal, message)
        now = self.ledger.clock.now()
        with self.ledger.transaction() as tx:
            case = self._actionable(tx, principal, wanted)
            if case.status != OPEN:
                raise CaseRefused(f"case {case.number} is closed: reopen it first")
            current = case_rows.case_of_message(tx, message.id)
            if current is not None:
                raise CaseRefused(
                    f"ledger {message.id} is in case {self._get(tx, current).number} already: "
                    "unlink it there or merge the cases"
                )
            self._add(tx, principal, case.id, message, reason, now=now)
            self._audit(tx, "case.linked", principal, case, reason=reason, message=message)
            return self._get(tx, case.id)

    def unlink(self, principal: Principal, wanted: str, message: MessageRow, reason: str) -> Case:
        reason = check_reason(reason)
        now = self.ledger.clock.now()
        with self.ledger.transaction() as tx:
            case = self._actionable(tx, principal, wanted)
            if not case_rows.remove_member_in(tx, case.id, message.id):
                raise CaseRefused(f"ledger {message.id} is not in case {case.number}")
            case_rows.event_in(
                tx, case.id, "unlinked", principal.name, reason, now=now, message_id=message.id
            )
            self._audit(tx, "case.unlinked", principal, case, reason=reason, message=message)
            return self._get(tx, case.id)

    def merge(self, principal: Principal, wanted: str, into: str, reason: str) -> Case:
        """Every member of ``wanted`` moves into the open case ``into``; ``wanted`` is closed,
        pointing to it."""
        reason = check_reason(reason)
        now = self.ledger.clock.now()
        with self.ledger.transaction() as tx:
            source = self._actionable(tx, principal, wanted)
            target = self._actionable(tx, principal, into)
            if source.id == target.id:
                raise CaseRefused("a case cannot be merged into itself")
            if target.status != OPEN:
                raise CaseRefused(f"case {target.number} is closed: reopen it first")
            moved = case_rows.move_members_in(tx, source.id, target.id)
            if not case_rows.set_status_in(
                tx, source.id, source.status, CLOSED, now, by=principal.name, merged_into=target.id
            ):
                raise CaseRefused("the case changed meanwhile: reload")
            case_rows.event_in(
                tx, source.id, "merged", principal.name, reason, now=now, other_case=target.id
            )
            case_rows.event_in(
                tx, target.id, "merged", principal.name, reason, now=now, other_case=source.id
            )
            self._audit(
                tx,
                "case.merged",
                principal,
                target,
                reason=f"from {source.number}, {moved} message(s): {reason}",
            )
            return self._get(tx, target.id)

    def close(self, principal: Principal, wanted: str, reason: str) -> Case:
        """Closed: its retention starts now."""
        return self._move(principal, wanted, OPEN, CLOSED, kind="closed", reason=reason)

    def reopen(self, principal: Principal, wanted: str, reason: str) -> Case:
        """Open again: its retention stops until it is closed again."""
        return self._move(principal, wanted, CLOSED, OPEN, kind="reopened", reason=reason)

    def set_desk(self, principal: Principal, wanted: str, desk: str, reason: str) -> Case:
        """A new owner desk, by a supervisor or a duty officer."""
        reason = check_reason(reason)
        if DESK.fullmatch(desk) is None:
            raise CaseRefused(f"{desk!r} is not a desk name")
        if not principal.may(Permission.DASHBOARDS):
            raise CaseRefused("only a supervisor or a duty officer changes a case's desk")
        now = self.ledger.clock.now()
        with self.ledger.transaction() as tx:
            case = self._actionable(tx, principal, wanted)
            case_rows.set_desk_in(tx, case.id, desk, now)
            case_rows.event_in(tx, case.id, "desk", principal.name, f"to {desk}: {reason}", now=now)
            self._audit(tx, "case.desk", principal, case, reason=f"{case.desk} to {desk}: {reason}")
            return self._get(tx, case.id)

    def regroup(self, now: datetime | None = None) -> int:
        """The automatic grouping run again for every message in no case, oldest first; returns
        how many joined or opened a case. What the grouping does at acceptance, caught up."""
        now = now or self.ledger.clock.now()
        grouped = 0
        last = 0
        while True:
            with self.ledger.transaction() as tx:
                batch = case_rows.caseless_after(tx, last, REGROUP_BATCH)
                for row in batch:
                    message_id = row.id
                    refs = grouping.grouping_references(search_rows.references_of(tx, message_id))
                    found = grouping.group_safely_in(
                        tx,
                        ToGroup(
                            message_id,
                            row.partner,
                            row.form,
                            row.reference,
                            row.in_reply_to,
                            row.desk,
                            refs,
                        ),
                        now,
                    )
                    grouped += found is not None
            if len(batch) < REGROUP_BATCH:
                break
            last = batch[-1].id
        if grouped:
            log.info("regroup: %d message(s) grouped into cases", grouped)
        return grouped

    # -- the rules and the records -------------------------------------------------------

    def _move(
        self,
        principal: Principal,
        wanted: str,
        expected: str,
        status: str,
        *,
        kind: str,
        reason: str,
    ) -> Case:
        reason = check_reason(reason)
        now = self.ledger.clock.now()
        with self.ledger.transaction() as tx:
            case = self._actionable(tx, principal, wanted)
            if case.status != expected:
                raise CaseRefused(f"case {case.number} is {case.status}")
            if not case_rows.set_status_in(tx, case.id, expected, status, now, by=principal.name):
                raise CaseRefused("the case changed meanwhile: reload")
            case_rows.event_in(tx, case.id, kind, principal.name, reason, now=now)
            self._audit(tx, f"case.{kind}", principal, case, reason=reason)
            return self._get(tx, case.id)

    def _add(
        self,
        tx: Transaction,
        principal: Principal,
        case_id: int,
        message: MessageRow,
        reason: str,
        *,
        now: datetime,
    ) -> None:
        case_rows.link_in(
            tx, case_id, [message.id], how=BY_HAND, by=principal.name, reason=reason, now=now
        )

    def _require_message(self, principal: Principal, message: MessageRow) -> None:
        if not may_act(principal, message.desk):
            raise CaseNotFound(f"no message {message.id}")

    def _visible(self, tx: Transaction, principal: Principal | None, wanted: str) -> Case:
        case = _lookup(tx, wanted)
        if case is None or (principal is not None and not may_view(principal, case.desk)):
            raise CaseNotFound(f"no case {wanted}")
        return case

    def _actionable(self, tx: Transaction, principal: Principal, wanted: str) -> Case:
        case = self._visible(tx, principal, wanted)
        if not may_act(principal, case.desk):
            raise CaseRefused("your role may not change cases of this desk")
        return case

    def _get(self, tx: Transaction, case_id: int) -> Case:
        found = case_rows.get(tx, case_id)
        if found is None:  # pragma: no cover - read in the transaction that changed it
            raise CaseNotFound(f"no case {case_id}")
        return found

    def _audit(
        self,
        tx: Transaction,
        kind: str,
        principal: Principal,
        case: Case,
        *,
        reason: str,
        message: MessageRow | None = None,
    ) -> None:
        where = f" ledger={message.id}" if message is not None else ""
        self.audit.append_in(
            tx,
            kind,
            partner=message.partner if message is not None else "",
            form=message.form if message is not None else "",
            reference=case.number,
            reason=f"user={principal.name}{where} {reason}"[:300],
        )


def _lookup(tx: Transaction, wanted: str) -> Case | None:
    wanted = wanted.strip()
    if wanted.isdigit():
        return case_rows.get(tx, int(wanted)) if int(wanted) <= LARGEST_ID else None
    return case_rows.by_number(tx, wanted.upper())
