"""`gateway nodes`: the gateways on this ledger, their leases and their last heartbeat."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from typing import Any

from gateway.cli.table import minute, print_table
from gateway.core import config as configuration
from gateway.service.services import open_services
from gateway.store import leases

EXIT_OK = 0


def register(commands: Any) -> None:
    listing = commands.add_parser(
        "nodes",
        help="the live nodes on this ledger, their leases and last heartbeat",
        description="The gateways (`serve`) on this ledger: each one's name, host and pid, its "
        "last heartbeat and the leases it holds (hand-offs, receipts). A node is live while "
        "its heartbeat is younger than [cluster] lease_seconds; a dead one's leases are taken "
        "over by the others. --all lists the dead and stopped ones too.",
    )
    listing.add_argument("--all", action="store_true", help="also the dead and stopped nodes")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(run=cmd_nodes)


def cmd_nodes(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        now = services.clock.now()
        found = leases.listing(services.ledger)
    lease = config.cluster.lease
    shown = [node for node in found if args.all or _state(node, now, lease) == "live"]
    if args.json:
        print(json.dumps([_as_json(node, now, lease) for node in shown], indent=2))
        return EXIT_OK
    print_table(
        [
            {
                "name": node.name,
                "host": node.host,
                "pid": node.pid,
                "state": _state(node, now, lease),
                "started_at": minute(node.started_at),
                "heartbeat_at": f"{node.heartbeat_at:%Y-%m-%d %H:%M:%S}Z",
                "leases": ", ".join(f"{kind} {node.leases.get(kind, 0)}" for kind in leases.KINDS),
            }
            for node in shown
        ],
        ("name", "host", "pid", "state", "started_at", "heartbeat_at", "leases"),
        sys.stdout,
        headings={"heartbeat_at": "LAST HEARTBEAT", "started_at": "STARTED"},
        empty="(no node has run on this ledger)" if args.all else "(no live node)",
    )
    return EXIT_OK


def _as_json(node: leases.NodeRow, now: datetime, lease: timedelta) -> dict[str, Any]:
    return {
        "name": node.name,
        "host": node.host,
        "pid": node.pid,
        "state": _state(node, now, lease),
        "started_at": node.started_at.isoformat(),
        "heartbeat_at": node.heartbeat_at.isoformat(),
        "heartbeat_age_seconds": round((now - node.heartbeat_at).total_seconds(), 1),
        "stopped_at": None if node.stopped_at is None else node.stopped_at.isoformat(),
        "leases": {kind: node.leases.get(kind, 0) for kind in leases.KINDS},
    }


def _state(node: leases.NodeRow, now: datetime, lease: timedelta) -> str:
    if node.stopped_at is not None:
        return "stopped"
    return "live" if node.live(now, lease) else "dead"
