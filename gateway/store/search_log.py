"""The searches' terms, kept apart from the audit chain (which carries only a row's id and
digest): written with the search's access-log line, read by auditors, purged with retention."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select

from gateway.store.ledger import as_utc, search_requests
from gateway.store.unit import Transaction


@dataclass(frozen=True)
class SearchRequest:
    id: int
    at: datetime
    user_name: str
    role: str
    purpose: str
    case_reference: str | None
    reason: str | None
    terms: dict[str, str]
    hits: int
    digest: str


def digest_of(
    *,
    at: datetime,
    user_name: str,
    purpose: str,
    case_reference: str | None,
    reason: str | None,
    terms: Mapping[str, str],
) -> str:
    """SHA-256 over what the row says, in a fixed form: the chain line's proof of the terms."""
    canonical = json.dumps(
        [at.isoformat(), user_name, purpose, case_reference, reason, dict(terms)],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def add_in(
    tx: Transaction,
    *,
    at: datetime,
    user_name: str,
    role: str,
    purpose: str,
    case_reference: str | None,
    reason: str | None,
    terms: Mapping[str, str],
    hits: int,
) -> tuple[int, str]:
    """Record a search; returns its id and digest."""
    digest = digest_of(
        at=at,
        user_name=user_name,
        purpose=purpose,
        case_reference=case_reference,
        reason=reason,
        terms=terms,
    )
    result = tx.connection.execute(
        insert(search_requests).values(
            at=at,
            user_name=user_name,
            role=role,
            purpose=purpose,
            case_reference=case_reference,
            reason=reason,
            terms=json.dumps(dict(terms), sort_keys=True, ensure_ascii=False),
            hits=hits,
            digest=digest,
        )
    )
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the search request was not recorded")
    return int(key[0]), digest


def get(tx: Transaction, request_id: int) -> SearchRequest | None:
    row = tx.connection.execute(
        select(search_requests).where(search_requests.c.id == request_id)
    ).first()
    if row is None:
        return None
    return SearchRequest(
        id=row.id,
        at=as_utc(row.at),
        user_name=row.user_name,
        role=row.role,
        purpose=row.purpose,
        case_reference=row.case_reference,
        reason=row.reason,
        terms=json.loads(row.terms),
        hits=row.hits,
        digest=row.digest,
    )


def purge_before_in(tx: Transaction, before: datetime) -> int:
    """Delete the searches made before ``before``; returns how many."""
    result = tx.connection.execute(delete(search_requests).where(search_requests.c.at < before))
    return int(result.rowcount or 0)
