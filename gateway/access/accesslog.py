"""The access log: every consultation of personal data (a view, a download, a search, an export,
a data-subject report)
appended to the audit chain with the user, the role that allowed it, the purpose and what was
seen (ledger id, partner, form, reference: never content); and its reader for the auditor.

An entry's reason reads ``user=ana role=handler purpose=case-work ledger=12 part=form``: codes
only, so the chain's rule (no personal data) holds. A search records how many messages it found,
never what was searched for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gateway.access.roles import NAME, Role
from gateway.store import access_rows
from gateway.store.audit import AuditEntry, AuditLog
from gateway.store.ledger import Ledger
from gateway.store.unit import Transaction

# The kinds of the access log and of the account events the auditor reads with it.
ACCESS_PREFIX = "access."
ACCOUNT_PREFIXES = ("login.", "user.", "apikey.")


class Access(StrEnum):
    VIEW = "access.view"
    DOWNLOAD = "access.download"
    SEARCH = "access.search"
    EXPORT = "access.export"
    REPORT = "access.report"  # a data-subject report


# The kinds an auditor filters on, each with the audit kinds (prefixes) it covers.
KINDS: dict[str, tuple[str, ...]] = {
    "consultations": (ACCESS_PREFIX,),
    "view": (Access.VIEW,),
    "download": (Access.DOWNLOAD,),
    "search": (Access.SEARCH,),
    "export": (Access.EXPORT,),
    "report": (Access.REPORT,),
    "accounts": ACCOUNT_PREFIXES,
    "all": (ACCESS_PREFIX, *ACCOUNT_PREFIXES),
}


class Purpose(StrEnum):
    """Why personal data was consulted: a code, never free text (which could hold a name)."""

    CASE_WORK = "case-work"
    REPLY = "reply"
    SUPERVISION = "supervision"
    ESCALATION = "escalation"
    DATA_SUBJECT_REQUEST = "data-subject-request"
    AUDIT = "audit"


@dataclass(frozen=True)
class Seen:
    """What was consulted: a message of the ledger and which part of it ("form",
    "attachment-2")."""

    ledger_id: int
    partner: str = ""
    form: str = ""
    reference: str = ""
    part: str = "form"


@dataclass(frozen=True)
class AccessEntry:
    """An access-log line as the auditor reads it."""

    seq: int
    at: datetime
    kind: str
    user: str
    role: str
    purpose: str
    partner: str
    form: str
    reference: str
    details: dict[str, str]


def _hex(digest: str) -> str:
    if digest and re.fullmatch(r"[0-9a-f]{64}", digest) is None:
        raise ValueError("a digest is 64 hexadecimal digits")
    return digest


def actor_field(user: str) -> str:
    """The user as the audit chain names it: a user's name or ``key:`` and an API key's name;
    ValueError for anything else (a name is a code: it cannot carry other data)."""
    name = user.removeprefix("key:")
    if NAME.fullmatch(name) is None:
        raise ValueError(f"{user!r} is not a user's or an API key's name")
    return user


class AccessLog:
    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def record_view(
        self,
        tx: Transaction,
        user: str,
        role: Role,
        what: Seen,
        purpose: Purpose,
        *,
        kind: Access = Access.VIEW,
    ) -> AuditEntry:
        """Append a view (or a download, an export: ``kind``) of ``what`` in the caller's
        transaction, last before its commit."""
        if kind is Access.SEARCH:
            raise ValueError("a search is recorded with record_search")
        reason = (
            f"user={actor_field(user)} role={Role(role)} purpose={Purpose(purpose)} "
            f"ledger={int(what.ledger_id)} part={_code(what.part)}"
        )
        return self.audit.append_in(
            tx,
            kind,
            partner=what.partner,
            form=what.form,
            reference=what.reference,
            reason=reason,
        )

    def record_listing(
        self,
        tx: Transaction,
        user: str,
        role: Role,
        listing: str,
        *,
        shown: int,
        purpose: Purpose,
        reference: str = "",
    ) -> AuditEntry:
        """Append a view of a register (``listing``, a code such as ``alerts``, or one of its
        records named by ``reference``): who, as what, why, and how many lines were shown."""
        reason = (
            f"user={actor_field(user)} role={Role(role)} purpose={Purpose(purpose)} "
            f"list={_code(listing)} shown={int(shown)}"
        )
        return self.audit.append_in(tx, Access.VIEW, reference=reference, reason=reason)

    def record_search(
        self,
        tx: Transaction,
        user: str,
        role: Role,
        hits: int,
        purpose: Purpose,
        *,
        search_id: int | None = None,
        digest: str = "",
    ) -> AuditEntry:
        """Append a search: who, as what, why, and how many messages it found; with the id
        and digest of its row in search_requests (gateway.store.search_log) that holds the
        terms, which the chain never does."""
        reason = (
            f"user={actor_field(user)} role={Role(role)} purpose={Purpose(purpose)} "
            f"hits={int(hits)}"
        )
        if search_id is not None:
            reason += f" search={int(search_id)}"
        return self.audit.append_in(tx, Access.SEARCH, digest=_hex(digest), reason=reason)

    def record_report(
        self,
        tx: Transaction,
        user: str,
        role: Role,
        messages: int,
        purpose: Purpose,
        *,
        search_id: int,
        digest: str,
        output: str,
    ) -> AuditEntry:
        """Append a data-subject report: who, as what, why, how many messages it lists and in
        which ``output`` (html, pdf); for whom only through the id and digest of its row in
        search_requests, which holds the terms (a name, a date of birth, a document)."""
        reason = (
            f"user={actor_field(user)} role={Role(role)} purpose={Purpose(purpose)} "
            f"messages={int(messages)} search={int(search_id)} output={_code(output)}"
        )
        return self.audit.append_in(tx, Access.REPORT, digest=_hex(digest), reason=reason)


def read(
    ledger: Ledger,
    *,
    user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    accounts: bool = False,
    limit: int = 1000,
) -> list[AccessEntry]:
    """The access log for the auditor: consultations (and, with ``accounts``, logins and changes
    to users and keys), of one user when given, in [since, until), oldest first."""
    return _read(
        ledger,
        KINDS["all"] if accounts else KINDS["consultations"],
        user=user,
        since=since,
        until=until,
        before=None,
        newest_first=False,
        limit=limit,
    )


def page(
    ledger: Ledger,
    *,
    kind: str = "consultations",
    user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[AccessEntry]:
    """A page of the access log for the auditor's view: entries of ``kind`` (a name of KINDS),
    of one user when given, in [since, until), below sequence number ``before``, newest first.
    ValueError for an unknown kind or a name that is not a user's."""
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not a kind of the access log: one of {', '.join(KINDS)}")
    return _read(
        ledger,
        KINDS[kind],
        user=user,
        since=since,
        until=until,
        before=before,
        newest_first=True,
        limit=limit,
    )


def _read(
    ledger: Ledger,
    prefixes: tuple[str, ...],
    *,
    user: str | None,
    since: datetime | None,
    until: datetime | None,
    before: int | None,
    newest_first: bool,
    limit: int,
) -> list[AccessEntry]:
    with ledger.reading() as tx:
        found = access_rows.entries(
            tx,
            kind_prefixes=prefixes,
            reason_prefix=None if user is None else f"user={actor_field(user)} ",
            since=since,
            until=until,
            before=before,
            newest_first=newest_first,
            limit=limit,
        )
    return [_entry(entry) for entry in found]


def _entry(entry: AuditEntry) -> AccessEntry:
    details = dict(field.split("=", 1) for field in entry.reason.split() if "=" in field)
    return AccessEntry(
        seq=entry.seq,
        at=entry.at,
        kind=entry.kind,
        user=details.pop("user", ""),
        role=details.pop("role", ""),
        purpose=details.pop("purpose", ""),
        partner=entry.partner,
        form=entry.form,
        reference=entry.reference,
        details=details,
    )


def _code(value: str) -> str:
    if not value or not all(c.isalnum() or c in "-_." for c in value) or len(value) > 32:
        raise ValueError(f"{value!r} is not a part's code such as 'form' or 'attachment-2'")
    return value
