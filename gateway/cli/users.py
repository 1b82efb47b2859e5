"""`gateway users ...`: the console's and the API's users, their roles and API keys, and the
access log for auditors. Passwords come from a prompt or a file, never from the command line."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.access import accesslog
from gateway.access.accounts import AccountError
from gateway.access.apikeys import ApiKeyError
from gateway.access.passwords import MAX_LENGTH
from gateway.access.principals import split
from gateway.access.roles import Role, parse_roles
from gateway.access.setup import AccessServices, open_access
from gateway.cli.table import minute, print_table
from gateway.core import config as configuration
from gateway.core.vocabulary import ROLES
from gateway.service.services import open_services

# What is read of a --password-file at most: a password's longest first line in UTF-8, and its end.
FILE_LIMIT = 4 * MAX_LENGTH + 2

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def register(commands: Any) -> None:
    users = commands.add_parser(
        "users",
        help="the console's users, their roles and API keys",
        description="Users of the console and the API: roles (handler of named desks, "
        "supervisor, duty officer, operator, auditor), passwords (argon2id), a TOTP second "
        "factor, API keys. Every change is audited with the user's name and codes only.",
    )
    actions = users.add_subparsers(title="users commands", metavar="COMMAND", required=True)

    # No abbreviations: "--password" must not be taken for --password-file (and a password
    # typed after it for a file name).
    add = actions.add_parser(
        "add", help="a new user (the password is asked for)", allow_abbrev=False
    )
    add.add_argument("name", help="2 to 32 of a-z, 0-9, '.', '_', '-' (e.g. ana.pop)")
    _roles(add)
    add.add_argument("--display-name", default="", help="the name the console shows")
    _password_file(add)
    add.add_argument(
        "--totp", action="store_true", help="enrol a TOTP second factor now (prints its secret)"
    )
    add.set_defaults(run=cmd_add)

    listing = actions.add_parser("list", help="every user: roles, desks, state, last login")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(run=cmd_list)

    for verb, text in (
        ("disable", "the user can no longer log in; their sessions end now"),
        ("enable", "undo disable (and lift a lockout)"),
    ):
        command = actions.add_parser(verb, help=text)
        command.add_argument("name")
        command.set_defaults(run=cmd_disable if verb == "disable" else cmd_enable)

    passwd = actions.add_parser(
        "passwd",
        help="set a user's password (lifts a lockout, ends their sessions)",
        allow_abbrev=False,
    )
    passwd.add_argument("name")
    _password_file(passwd)
    passwd.set_defaults(run=cmd_passwd)

    roles = actions.add_parser("roles", help="replace a user's roles and desks (ends sessions)")
    roles.add_argument("name")
    _roles(roles)
    roles.set_defaults(run=cmd_roles)

    second = actions.add_parser(
        "totp", help="enrol a new TOTP second factor for a user (prints its secret once)"
    )
    second.add_argument("name")
    second.add_argument("--remove", action="store_true", help="remove the second factor")
    second.set_defaults(run=cmd_totp)

    apikey = actions.add_parser("apikey", help="API keys: create, list, revoke")
    key_actions = apikey.add_subparsers(title="apikey commands", metavar="COMMAND", required=True)
    create = key_actions.add_parser("create", help="a new key, printed once")
    create.add_argument("name", help="what uses it, e.g. cms")
    _roles(create)
    create.set_defaults(run=cmd_apikey_create)
    keys = key_actions.add_parser("list", help="every key: scope, created, last used, revoked")
    keys.add_argument("--json", action="store_true", help="print one JSON array")
    keys.set_defaults(run=cmd_apikey_list)
    revoke = key_actions.add_parser("revoke", help="the key no longer works, for good")
    revoke.add_argument("name")
    revoke.set_defaults(run=cmd_apikey_revoke)

    log = actions.add_parser(
        "access-log",
        help="who consulted what, when and why (for auditors)",
        description="The access log in the audit chain: views, downloads, searches and exports "
        "of messages, by user and time; with --accounts, logins and changes to users too.",
    )
    log.add_argument("--user", help="one user's (or key:NAME for an API key)")
    log.add_argument("--since", type=_instant, help="from this UTC instant (2026-12-01T08:00)")
    log.add_argument("--until", type=_instant, help="before this UTC instant")
    log.add_argument("--accounts", action="store_true", help="logins and account changes too")
    log.add_argument("--json", action="store_true", help="print one JSON array")
    log.set_defaults(run=cmd_access_log)


def _roles(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--role",
        dest="roles",
        action="append",
        required=True,
        choices=ROLES,
        help="a role (repeat for several)",
    )
    parser.add_argument(
        "--desk", dest="desks", action="append", default=[], help="a handler's desk (repeat)"
    )


def _password_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="read the password from the first line of FILE (- for standard input) instead of "
        "a prompt",
    )


def _instant(text: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 instant") from None
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant


@contextlib.contextmanager
def _services(args: argparse.Namespace) -> Iterator[AccessServices]:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        yield open_access(config, services.ledger, services.clock)


def _refused(error: ValueError) -> int:
    print(f"gateway users: {error}", file=sys.stderr)
    return EXIT_REJECTED


def _first_bytes(source: Path, limit: int) -> bytes:
    """At most ``limit`` bytes from the start of ``source`` (``-``: standard input)."""
    if str(source) == "-":
        return sys.stdin.buffer.read(limit)
    with source.open("rb") as file:
        return file.read(limit)


def _read_password(args: argparse.Namespace) -> str | None:
    """The password from --password-file or from two prompts; None (said why) when there is
    none to take. The password is never printed or logged."""
    source: Path | None = args.password_file
    if source is not None:
        try:
            head = _first_bytes(source, FILE_LIMIT + 1)
            line, newline, _ = head.partition(b"\n")
            if not newline and len(head) > FILE_LIMIT:
                print(
                    "gateway users: the --password-file's first line is longer than a password "
                    f"may be ({MAX_LENGTH} characters)",
                    file=sys.stderr,
                )
                return None
            lines = line.decode("utf-8").splitlines()
        except (OSError, UnicodeError) as error:
            # Not named: a password given by mistake in its place must not be echoed.
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            print(
                f"gateway users: cannot read the --password-file: {reason.lower()}", file=sys.stderr
            )
            return None
        if not lines or not lines[0]:
            print(f"gateway users: {source}: no password on its first line", file=sys.stderr)
            return None
        return lines[0]
    if not sys.stdin.isatty():
        print(
            "gateway users: no terminal to ask for the password: use --password-file",
            file=sys.stderr,
        )
        return None
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        print("gateway users: the two passwords differ", file=sys.stderr)
        return None
    return first


def _assignment(args: argparse.Namespace) -> tuple[frozenset[Role], frozenset[str]]:
    return parse_roles(args.roles), frozenset(args.desks)


def cmd_add(args: argparse.Namespace) -> int:
    password = _read_password(args)
    if password is None:
        return EXIT_USAGE
    roles, desks = _assignment(args)
    with _services(args) as access:
        try:
            access.accounts.add(args.name, roles, desks, password, args.display_name)
        except AccountError as error:
            return _refused(error)
        print(f"user {args.name} added")
        if args.totp:
            _print_enrolment(access, args.name)
    return EXIT_OK


def _print_enrolment(access: AccessServices, name: str) -> None:
    enrolment = access.accounts.enrol_totp(name)
    print(f"TOTP secret for {name} (shown once; put it into the user's authenticator app):")
    print(f"  secret: {enrolment.secret}")
    print(f"  uri:    {enrolment.uri}")


def cmd_list(args: argparse.Namespace) -> int:
    with _services(args) as access:
        rows = access.accounts.list()
        now = access.ledger.clock.now()
    listed: list[dict[str, Any]] = [
        {
            "name": row.name,
            "display_name": row.display_name,
            "roles": sorted(split(row.roles)),
            "desks": sorted(split(row.desks)),
            "totp": row.totp_secret is not None,
            "state": _state(row.disabled, row.locked_until, now),
            "failed_logins": row.failed_logins,
            "locked_until": row.locked_until,
            "last_login": row.last_login_at,
            "created": row.created_at,
        }
        for row in rows
    ]
    if args.json:
        print(json.dumps(listed, indent=2, default=_json_instant))
        return EXIT_OK
    shown = [
        {
            **row,
            "roles": ",".join(row["roles"]),
            "desks": ",".join(row["desks"]) or None,
            "totp": "yes" if row["totp"] else "no",
            "last_login": minute(row["last_login"]),
        }
        for row in listed
    ]
    print_table(
        shown,
        ("name", "roles", "desks", "totp", "state", "last_login", "display_name"),
        sys.stdout,
        empty="(no users: add the first with `gateway users add`)",
    )
    return EXIT_OK


def _state(disabled: bool, locked_until: datetime | None, now: datetime) -> str:
    if disabled:
        return "disabled"
    if locked_until is not None and locked_until > now:
        return f"locked until {minute(locked_until)}"
    return "active"


def _json_instant(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise TypeError(type(value).__name__)


def cmd_disable(args: argparse.Namespace) -> int:
    with _services(args) as access:
        try:
            access.accounts.disable(args.name)
        except AccountError as error:
            return _refused(error)
    print(f"user {args.name} disabled; their sessions have ended")
    return EXIT_OK


def cmd_enable(args: argparse.Namespace) -> int:
    with _services(args) as access:
        try:
            access.accounts.enable(args.name)
        except AccountError as error:
            return _refused(error)
    print(f"user {args.name} enabled")
    return EXIT_OK


def cmd_passwd(args: argparse.Namespace) -> int:
    password = _read_password(args)
    if password is None:
        return EXIT_USAGE
    with _services(args) as access:
        try:
            access.accounts.set_password(args.name, password)
        except AccountError as error:
            return _refused(error)
    print(f"password of {args.name} changed; their sessions have ended")
    return EXIT_OK


def cmd_roles(args: argparse.Namespace) -> int:
    roles, desks = _assignment(args)
    with _services(args) as access:
        try:
            access.accounts.set_roles(args.name, roles, desks)
        except AccountError as error:
            return _refused(error)
    desk_text = f" of {', '.join(sorted(desks))}" if desks else ""
    print(f"{args.name} is now {', '.join(sorted(roles))}{desk_text}; their sessions have ended")
    return EXIT_OK


def cmd_totp(args: argparse.Namespace) -> int:
    with _services(args) as access:
        try:
            if args.remove:
                access.accounts.remove_totp(args.name)
                print(f"second factor of {args.name} removed")
            else:
                _print_enrolment(access, args.name)
        except AccountError as error:
            return _refused(error)
    return EXIT_OK


def cmd_apikey_create(args: argparse.Namespace) -> int:
    roles, desks = _assignment(args)
    with _services(args) as access:
        try:
            key = access.api_keys.create(args.name, roles, desks)
        except ValueError as error:  # ApiKeyError, or a name or scope refused
            return _refused(error)
    print(f"API key {args.name} (shown once; only its digest is kept):")
    print(key)
    return EXIT_OK


def cmd_apikey_list(args: argparse.Namespace) -> int:
    with _services(args) as access:
        rows = access.api_keys.list()
    listed: list[dict[str, Any]] = [
        {
            "name": row.name,
            "roles": sorted(split(row.roles)),
            "desks": sorted(split(row.desks)),
            "created": row.created_at,
            "last_used": row.last_used_at,
            "revoked": row.revoked_at,
        }
        for row in rows
    ]
    if args.json:
        print(json.dumps(listed, indent=2, default=_json_instant))
        return EXIT_OK
    shown = [
        {
            **row,
            "roles": ",".join(row["roles"]),
            "desks": ",".join(row["desks"]) or None,
            "created": minute(row["created"]),
            "last_used": minute(row["last_used"]),
            "revoked": minute(row["revoked"]),
        }
        for row in listed
    ]
    print_table(shown, ("name", "roles", "desks", "created", "last_used", "revoked"), sys.stdout)
    return EXIT_OK


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    with _services(args) as access:
        try:
            access.api_keys.revoke(args.name)
        except ApiKeyError as error:
            return _refused(error)
    print(f"API key {args.name} revoked")
    return EXIT_OK


def cmd_access_log(args: argparse.Namespace) -> int:
    with _services(args) as access:
        try:
            entries = accesslog.read(
                access.ledger,
                user=args.user,
                since=args.since,
                until=args.until,
                accounts=args.accounts,
            )
        except ValueError as error:
            return _refused(error)
    listed: list[dict[str, Any]] = [
        {
            "seq": entry.seq,
            "at": entry.at,
            "kind": entry.kind,
            "user": entry.user,
            "role": entry.role,
            "purpose": entry.purpose,
            "partner": entry.partner,
            "form": entry.form,
            "reference": entry.reference,
            "details": entry.details,
        }
        for entry in entries
    ]
    if args.json:
        print(json.dumps(listed, indent=2, default=_json_instant))
        return EXIT_OK
    shown = [
        {
            **row,
            "at": minute(row["at"]),
            "details": " ".join(f"{key}={value}" for key, value in row["details"].items()),
        }
        for row in listed
    ]
    print_table(
        shown,
        ("at", "kind", "user", "role", "purpose", "partner", "form", "reference", "details"),
        sys.stdout,
    )
    return EXIT_OK
