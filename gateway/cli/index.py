"""`gateway index rebuild`: the search index made again from the stored messages."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.core import config as configuration
from gateway.service.searching import rebuild
from gateway.service.services import open_services

EXIT_OK = 0


def register(commands: Any) -> None:
    index = commands.add_parser(
        "index",
        help="the search index: rebuild",
        description="The search index is written when a message is accepted or queued; "
        "`index rebuild` empties it and indexes every received message whose copy is kept.",
    )
    actions = index.add_subparsers(title="index commands", metavar="COMMAND", required=True)
    again = actions.add_parser(
        "rebuild",
        help="empty the index and index the stored received messages again",
        description="Forms we sent are kept sealed to their partner only: their entries, "
        "written when they were queued, are not made again.",
    )
    again.add_argument("--json", action="store_true", help="print one JSON object")
    again.set_defaults(run=cmd_index_rebuild)


def cmd_index_rebuild(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        done = rebuild(services)
    if args.json:
        print(json.dumps(done.as_dict(), indent=2))
        return EXIT_OK
    print(
        f"indexed {done.messages} message(s): {done.entries} entries; "
        f"{done.not_kept} without a readable copy (purged, or sent), "
        f"{done.unreadable} unreadable"
    )
    return EXIT_OK
