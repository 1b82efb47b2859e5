"""`gateway audit ...`: check the hash chain of the audit log in the ledger."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.core import config as configuration
from gateway.core.errors import ConfigError
from gateway.service.services import open_services
from gateway.store.audit import AuditReport, parse_anchor
from gateway.store.unit import LedgerUnavailable

EXIT_OK, EXIT_REJECTED = 0, 1


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the hash-chained audit log")
    audit_commands = audit.add_subparsers(title="audit commands", metavar="COMMAND", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check that no audit entry was edited, removed, reordered or forged",
        description="Read the whole audit chain and check every entry's hash and link. Exit 0 "
        "when it is intact, 1 when problems are found (one line each), 2 on usage errors. "
        "Removing the newest entries is only seen against an anchor: keep the printed head "
        "(SEQ:HASH) elsewhere and give it back with --anchor.",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument(
        "--anchor",
        metavar="SEQ:HASH",
        type=_anchor,
        help="a head printed by an earlier run: that entry must still be there, unchanged",
    )
    verify.set_defaults(run=cmd_audit_verify)


def _anchor(value: str) -> tuple[int, str]:
    try:
        return parse_anchor(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cmd_audit_verify(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    try:
        with open_services(config) as services:
            report = services.audit.check(args.anchor)
    except LedgerUnavailable as error:
        # The URL may hold a password: name the setting, not its value.
        raise ConfigError(
            str(config.source), "database.url", f"cannot read the ledger: {error.orig}"
        ) from None
    if args.json:
        print(json.dumps(_as_json(report), indent=2))
    elif report.intact:
        seq, digest = report.head
        print(f"audit chain intact: {report.entries} entries, head {digest}")
        if seq:
            print(f"anchor: {seq}:{digest}")
    else:
        for problem in report.problems:
            print(problem)
    return EXIT_OK if report.intact else EXIT_REJECTED


def _as_json(report: AuditReport) -> dict[str, object]:
    seq, digest = report.head
    return {
        "intact": report.intact,
        "entries": report.entries,
        "head": {"seq": seq, "hash": digest, "anchor": f"{seq}:{digest}"},
        "problems": [
            {"seq": problem.seq, "fault": problem.fault, "detail": problem.detail}
            for problem in report.problems
        ],
    }
