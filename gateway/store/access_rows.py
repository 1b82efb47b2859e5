"""The audit entries of the access log (who saw what, logins, changes to users): read by kind,
user and time for the auditor. SQL only; what the entries mean is gateway.access.accesslog's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select

from gateway.store.audit import AuditEntry
from gateway.store.ledger import as_utc, audit
from gateway.store.unit import Transaction


def entries(
    tx: Transaction,
    *,
    kind_prefixes: Sequence[str],
    reason_prefix: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    newest_first: bool = False,
    limit: int = 1000,
) -> list[AuditEntry]:
    """Entries whose kind starts with one of ``kind_prefixes`` and whose reason starts with
    ``reason_prefix`` (when given), at or after ``since`` and before ``until``, with a sequence
    number below ``before`` (the last of the page before: keyset, never OFFSET), oldest first
    (newest with ``newest_first``), at most ``limit``."""
    statement = select(audit).where(
        or_(*(audit.c.kind.startswith(prefix, autoescape=True) for prefix in kind_prefixes))
    )
    if reason_prefix is not None:
        statement = statement.where(audit.c.reason.startswith(reason_prefix, autoescape=True))
    if since is not None:
        statement = statement.where(audit.c.at >= since)
    if until is not None:
        statement = statement.where(audit.c.at < until)
    if before is not None:
        statement = statement.where(audit.c.seq < before)
    order = audit.c.seq.desc() if newest_first else audit.c.seq
    rows = tx.connection.execute(statement.order_by(order).limit(limit)).all()
    return [AuditEntry(**{**dict(row._mapping), "at": as_utc(row.at)}) for row in rows]
