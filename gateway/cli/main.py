"""The `gateway` command: one small function per subcommand; exit 0 ok, 1 rejected, 2 usage."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from gateway import __version__
from gateway.cli import alerts as cli_alerts
from gateway.cli import audit as cli_audit
from gateway.cli import cases as cli_cases
from gateway.cli import db as cli_db
from gateway.cli import deadlines as cli_deadlines
from gateway.cli import index as cli_index
from gateway.cli import keys as cli_keys
from gateway.cli import nodes as cli_nodes
from gateway.cli import partners as cli_partners
from gateway.cli import queue as cli_queue
from gateway.cli import report as cli_report
from gateway.cli import retention as cli_retention
from gateway.cli import search as cli_search
from gateway.cli import send as cli_send
from gateway.cli import serve as cli_serve
from gateway.cli import subject_report as cli_subject_report
from gateway.cli import users as cli_users
from gateway.cli import web as cli_web
from gateway.cli.progress import Progress
from gateway.core import config as configuration
from gateway.core.errors import CannotStart, ConfigError, KeyUnusable, LedgerOutdated
from gateway.forms.setup import load_validator
from gateway.forms.xmlforms import FormValidator, Validation
from gateway.store.unit import LedgerUnavailable

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
SEND_FILLS_CREATED = "2000-01-01T00:00:00Z"  # a stand-in: send writes the time it queues the form


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LedgerOutdated as exc:
        print(f"gateway: {exc.line(args.config)}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyUnusable, CannotStart) as exc:
        print(f"gateway: {exc.detail}", file=sys.stderr)
        return EXIT_REJECTED
    except LedgerUnavailable as exc:  # the ledger's database: unreachable, unwritable
        reason = str(exc.orig or exc).strip().splitlines()[0]
        print(f"gateway: cannot use the ledger (database.url): {reason}", file=sys.stderr)
        return EXIT_REJECTED
    except OSError as exc:  # a file or folder an operator can fix: named, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"gateway: {where}{(exc.strerror or str(exc)).lower()}", file=sys.stderr)
        return EXIT_REJECTED
    except KeyboardInterrupt:
        return 130
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Secure gateway for standardized police-cooperation forms over SMTP.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"configuration file (default: ${configuration.ENV_VAR}, "
        f"then ./{configuration.DEFAULT_LOCATION})",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="validate forms against their XSD",
        description="Validate form files (or - for standard input) against the schema of their "
        "root element. Exit 0 when all are valid, 1 when any is not, 2 on usage errors.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="form files, or - for stdin")
    validate.add_argument("--json", action="store_true", help="print one JSON array of results")
    validate.set_defaults(run=cmd_validate)
    demo_command = commands.add_parser(
        "demo",
        help="three bureaux on this machine exchange forms, told step by step",
        description="Make RO-SIRENE, NO-SIRENE and RS-NCB from nothing (keys, certificates, "
        "configurations, spools), start their gateways on loopback and tell the story of a hit, "
        "its receipt and answer, an Interpol query, and an urgent request left unanswered.",
    )
    demo_command.add_argument(
        "--dir", type=Path, help="an empty or new folder for it all (default: a new one in /tmp)"
    )
    demo_command.add_argument(
        "--console",
        action="store_true",
        help="then leave the bureaux running with their consoles; print the URLs and the demo "
        "logins, and stop at Ctrl-C",
    )
    demo_command.set_defaults(run=cmd_demo)
    cli_keys.register(commands)
    cli_partners.register(commands)
    cli_serve.register(commands)
    cli_send.register(commands)
    cli_audit.register(commands)
    cli_deadlines.register(commands)
    cli_cases.register(commands)
    cli_report.register(commands)
    cli_queue.register(commands)
    cli_db.register(commands)
    cli_nodes.register(commands)
    cli_index.register(commands)
    cli_retention.register(commands)
    cli_search.register(commands)
    cli_subject_report.register(commands)
    cli_alerts.register(commands)
    cli_users.register(commands)
    cli_web.register(commands)
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.cli import demo  # noqa: PLC0415 (the demo's imports are only needed here)

    try:
        return demo.run(args.dir, console=args.console)
    except ValueError as exc:
        print(f"gateway demo: {exc}", file=sys.stderr)
        return EXIT_USAGE


def load_config(args: argparse.Namespace) -> configuration.Config | None:
    """The configuration named by -c, $GATEWAY_CONFIG or the default place; None if none."""
    path = configuration.locate(args.config)
    return configuration.load(path) if path is not None else None


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args)
    validator = load_validator(config)
    country = config.identity.country if config else "XX"
    results: list[tuple[str, Validation, tuple[str, ...]]] = []
    unreadable = False
    progress = Progress(len(args.files), sys.stderr)
    for name in args.files:
        progress.step(name)
        try:
            data = _read_input(name, validator.limits.max_bytes)
        except OSError as exc:
            progress.clear()
            print(f"gateway: {name}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            unreadable = True
            continue
        result, filled = _validate_as_send(validator, data, country)
        results.append(("<stdin>" if name == "-" else name, result, filled))
        if not args.json:
            progress.clear()
            _print_result(results[-1][0], result, sys.stdout, filled)
    progress.done()
    if args.json:
        json.dump([_as_json(*entry) for entry in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    if unreadable:
        return EXIT_USAGE
    return EXIT_OK if all(result.valid for _, result, _ in results) else EXIT_REJECTED


def _validate_as_send(
    validator: FormValidator, data: bytes, country: str
) -> tuple[Validation, tuple[str, ...]]:
    """What `gateway send` would make of the form: Created and Reference, where left out, are
    filled in (with stand-ins here) before it is checked; returns which were."""
    filled = validator.left_out(data)
    if filled:
        data = validator.complete_header(
            data, created=SEND_FILLS_CREATED, reference=f"{country}-0000-000000"
        )
    return validator.validate(data), filled


def _read_input(name: str, limit: int) -> bytes:
    """At most one byte over the limit: enough to refuse an oversized file without holding it."""
    if name == "-":
        return sys.stdin.buffer.read(limit + 1)
    with Path(name).open("rb") as handle:
        return handle.read(limit + 1)


def _print_result(
    name: str, result: Validation, out: IO[str], filled: tuple[str, ...] = ()
) -> None:
    form = result.form.code if result.form else (result.root or "?")
    if result.valid:
        note = f" ({' and '.join(filled)} will be filled in by send)" if filled else ""
        print(f"{name}: valid {form}{note}", file=out)
        return
    for error in result.errors:
        line = f"{error.line}:" if error.line is not None else ""
        print(f"{name}:{line} {error.path or '/'}: {error.reason}", file=out)
    hidden = result.error_count - len(result.errors)
    count = f"{result.error_count} error" + ("s" if result.error_count != 1 else "")
    more = f", {hidden} not shown" if hidden else ""
    print(f"{name}: invalid {form}: {count}{more}", file=out)


def _as_json(name: str, result: Validation, filled: tuple[str, ...]) -> dict[str, object]:
    return {
        "file": name,
        "valid": result.valid,
        "form": result.form.code if result.form else None,
        "filled_by_send": list(filled),
        "error_count": result.error_count,
        "errors": [
            {"line": error.line, "path": error.path, "reason": error.reason}
            for error in result.errors
        ],
    }
