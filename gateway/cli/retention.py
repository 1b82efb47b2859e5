"""`gateway retention run [--dry-run]`: shred now what the retention rules say is due."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from gateway.core import config as configuration
from gateway.service.services import open_services
from gateway.tracking.retention import Purger

EXIT_OK = 0
EXIT_FAILED = 1


def register(commands: Any) -> None:
    retention = commands.add_parser(
        "retention",
        help="the retention purge: run",
        description="`gateway serve` shreds every day what the [[retention]] rules say is due; "
        "`retention run` does it now.",
    )
    actions = retention.add_subparsers(title="retention commands", metavar="COMMAND", required=True)
    run = actions.add_parser(
        "run",
        help="shred every copy of the messages kept long enough, keep their stubs",
        description="Deletes the spooled items, desk copies, outbox copies, search index "
        "entries and reply drafts of each message due and not still needed (an open deadline, "
        "an item still queued), keeps their digests in the ledger and audits each; prints the "
        "counts. Exit 1 when a message could not be shredded (the next run tries again).",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="only count what would be shredded, change nothing"
    )
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.set_defaults(run=cmd_retention_run)


def cmd_retention_run(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        purger = Purger(
            config=config,
            ledger=services.ledger,
            audit=services.audit,
            inbound=services.inbound,
            outbound=services.outbound,
        )
        done = purger.purge(dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, **asdict(done)}, indent=2))
    else:
        verb = "would shred" if args.dry_run else "shredded"
        print(
            f"{verb} {done.messages} message(s): {done.spool_items} spooled item(s), "
            f"{done.desk_copies} desk copy(ies), {done.outbox_files} outbox file(s), "
            f"{done.index_entries} index entry(ies), {done.drafts} draft(s); "
            f"{done.waiting} due but still needed, {done.failed} failed"
            + ("" if args.dry_run else f"; {done.searches} search(es) purged")
        )
    return EXIT_FAILED if done.failed else EXIT_OK
