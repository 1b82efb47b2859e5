"""The console's search page (``/search``): a form posted with its CSRF token (the terms never
in the URL, which servers and proxies log) with a person's name, date of birth and tolerance, a
document, vehicle, phone, e-mail address or reference, the purpose and a case reference or a
reason; each field filled is one search of gateway.service.searching, as `gateway search` and
/api/v1/search make it (recorded in search_requests and the access log). Results are limited to
the user's desks, each saying why it matched and linking to its message. For the roles that
search (handlers, supervisors, duty officers); others are refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.roles import Permission
from gateway.core.errors import SearchRefused
from gateway.forms.entities import DOCUMENT, EMAIL, PERSON, PHONE, REFERENCE, VEHICLE
from gateway.search import matching
from gateway.service import searching
from gateway.web.console import SignedIn, check_csrf, console_of, require_user

# The identifier fields of the page, each searched as its kind.
IDENTIFIERS = (
    (DOCUMENT, "document", "Document number"),
    (VEHICLE, "vehicle", "Vehicle (plate or VIN)"),
    (PHONE, "phone", "Phone number"),
    (EMAIL, "email", "E-mail address"),
    (REFERENCE, "reference", "Reference (alert, case, notice)"),
)
FIELDS = ("name", "born", "within", *(field for _, field, _ in IDENTIFIERS))
MAX_WITHIN = 366


@dataclass(frozen=True)
class Asked:
    """One search of the page, done: what was asked (as the user wrote it) and what it found."""

    label: str
    value: str
    done: searching.Searched


async def search_page(request: Request) -> Response:
    console = console_of(request)
    signed = await _searcher(request)
    return console.page(request, "search.html", _context(signed, {}, [], ""))


async def search_post(request: Request) -> Response:
    console = console_of(request)
    signed = await _searcher(request)
    submitted = await check_csrf(request, signed)
    try:
        why = searching.Why.of(
            submitted.get("purpose") or None,
            submitted.get("case_reference") or None,
            submitted.get("reason") or None,
        )
        queries = _queries(submitted)
    except SearchRefused as refused:
        return console.page(
            request, "search.html", _context(signed, submitted, [], refused.detail), status=400
        )

    def run() -> list[Asked]:
        return [
            Asked(
                label,
                query.value,
                searching.search(
                    console.services,
                    console.access.access_log,
                    signed.user.principal,
                    query,
                    why,
                ),
            )
            for label, query in queries
        ]

    try:
        asked = await run_in_threadpool(run)
    except SearchRefused as refused:  # a role that does not search, seen by the service
        raise HTTPException(403, refused.detail) from None
    return console.page(request, "search.html", _context(signed, submitted, asked, ""))


def _queries(submitted: dict[str, str]) -> list[tuple[str, matching.Query]]:
    """The searches the filled fields ask for; SearchRefused when none is filled or one is
    wrong (nothing is searched then)."""
    queries: list[tuple[str, matching.Query]] = []
    name = submitted.get("name", "").strip()
    born = _born(submitted.get("born", "").strip())
    within = _within(submitted.get("within", "").strip())
    if name:
        queries.append(("Person", matching.Query(PERSON, name, born=born, born_within_days=within)))
    elif born is not None:
        raise SearchRefused("a date of birth goes with a name")
    for kind, field, label in IDENTIFIERS:
        value = submitted.get(field, "").strip()
        if value:
            queries.append((label, matching.Query(kind, value)))
    if not queries:
        raise SearchRefused(
            "fill at least one field: a name, a document, a vehicle, a phone, an e-mail "
            "address or a reference"
        )
    return queries


def _born(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SearchRefused("the date of birth is a date, YYYY-MM-DD") from None


def _within(text: str) -> int:
    if not text:
        return 0
    if not text.isdigit() or int(text) > MAX_WITHIN:
        raise SearchRefused(f"the date-of-birth tolerance is 0 to {MAX_WITHIN} days")
    return int(text)


def _context(
    signed: SignedIn, submitted: dict[str, str], asked: list[Asked], error: str
) -> dict[str, Any]:
    return {
        "signed": signed,
        "values": {name: submitted.get(name, "") for name in FIELDS},
        "purpose": submitted.get("purpose", ""),
        "case_reference": submitted.get("case_reference", ""),
        "reason": submitted.get("reason", ""),
        "purposes": searching.PURPOSES,
        "identifiers": IDENTIFIERS,
        "asked": asked,
        "error": error,
    }


async def _searcher(request: Request) -> SignedIn:
    signed = await require_user(request)
    if signed.user.principal.desks_for(Permission.SEARCH) == frozenset():
        raise HTTPException(403, "searching is for handlers, supervisors and duty officers")
    return signed
