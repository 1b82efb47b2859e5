"""`gateway db`: the ledger's schema revision (`db status`) and the upgrade to this gateway's."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.core import config as configuration
from gateway.store import schema
from gateway.store.ledger import make_engine

EXIT_OK = 0


def register(commands: Any) -> None:
    database = commands.add_parser(
        "db",
        help="the ledger's schema: status, upgrade",
        description="The ledger's schema revision against the one this gateway needs. Every "
        "command that opens the ledger refuses an outdated one; `db upgrade` brings it up.",
    )
    actions = database.add_subparsers(title="db commands", metavar="COMMAND", required=True)
    status = actions.add_parser(
        "status",
        help="the ledger's revision, this gateway's, and whether an upgrade is due",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(run=cmd_db_status)
    upgrade = actions.add_parser(
        "upgrade",
        help="bring the ledger to this gateway's revision (back it up first)",
        description="Create the tables of an empty ledger, adopt one made before schema "
        "migrations (stamped as the first revision), or run the revisions it lacks (on "
        "PostgreSQL in one transaction). Stop the gateways on this ledger and back it up first.",
    )
    upgrade.set_defaults(run=cmd_db_upgrade)


def cmd_db_status(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    engine = make_engine(config.database_url)
    try:
        found = schema.state(engine)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(_as_json(found), indent=2))
        return EXIT_OK
    print(f"ledger: {found.url}")
    print(f"revision: {found.shown()}")
    print(f"this gateway's revision: {found.head}")
    print(f"upgrade due: {_due(found)}")
    return EXIT_OK


def _due(found: schema.SchemaState) -> str:
    if not found.known:
        return "no: the ledger is at a revision this gateway does not know"
    return "yes: run `gateway db upgrade`" if found.upgrade_due else "no"


def _as_json(found: schema.SchemaState) -> dict[str, object]:
    return {
        "url": found.url,
        "current": found.current,
        "head": found.head,
        "upgrade_due": found.upgrade_due and found.known,
        "empty": found.empty,
        "pre_migration": found.pre_migration,
        "known": found.known,
    }


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    engine = make_engine(config.database_url)
    try:
        done = schema.upgrade(engine)
    finally:
        engine.dispose()
    before = done.before
    print(f"ledger: {before.url}")
    if before.empty:
        print(f"created the empty ledger's tables at revision {done.after}")
    elif before.pre_migration:
        print(f"made before schema migrations: stamped as revision {schema.ADOPTED_REVISION}")
        if done.after != schema.ADOPTED_REVISION:
            print(f"upgraded from revision {schema.ADOPTED_REVISION} to {done.after}")
    elif before.current == done.after:
        print(f"already at revision {done.after}: nothing to do")
    else:
        print(f"upgraded from revision {before.current} to {done.after}")
    return EXIT_OK
