"""Searches with their purpose, recorded for the auditor (`gateway search`, /api/v1/search), and
the search index rebuilt from the stored messages (`gateway index rebuild`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.access.accesslog import AccessLog, Purpose
from gateway.access.roles import Permission, Principal, Role
from gateway.core.errors import GatewayError, SearchRefused
from gateway.crypto import pgpmime
from gateway.search import index, matching
from gateway.service.services import Services
from gateway.store import case_refs, search_log, search_rows
from gateway.store.ledger import MessageRow
from gateway.store.search_rows import Where

BATCH = 200
PURPOSES = tuple(purpose.value for purpose in Purpose)
CASE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/._-]{1,63}")
REASON_LENGTH = (3, 200)


@dataclass(frozen=True)
class Why:
    """Why a search is made: a Purpose code, and a case reference or a short reason."""

    purpose: Purpose
    case_reference: str | None
    reason: str | None

    @classmethod
    def of(cls, purpose: str | None, case_reference: str | None, reason: str | None) -> Why:
        """Checked; SearchRefused with what is missing or wrong."""
        if not purpose or purpose not in PURPOSES:
            raise SearchRefused(f"a search needs a purpose: one of {', '.join(PURPOSES)}")
        case_reference = case_reference.strip() if case_reference else None
        reason = " ".join(reason.split()) if reason else None
        if case_reference is None and reason is None:
            raise SearchRefused("a search needs a case reference or a short reason")
        if case_reference is not None and CASE_REFERENCE.fullmatch(case_reference) is None:
            raise SearchRefused(
                "a case reference is 2 to 64 letters, digits and / . _ - (no spaces)"
            )
        low, high = REASON_LENGTH
        if reason is not None and not low <= len(reason) <= high:
            raise SearchRefused(f"a reason is {low} to {high} characters")
        return cls(Purpose(purpose), case_reference, reason)


@dataclass(frozen=True)
class Searched:
    found: matching.Found
    search_id: int
    role: Role


def search(
    services: Services,
    access_log: AccessLog,
    principal: Principal,
    query: matching.Query,
    why: Why,
) -> Searched:
    """Run ``query`` on the desks ``principal`` may search, and record it in one transaction:
    its terms in search_requests, an access-log line with that row's id and digest. A principal
    whose roles do not search is refused (SearchRefused) and nothing is recorded."""
    desks = principal.desks_for(Permission.SEARCH)
    role = principal.role_for(Permission.SEARCH) or next(
        (
            allowed
            for desk in sorted(desks or ())
            if (allowed := principal.role_for(Permission.SEARCH, desk)) is not None
        ),
        None,
    )
    if role is None or (desks is not None and not desks):
        raise SearchRefused(f"{principal.name} has no role that searches")
    terms = {
        "kind": query.kind,
        "value": query.value,
        "born": query.born.isoformat() if query.born else "",
        "born_within_days": str(query.born_within_days),
        "threshold": str(query.least),
    }
    now = services.clock.now()
    with services.ledger.transaction() as tx:
        found = matching.search(tx, query, desks=desks)
        messages = len({hit.candidate.where.message_id for hit in found.hits})
        search_id, digest = search_log.add_in(
            tx,
            at=now,
            user_name=principal.name,
            role=str(role),
            purpose=str(why.purpose),
            case_reference=why.case_reference,
            reason=why.reason,
            terms=terms,
            hits=messages,
        )
        access_log.record_search(
            tx, principal.name, role, messages, why.purpose, search_id=search_id, digest=digest
        )
    return Searched(found, search_id, role)


@dataclass
class Rebuilt:
    messages: int = 0  # indexed again
    entries: int = 0
    not_kept: int = 0  # no readable copy: purged, or sent (only the sealed copy is kept)
    unreadable: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def as_json(done: Searched) -> dict[str, Any]:
    """A search's results as the CLI's --json and the API answer them."""
    return {
        "search_id": done.search_id,
        "candidates": done.found.candidates,
        "fuzzy_index": done.found.fuzzy_index,
        "results": [
            {
                "score": hit.score,
                "kind": hit.candidate.row.kind,
                "role": hit.candidate.row.role,
                "value": hit.candidate.row.shown,
                "born": hit.candidate.row.born,
                "country": hit.candidate.row.country,
                "message": hit.candidate.where.message_id,
                "direction": hit.candidate.where.direction,
                "partner": hit.candidate.where.partner,
                "form": hit.candidate.where.form,
                "desk": hit.candidate.where.desk,
                "indexed_at": hit.candidate.created_at.isoformat(),
                "why": list(hit.why),
            }
            for hit in done.found.hits
        ],
    }


def rebuild(services: Services) -> Rebuilt:
    """Empty the index and index again every received message whose verified copy is kept, one
    transaction per message; one taken in meanwhile, whose acceptance indexed it again, is left
    as it is. A form we sent is kept sealed to its partner only: its entries, written when it
    was queued, cannot be made again and are lost by a rebuild. The index's statistics are
    gathered again at the end (the planner's choices follow them), and on PostgreSQL its tables
    vacuumed (a search's reads index-only)."""
    done = Rebuilt()
    with services.ledger.transaction() as tx:
        search_rows.delete_all_in(tx)
    after = 0
    while True:
        with services.ledger.reading() as tx:
            rows = search_rows.messages_after(tx, after, BATCH)
        if not rows:
            with services.ledger.transaction() as tx:
                case_refs.refill_in(tx)  # the grouping's copy of the references, made again
                search_rows.analyze_in(tx)
            search_rows.vacuum(services.ledger.engine)  # a search's reads from the indexes alone
            return done
        for row in rows:
            after = row.id
            _again(services, row, done)


def _again(services: Services, row: MessageRow, done: Rebuilt) -> None:
    if row.direction != "inbound" or row.spool_key is None:
        done.not_kept += 1
        return
    try:
        body = services.bodies.read(row.id, row.spool_key)
    except KeyError:
        done.not_kept += 1
        return
    except ValueError:
        done.unreadable += 1
        return
    try:
        payload = pgpmime.parse_entity(body.entity)
        validation = services.validator.validate(payload.form)
        found = validation.entities()
    except (KeyError, ValueError, GatewayError):
        done.unreadable += 1
        return
    where = Where(row.id, row.direction, row.partner, row.desk, row.form)
    with services.ledger.transaction() as tx:
        # A message taken in since the index was emptied was indexed by its own acceptance:
        # written again, each of its entries would be found twice.
        if not search_rows.count_of_message(tx, row.id):
            done.entries += index.write_in(tx, where, found, row.created_at)
    done.messages += 1
