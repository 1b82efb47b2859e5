"""`gateway cases`: list and show cases (metadata only), act on them by hand as a user (link,
unlink, merge, close, reopen, open, desk; each with a reason, audited), and regroup the messages
the automatic grouping missed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.access.accounts import AccountError
from gateway.access.principals import principal_of
from gateway.access.roles import Principal
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.service.case_json import case_json, view_json
from gateway.service.cases import CaseRefused, Cases
from gateway.service.services import Services, open_services
from gateway.store.case_rows import STATUSES, Case
from gateway.tracking.deadline_notices import iso_text

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def register(commands: Any) -> None:
    listing = commands.add_parser(
        "cases",
        help="cases: messages grouped by reply chains, references or by hand",
        description="List cases, newest first (metadata only: numbers, desks, status, counts).",
    )
    listing.add_argument("--desk", help="only the cases of this desk")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_list)
    actions = listing.add_subparsers(title="cases commands", metavar="COMMAND")
    again = actions.add_parser("list", help="list cases (the same as `gateway cases`)")
    again.add_argument("--desk", help="only the cases of this desk")
    again.add_argument("--status", choices=STATUSES)
    again.add_argument("--json", action="store_true")
    again.set_defaults(run=cmd_list)
    show = actions.add_parser("show", help="a case: its members and timeline (metadata only)")
    show.add_argument("case", help="the case's number (C2026-000042) or id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_show)
    for name, text, what in (
        ("link", "put a message into an open case", ("case", "message")),
        ("unlink", "take a message out of its case", ("case", "message")),
        ("merge", "move every message of CASE into --into and close CASE", ("case",)),
        ("close", "close a case: its retention starts", ("case",)),
        ("reopen", "open a closed case again: its retention stops", ("case",)),
        ("open", "open a case by hand around a message in no case", ("message",)),
        ("desk", "give a case to another desk (supervisors, duty officers)", ("case", "desk")),
    ):
        action = actions.add_parser(name, help=f"{text} (audited)", description=f"{text}.")
        for positional in what:
            action.add_argument(
                positional,
                help={
                    "case": "the case's number or id",
                    "message": "the message's Reference or ledger id",
                    "desk": "the new owner desk",
                }[positional],
            )
        if name == "merge":
            action.add_argument("--into", required=True, help="the case that keeps them")
        action.add_argument("--user", required=True, help="who acts (a user of `gateway users`)")
        action.add_argument(
            "--reason", required=True, help="one line, codes and references only: no personal data"
        )
        action.add_argument("--json", action="store_true")
        action.set_defaults(run=cmd_action, action=name)
    regroup = actions.add_parser(
        "regroup",
        help="run the automatic grouping again for every message in no case",
        description="Catch up on messages the grouping at acceptance missed (a fault, a ledger "
        "upgraded from before cases): reply chains and references, as at acceptance.",
    )
    regroup.add_argument("--json", action="store_true")
    regroup.set_defaults(run=cmd_regroup)


def cmd_list(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        found = Cases(services.ledger, services.audit).listed(
            None, desk=args.desk, status=args.status
        )
    if args.json:
        print(json.dumps([case_json(case) for case in found], indent=2))
        return EXIT_OK
    if not found:
        print("(no case)")
        return EXIT_OK
    print(f"{'CASE':<14} {'STATUS':<7} {'DESK':<12} {'MESSAGES':>8} {'OPENED (UTC)':<17} TITLE")
    for case in found:
        print(
            f"{case.number:<14} {case.status:<7} {case.desk or '-':<12} {case.members:>8} "
            f"{case.opened_at:%Y-%m-%d %H:%M} {case.title}"
        )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        try:
            view = Cases(services.ledger, services.audit).view(None, args.case)
        except CaseRefused as refused:
            print(f"gateway: {refused}", file=sys.stderr)
            return EXIT_REJECTED
    if args.json:
        print(json.dumps(view_json(view), indent=2))
        return EXIT_OK
    case = view.case
    print(f"{case.number}  {case.status}  desk {case.desk or '-'}  {case.title}")
    print(f"opened {iso_text(case.opened_at)}", end="")
    if case.closed_at is not None:
        print(f", closed {iso_text(case.closed_at)} by {case.closed_by}", end="")
    print()
    print("\nmessages:")
    for member in view.members:
        print(
            f"  {member.message_id:>6} {member.direction:<8} {member.form:<10} "
            f"{member.reference:<20} {member.partner:<12} {iso_text(member.created_at)} "
            f"({member.how} by {member.by})"
        )
    print("\ntimeline:")
    for event in view.timeline:
        what = f" ledger {event.message_id}" if event.message_id is not None else ""
        other = f" case {event.other_case}" if event.other_case is not None else ""
        print(f"  {iso_text(event.at)} {event.kind:<9} {event.actor}{what}{other}: {event.reason}")
    return EXIT_OK


def cmd_action(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        principal = _principal(services, args.user)
        if principal is None:
            return EXIT_USAGE
        cases = Cases(services.ledger, services.audit)
        try:
            case = _act(cases, principal, args)
        except CaseRefused as refused:
            print(f"gateway: {refused}", file=sys.stderr)
            return EXIT_REJECTED
    if args.json:
        print(json.dumps(case_json(case), indent=2))
    else:
        print(f"{case.number}: {case.status}, desk {case.desk or '-'}, {case.members} message(s)")
    return EXIT_OK


def cmd_regroup(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        grouped = Cases(services.ledger, services.audit).regroup()
    if args.json:
        print(json.dumps({"grouped": grouped}))
    else:
        print(f"{grouped} message(s) grouped into cases")
    return EXIT_OK


def _act(cases: Cases, principal: Principal, args: argparse.Namespace) -> Case:
    action, reason = args.action, args.reason
    if action == "link":
        return cases.link(principal, args.case, cases.message(args.message), reason)
    if action == "unlink":
        return cases.unlink(principal, args.case, cases.message(args.message), reason)
    if action == "merge":
        return cases.merge(principal, args.case, args.into, reason)
    if action == "close":
        return cases.close(principal, args.case, reason)
    if action == "reopen":
        return cases.reopen(principal, args.case, reason)
    if action == "open":
        return cases.open_around(principal, cases.message(args.message), reason)
    return cases.set_desk(principal, args.case, args.desk, reason)


def _principal(services: Services, name: str) -> Principal | None:
    access = open_access(services.config, services.ledger, services.clock)
    try:
        user = access.accounts.get(name)
    except AccountError:
        print(f"gateway: no user {name!r}", file=sys.stderr)
        return None
    if user.disabled:
        print(f"gateway: user {name!r} is disabled", file=sys.stderr)
        return None
    return principal_of(user.name, user.roles, user.desks)
