"""`gateway subject-report`: every exchange that concerns a person, as HTML or PDF, for a data
subject's request; made as a user, with a purpose, and recorded in the access log."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

from gateway.access.setup import open_access
from gateway.cli import acting
from gateway.core import config as configuration
from gateway.core.errors import SearchRefused
from gateway.service import searching, subjects
from gateway.service.services import open_services

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def register(commands: Any) -> None:
    report = commands.add_parser(
        "subject-report",
        help="every exchange that concerns a person (name and date of birth, or a document)",
        description="For a data subject's request: every exchange about the person on every "
        "desk, found through the search index at a strict threshold (how, and each score, are "
        "in the report): date, direction, partner, form and its purpose, retention; and the "
        "partners to inform of a rectification or an erasure. For auditors (the "
        "data-protection officer) and supervisors. Recorded in the access log with its "
        "purpose; the name, date of birth and document are kept with the searches' terms, "
        "never in a log. Written to --out, else to standard output (a PDF needs --out).",
    )
    report.add_argument("--user", required=True, help="who asks (a user of `gateway users`)")
    report.add_argument("--name", help="the person's name (with --birth-date)")
    report.add_argument("--birth-date", type=_day, help="the date of birth, YYYY-MM-DD")
    report.add_argument("--document", help="a document number (passport, identity card, ...)")
    report.add_argument("--purpose", choices=searching.PURPOSES, help="why (required)")
    report.add_argument("--case", help="the case reference the report is for")
    report.add_argument("--reason", help="or a short reason (3-200 characters)")
    report.add_argument("--format", choices=subjects.OUTPUTS, default="html")
    report.add_argument("--out", type=Path, help="the file to write")
    report.set_defaults(run=cmd_subject_report)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day such as 1980-01-31") from None


def _refused(detail: str) -> None:
    print(f"gateway subject-report: refused: {detail}", file=sys.stderr)


def cmd_subject_report(args: argparse.Namespace) -> int:
    if args.format == "pdf" and args.out is None:
        _refused("a PDF needs --out FILE")
        return EXIT_USAGE
    try:
        why = searching.Why.of(args.purpose, args.case, args.reason)
        subject = subjects.Subject.of(args.name, args.birth_date, args.document)
    except SearchRefused as refused:
        _refused(refused.detail)
        return EXIT_USAGE
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        try:
            principal = acting.principal_for(access, args.user)
        except acting.UserRefused as refused:
            _refused(refused.detail)
            return refused.code
        try:
            made = subjects.report(
                services, access.access_log, principal, subject, why, output=args.format
            )
        except SearchRefused as refused:
            _refused(refused.detail)
            return EXIT_REJECTED
    data = subjects.rendered(made, args.format)
    failed = acting.write_whole(data, args.out)  # a whole report or none under its name
    if failed is not None:
        _refused(failed)
        return EXIT_USAGE
    if args.out is None:
        return EXIT_OK
    print(
        f"report {made.search_id} written to {args.out}: {len(made.exchanges)} exchange(s)",
        file=sys.stderr,
    )
    return EXIT_OK
