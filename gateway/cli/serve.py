"""`gateway serve` and the handlers' view of what arrived: `inbox`, `show`, `status`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from gateway.cli.table import minute, print_table
from gateway.core import config as configuration
from gateway.core import logsetup
from gateway.core.clock import SystemClock
from gateway.core.vocabulary import RECEIPT_FORM
from gateway.service import preflight, received, server
from gateway.service.services import Services, open_services
from gateway.store import lookups
from gateway.store.ledger import Ledger, MessageRow

EXIT_OK, EXIT_NOT_FOUND = 0, 1


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the gateway: SMTP server and hand-off")
    serve.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    serve.set_defaults(run=cmd_serve)
    inbox = commands.add_parser("inbox", help="what arrived, newest first")
    inbox.add_argument("--desk", help="only this desk")
    inbox.add_argument(
        "--receipts", action="store_true", help="list the partners' receipts (ACK) too"
    )
    inbox.add_argument("--json", action="store_true")
    inbox.set_defaults(run=cmd_inbox)
    show = commands.add_parser("show", help="a received form, rendered, with its attachments")
    show.add_argument("reference")
    show.set_defaults(run=cmd_show)
    status = commands.add_parser("status", help="a message's state and its events")
    status.add_argument("reference")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)


def cmd_serve(args: argparse.Namespace) -> int:
    # Whatever the process creates (spool, ledger, desk copies, gpg files) is private to its user,
    # on top of the explicit modes each of them is created with.
    os.umask(0o077)
    config = configuration.load_required(args.config)
    logsetup.configure(args.log_level, config.logging.format)
    lock = preflight.check(config, SystemClock().now())
    try:
        asyncio.run(server.run(config))
    finally:
        lock.release()
    return EXIT_OK


def cmd_inbox(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        return _inbox(args, services.ledger)


def _inbox(args: argparse.Namespace, ledger: Ledger) -> int:
    with ledger.reading() as tx:
        rows = lookups.received(
            tx, desk=args.desk, leave_out_form=None if args.receipts else RECEIPT_FORM
        )
    items = [
        {
            "reference": row.reference,
            "form": row.form,
            "partner": row.partner,
            "desk": row.desk,
            "received": row.created_at.isoformat(),
            "priority": row.priority,
            "state": row.state,
            "reply_due": due.isoformat() if due else None,
        }
        for row, due in rows
    ]
    if args.json:
        print(json.dumps(items, indent=2))
        return EXIT_OK
    table = [
        {
            **item,
            "received": minute(row.created_at),
            "priority": "URGENT" if row.priority == "urgent" else row.priority,
            "reply_due": minute(due) if due else None,
        }
        for item, (row, due) in zip(items, rows, strict=True)
    ]
    print_table(
        table,
        ("received", "reference", "form", "partner", "desk", "priority", "state", "reply_due"),
        sys.stdout,
        headings={"partner": "FROM"},
        empty="(nothing received)",
    )
    return EXIT_OK


def _find(ledger: Ledger, reference: str) -> MessageRow | None:
    rows = ledger.by_reference(reference)
    return rows[0] if rows else None


def cmd_show(args: argparse.Namespace) -> int:
    """The form as its desk copy shows it (gateway.desks renders both), under one status line."""
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        return _show(args, services)


def _show(args: argparse.Namespace, services: Services) -> int:
    row = _find(services.ledger, args.reference)
    if row is None or row.direction != "inbound" or row.spool_key is None:
        print(f"gateway: no received message {args.reference}", file=sys.stderr)
        return EXIT_NOT_FOUND
    try:
        shown = received.render(services, row)
    except received.NotReadable as exc:
        print(f"gateway: {args.reference}: {exc.shown}", file=sys.stderr)
        return EXIT_NOT_FOUND
    desk = row.desk or "-"
    print(f"{row.form} {row.reference} from {row.partner} ({row.state}, desk {desk})")
    print()
    sys.stdout.write(shown.text)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        return _status(args, services.ledger)


def _status(args: argparse.Namespace, ledger: Ledger) -> int:
    rows = ledger.by_reference(args.reference)
    if not rows:
        print(f"gateway: no message {args.reference}", file=sys.stderr)
        return EXIT_NOT_FOUND
    report: list[dict[str, Any]] = [
        {
            "reference": row.reference,
            "direction": row.direction,
            "partner": row.partner,
            "form": row.form,
            "state": row.state,
            "events": [
                {"at": at.isoformat(), "kind": kind, "detail": detail}
                for at, kind, detail in ledger.events_of(row.id)
            ],
        }
        for row in rows
    ]
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    for entry in report:
        print(
            f"{entry['reference']} {entry['direction']} {entry['form']} "
            f"{entry['partner']}: {entry['state']}"
        )
        for event in entry["events"]:
            print(f"  {event['at']}  {event['kind']:<12} {event['detail']}")
    return EXIT_OK
