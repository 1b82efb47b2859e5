"""`gateway deadlines`: the open and paused deadlines by time left, and `deadlines close` for a
handler."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from datetime import datetime, timedelta
from typing import Any

from gateway.core import config as configuration
from gateway.service.services import open_services
from gateway.store import deadline_rows
from gateway.store.ledger import Ledger
from gateway.tracking.deadline_notices import iso_text, span_text
from gateway.tracking.sweep import close

EXIT_OK, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2
REASON_LIMIT = 200
_ACTOR = re.compile(r"[^A-Za-z0-9._-]")


def register(commands: Any) -> None:
    listing = commands.add_parser(
        "deadlines",
        help="open deadlines by time left; `deadlines close` ends one",
        description="Open receipt and reply deadlines, the most urgent first; a reply deadline "
        "paused while a request for clarification waits for its answer is listed with the time "
        "it will have left when it resumes.",
    )
    listing.add_argument("--overdue", action="store_true", help="only those past their due time")
    listing.add_argument("--desk", help="only the messages of this desk")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_deadlines)
    actions = listing.add_subparsers(title="deadlines commands", metavar="COMMAND")
    closing = actions.add_parser(
        "close",
        help="close the open deadlines of a Reference (audited)",
        description="Close every open deadline of the messages with this Reference, when "
        "nothing more is owed (answered by other means, withdrawn). Exit 1 if none is open.",
    )
    closing.add_argument("reference")
    closing.add_argument(
        "--reason", required=True, help="one line, codes and references only: no personal data"
    )
    closing.set_defaults(run=cmd_deadlines_close)


def open_deadlines(
    ledger: Ledger, now: datetime, *, overdue: bool = False, desk: str | None = None
) -> list[dict[str, Any]]:
    """The open and paused deadlines, the soonest due first, as the JSON output gives them
    (``paused_at``: since when a paused one waits, else null)."""
    with ledger.reading() as tx:
        rows = deadline_rows.listed(tx, due_by=now if overdue else None, desk=desk)
    return [
        {
            "reference": row.reference,
            "form": row.form,
            "partner": row.partner,
            "direction": row.direction,
            "kind": row.kind,
            "due": iso_text(row.due),
            "state": row.state,
            "paused_at": iso_text(row.paused_at) if row.paused_at is not None else None,
            "reminders_sent": row.reminders_sent,
            "escalations": row.escalations,
            "holder": row.holder,
        }
        for row in rows
    ]


def cmd_deadlines(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        now = services.clock.now()
        items = open_deadlines(services.ledger, now, overdue=args.overdue, desk=args.desk)
    if args.json:
        print(json.dumps(items, indent=2))
        return EXIT_OK
    if not items:
        print("(no open deadline)" if not args.overdue else "(nothing overdue)")
        return EXIT_OK
    print(
        f"{'REFERENCE':<20} {'FORM':<10} {'PARTNER':<12} {'DIRECTION':<9} {'KIND':<8} "
        f"{'DUE (UTC)':<17} {'TIME LEFT':<18} {'REMINDERS':<9} {'ESCALATED':<9} HELD BY"
    )
    for item in items:
        due = datetime.fromisoformat(item["due"])
        paused_at = item["paused_at"]
        left = due - (datetime.fromisoformat(paused_at) if paused_at else now)
        shown = span_text(left) if left > timedelta(0) else f"overdue {span_text(-left)}"
        if paused_at:
            shown = f"paused, {shown}"
        print(
            f"{item['reference']:<20} {item['form']:<10} {item['partner']:<12} "
            f"{item['direction']:<9} {item['kind']:<8} {due:%Y-%m-%d %H:%M} "
            f"{shown:<18} {item['reminders_sent']:<9} {item['escalations']:<9} "
            f"{item['holder'] or '-'}"
        )
    return EXIT_OK


def cmd_deadlines_close(args: argparse.Namespace) -> int:
    reason = " ".join(args.reason.split())
    if not reason or len(reason) > REASON_LIMIT or not reason.isprintable():
        print(
            f"gateway: --reason must be one printable line of 1 to {REASON_LIMIT} characters",
            file=sys.stderr,
        )
        return EXIT_USAGE
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        closed = close(services.ledger, services.audit, args.reference, reason, actor())
    if not closed:
        print(f"gateway: no open deadline under {args.reference}", file=sys.stderr)
        return EXIT_NOTHING
    print(f"closed {closed} deadline(s) of {args.reference}")
    return EXIT_OK


def actor() -> str:
    """Who closes: the login name, as a code (the audit takes no free text from it)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return _ACTOR.sub("_", name)[:32] or "unknown"
