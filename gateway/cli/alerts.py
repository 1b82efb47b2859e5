"""`gateway alerts`: the alert register (SIS alerts and Interpol notices the exchanged messages
refer to) read as a user, each view in the access log; a supervisor's changes (the desk that
follows an alert, its status as a message told it), audited."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.access.roles import Principal
from gateway.access.setup import AccessServices, open_access
from gateway.cli import acting
from gateway.cli.table import minute, print_table
from gateway.core import config as configuration
from gateway.service import alerts
from gateway.service.services import Services, open_services
from gateway.store.alert_rows import STATUSES

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
USER_HELP = "who reads or changes the register (a user of `gateway users`)"


def register(commands: Any) -> None:
    group = commands.add_parser(
        "alerts",
        help="the SIS alerts and Interpol notices that exchanged messages refer to",
        description="The register is read from the forms (field 005, a notice's reference) at "
        "their acceptance: a user's roles decide which alerts and exchanges are shown, and "
        "every view is recorded in the access log.",
    )
    sub = group.add_subparsers(title="alerts commands", metavar="COMMAND")
    listed = sub.add_parser("list", help="the alerts, the last exchanged first")
    listed.add_argument("--kind", choices=alerts.KINDS, help="sis, notice or an article")
    listed.add_argument("--desk", help="followed by this desk")
    listed.add_argument("--user", required=True, help=USER_HELP)
    listed.add_argument("--json", action="store_true", help="print one JSON array")
    listed.set_defaults(run=cmd_list)
    shown = sub.add_parser("show", help="an alert and its exchanges")
    shown.add_argument("alert", metavar="ID", help="the SIS alert id or notice reference")
    shown.add_argument("--user", required=True, help=USER_HELP)
    shown.add_argument("--json", action="store_true", help="print one JSON object")
    shown.set_defaults(run=cmd_show)
    follow = sub.add_parser("follow", help="set the desk that follows an alert (supervisors)")
    follow.add_argument("alert", metavar="ID")
    where = follow.add_mutually_exclusive_group(required=True)
    where.add_argument("--desk", help="a desk of the configuration")
    where.add_argument(
        "--unset", action="store_true", help="the desk its messages reach follows it again"
    )
    follow.add_argument("--user", required=True, help=USER_HELP)
    follow.set_defaults(run=cmd_follow)
    status = sub.add_parser("status", help="record an alert's status as a message told it")
    status.add_argument("alert", metavar="ID")
    status.add_argument("status", choices=STATUSES)
    status.add_argument("--message", type=int, help="the ledger id of the message that told it")
    status.add_argument("--user", required=True, help=USER_HELP)
    status.set_defaults(run=cmd_status)
    group.set_defaults(run=lambda _args: _usage(group))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def cmd_list(args: argparse.Namespace) -> int:
    def run(services: Services, access: AccessServices, principal: Principal) -> int:
        found = alerts.listing(
            services, access.access_log, principal, kind=args.kind, desk=args.desk
        )
        if args.json:
            print(json.dumps([_line(alert) for alert in found.alerts], indent=2))
            return EXIT_OK
        print_table(
            [
                {
                    **_line(alert),
                    "first": minute(alert.first),
                    "last": minute(alert.last),
                    "partners": ",".join(alert.partners),
                    "exchanges": " ".join(f"{what}={n}" for what, n in alert.counts.items()),
                }
                for alert in found.alerts
            ],
            ("id", "kind", "status", "desk", "first", "last", "partners", "exchanges"),
            sys.stdout,
            empty="(no alert)",
        )
        if not found.complete:
            print("note: more exchanges than one listing reads: the oldest are left out")
        return EXIT_OK

    return _as_user(args, run)


def cmd_show(args: argparse.Namespace) -> int:
    def run(services: Services, access: AccessServices, principal: Principal) -> int:
        alert = alerts.show(services, access.access_log, principal, args.alert)
        if args.json:
            print(json.dumps(alerts.as_json(alert), indent=2))
            return EXIT_OK
        print(f"{alert.shown}  {alert.kind}  {alert.status}")
        told = f" (told by message {alert.told_by})" if alert.told_by is not None else ""
        print(f"desk: {alert.desk or '-'}{' (set by hand)' if alert.desk_by_hand else ''}{told}")
        print(f"first {minute(alert.first)}, last {minute(alert.last)}")
        print(f"partners: {', '.join(alert.partners) or '-'}")
        print_table(
            [
                {
                    "at": minute(item.exchange.at),
                    "what": item.what,
                    "dir": "in" if item.exchange.direction == "inbound" else "out",
                    "partner": item.exchange.partner,
                    "form": item.exchange.form,
                    "reference": item.exchange.reference,
                    "desk": item.exchange.desk,
                    "ledger": item.exchange.message_id,
                }
                for item in alert.exchanges
            ],
            ("at", "what", "dir", "partner", "form", "reference", "desk", "ledger"),
            sys.stdout,
        )
        if alert.hidden:
            print(f"{alert.hidden} more exchange(s) on desks you do not see")
        return EXIT_OK

    return _as_user(args, run)


def cmd_follow(args: argparse.Namespace) -> int:
    def run(services: Services, _access: AccessServices, principal: Principal) -> int:
        alert = alerts.follow(services, principal, args.alert, None if args.unset else args.desk)
        print(f"{alert.shown}: followed by {alert.desk or '-'}")
        return EXIT_OK

    return _as_user(args, run)


def cmd_status(args: argparse.Namespace) -> int:
    def run(services: Services, _access: AccessServices, principal: Principal) -> int:
        alert = alerts.set_status(services, principal, args.alert, args.status, args.message)
        print(f"{alert.shown}: {alert.status}")
        return EXIT_OK

    return _as_user(args, run)


def _as_user(args: argparse.Namespace, run: Any) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        try:
            principal = acting.principal_for(access, args.user)
        except acting.UserRefused as refused:
            print(f"gateway: {refused.detail}", file=sys.stderr)
            return refused.code
        try:
            code: int = run(services, access, principal)
        except alerts.AlertRefused as refused:
            print(f"gateway: refused: {refused}", file=sys.stderr)
            return EXIT_REJECTED
        except alerts.NoSuchAlert as missing:
            print(f"gateway: no alert {missing.args[0]!r} that you may see", file=sys.stderr)
            return EXIT_REJECTED
        except ValueError as wrong:
            print(f"gateway: {wrong}", file=sys.stderr)
            return EXIT_USAGE
        return code


def _line(alert: alerts.Alert) -> dict[str, Any]:
    return {
        "id": alert.shown,
        "kind": alert.kind,
        "status": alert.status,
        "desk": alert.desk,
        "first": alert.first.isoformat() if alert.first else None,
        "last": alert.last.isoformat() if alert.last else None,
        "partners": list(alert.partners),
        "counts": alert.counts,
    }
