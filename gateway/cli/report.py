"""`gateway report`: the statistics report over a period, as HTML, PDF, CSV or JSON."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.cli import acting
from gateway.core import config as configuration
from gateway.reports import tables
from gateway.reports.figures import Report, make_report, scope_of
from gateway.service.services import open_services

EXIT_OK, EXIT_USAGE = 0, 2
FORMATS = ("html", "pdf", "csv", "json")


def register(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="statistics over a period: forms, hits, deadline compliance, times, refusals",
        description="The statistics of the UTC days FROM to TO (both included): forms per type, "
        "partner, direction and month; hits per alert category; reply deadlines met in time; "
        "time to receipt and to reply; refusals; outbound retries and failures; the volume "
        "trend. Codes, counts and references only. Written to --out, else to standard output "
        "(a PDF needs --out).",
    )
    report.add_argument("--from", dest="first", required=True, type=_day, help="YYYY-MM-DD")
    report.add_argument("--to", dest="last", required=True, type=_day, help="YYYY-MM-DD")
    report.add_argument("--partner", help="only this partner's messages")
    report.add_argument("--desk", help="only this desk's messages (refusals are left out)")
    report.add_argument("--format", choices=FORMATS, default="html")
    report.add_argument("--out", type=Path, help="the file to write")
    report.set_defaults(run=cmd_report)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day such as 2026-01-31") from None


def rendered(report: Report, fmt: str) -> bytes:
    """The report in ``fmt`` (one of FORMATS), as the bytes to write."""
    if fmt == "json":
        return tables.to_json(report).encode()
    if fmt == "csv":
        return tables.to_csv(report).encode()
    from gateway.reports import htmlpage  # noqa: PLC0415 (matplotlib only when charts are drawn)

    if fmt == "html":
        return htmlpage.page(report).encode()
    from gateway.reports import pdf  # noqa: PLC0415 (WeasyPrint only for a PDF)

    return pdf.to_pdf(htmlpage.page(report, charts_as="png"))


def cmd_report(args: argparse.Namespace) -> int:
    if args.format == "pdf" and args.out is None:
        print("gateway report: a PDF needs --out FILE", file=sys.stderr)
        return EXIT_USAGE
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        try:
            scope = scope_of(args.first, args.last, services.clock.now(), args.partner, args.desk)
        except ValueError as exc:
            print(f"gateway report: {exc}", file=sys.stderr)
            return EXIT_USAGE
        report = make_report(services.ledger, scope, ZoneInfo(config.web.time_zone))
    data = rendered(report, args.format)
    failed = acting.write_whole(data, args.out)  # a whole report or none under its name
    if failed is not None:
        print(f"gateway report: {failed}", file=sys.stderr)
        return EXIT_USAGE
    if args.out is None:
        return EXIT_OK
    print(f"report written to {args.out} ({len(data)} bytes)", file=sys.stderr)
    return EXIT_OK
