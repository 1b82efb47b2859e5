"""`gateway serve` and the handlers' view of what arrived: `inbox`, `show`, `status`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from sqlalchemy import select

from gateway import config as configuration
from gateway import logsetup, pgpmime, preflight, server
from gateway.clock import SystemClock
from gateway.inbound.handoff import Spooled
from gateway.ledger import (
    Ledger,
    MessageRow,
    as_utc,
    create_schema,
    deadlines,
    make_engine,
    messages,
)
from gateway.runtime import load_validator
from gateway.spool import Spool

EXIT_OK, EXIT_NOT_FOUND = 0, 1


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the gateway: SMTP server and hand-off")
    serve.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    serve.set_defaults(run=cmd_serve)
    inbox = commands.add_parser("inbox", help="what arrived, newest first")
    inbox.add_argument("--desk", help="only this desk")
    inbox.add_argument("--json", action="store_true")
    inbox.set_defaults(run=cmd_inbox)
    show = commands.add_parser("show", help="a received form, rendered, with its attachments")
    show.add_argument("reference")
    show.set_defaults(run=cmd_show)
    status = commands.add_parser("status", help="a message's state and its events")
    status.add_argument("reference")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)


def _ledger(config: configuration.Config) -> Ledger:
    engine = make_engine(config.database_url)
    create_schema(engine)
    return Ledger(engine, SystemClock())


def cmd_serve(args: argparse.Namespace) -> int:
    # Whatever the process creates (spool, ledger, desk copies, gpg files) is private to its user,
    # on top of the explicit modes each of them is created with.
    os.umask(0o077)
    config = configuration.load_required(args.config)
    logsetup.configure(args.log_level)
    lock = preflight.check(config, SystemClock().now())
    try:
        asyncio.run(server.run(config))
    finally:
        lock.release()
    return EXIT_OK


def cmd_inbox(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    ledger = _ledger(config)
    query = (
        select(messages, deadlines.c.due)
        .select_from(
            messages.outerjoin(
                deadlines, (deadlines.c.message_id == messages.c.id) & (deadlines.c.kind == "reply")
            )
        )
        .where(messages.c.direction == "inbound")
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
    )
    if args.desk:
        query = query.where(messages.c.desk == args.desk)
    with ledger.engine.connect() as connection:
        rows = connection.execute(query).all()
    items = [
        {
            "reference": row.reference,
            "form": row.form,
            "partner": row.partner,
            "desk": row.desk,
            "received": as_utc(row.created_at).isoformat(),
            "priority": row.priority,
            "state": row.state,
            "reply_due": as_utc(row.due).isoformat() if row.due else None,
        }
        for row in rows
    ]
    if args.json:
        print(json.dumps(items, indent=2))
        return EXIT_OK
    if not items:
        print("(nothing received)")
    for item in items:
        due = f" reply due {item['reply_due']}" if item["reply_due"] else ""
        urgent = " URGENT" if item["priority"] == "urgent" else ""
        print(
            f"{item['received']}  {item['reference']}  {item['form']:<8} {item['partner']:<12} "
            f"{item['desk']:<10} {item['state']}{urgent}{due}"
        )
    return EXIT_OK


def _find(ledger: Ledger, reference: str) -> MessageRow | None:
    rows = ledger.by_reference(reference)
    return rows[0] if rows else None


def cmd_show(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    row = _find(_ledger(config), args.reference)
    if row is None or row.direction != "inbound" or row.spool_key is None:
        print(f"gateway: no received message {args.reference}", file=sys.stderr)
        return EXIT_NOT_FOUND
    item = Spool(config.paths.spool / "inbound").get(row.spool_key)
    payload = pgpmime.parse_entity(Spooled.of(item).entity)
    result = load_validator(config).validate(payload.form)
    print(f"{row.form} {row.reference} from {row.partner} ({row.state})")
    for depth, name, text in result.outline():
        print(f"{'  ' * depth}{name}{': ' + text if text else ''}")
    for attachment in payload.attachments:
        print(
            f"attachment: {attachment.filename} ({attachment.media_type}, "
            f"{len(attachment.data)} bytes, sha256 {attachment.sha256})"
        )
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    ledger = _ledger(config)
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
