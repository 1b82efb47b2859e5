"""`gateway search`: search what was exchanged, as a user, with a purpose; recorded for auditors."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any

from gateway.access.setup import open_access
from gateway.cli import acting
from gateway.core import config as configuration
from gateway.core.errors import SearchRefused
from gateway.forms.entities import KINDS
from gateway.search import matching
from gateway.service import searching
from gateway.service.services import open_services

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def register(commands: Any) -> None:
    search = commands.add_parser(
        "search",
        help="search persons, documents, vehicles, ... in what was exchanged (with a purpose)",
        description="Candidates come from the search index; each result says why it matched. "
        "A search needs a purpose and a case reference or a short reason; it is recorded in "
        "the access log (its terms in their own table, for auditors). Results are limited "
        "to the desks the user may search.",
    )
    search.add_argument("value", help="a name, a document or plate number, a phone, ...")
    search.add_argument("--kind", choices=KINDS, default="person")
    search.add_argument("--born", type=date.fromisoformat, help="date of birth, YYYY-MM-DD")
    search.add_argument("--within", type=int, default=0, help="days the birth date may be off")
    search.add_argument("--threshold", type=float, help="the score a result needs (0-100]")
    search.add_argument("--limit", type=int, default=50)
    search.add_argument("--user", required=True, help="who searches (a user of `gateway users`)")
    search.add_argument("--purpose", choices=searching.PURPOSES, help="why (required)")
    search.add_argument("--case", help="the case reference the search is for")
    search.add_argument("--reason", help="or a short reason (3-200 characters)")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.set_defaults(run=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    try:
        why = searching.Why.of(args.purpose, args.case, args.reason)
        query = matching.Query(
            args.kind,
            args.value,
            born=args.born,
            born_within_days=args.within,
            threshold=args.threshold,
            limit=args.limit,
        )
    except SearchRefused as refused:
        print(f"gateway: search refused: {refused.detail}", file=sys.stderr)
        return EXIT_USAGE
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        try:
            principal = acting.principal_for(access, args.user)
        except acting.UserRefused as refused:
            print(f"gateway: {refused.detail}", file=sys.stderr)
            return refused.code
        try:
            done = searching.search(services, access.access_log, principal, query, why)
        except SearchRefused as refused:
            print(f"gateway: search refused: {refused.detail}", file=sys.stderr)
            return EXIT_REJECTED
    if args.json:
        print(json.dumps(searching.as_json(done), indent=2, ensure_ascii=False))
        return EXIT_OK
    found = done.found
    print(
        f"{len(found.hits)} result(s) of {found.candidates} candidate(s); search {done.search_id}"
    )
    if not found.fuzzy_index:
        print("note: no trigram index (pg_trgm not installed): exact keys only, no typos")
    for hit in found.hits:
        where = hit.candidate.where
        print(
            f"{hit.score:5.1f}  {hit.candidate.row.kind} {hit.candidate.row.shown}"
            f"  born {hit.candidate.row.born or '-'}  message {where.message_id} "
            f"({where.direction} {where.form} {where.partner}, desk {where.desk or '-'})"
        )
        for reason in hit.why:
            print(f"       {reason}")
    return EXIT_OK
