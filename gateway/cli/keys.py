"""`gateway keys ...`: our key, partners' keys and their pinning."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli.table import print_table
from gateway.core import config as configuration
from gateway.core import configedit
from gateway.core.errors import ConfigError, KeyUnusable
from gateway.crypto.openpgp import GnuPG, KeyInfo
from gateway.crypto.setup import open_gnupg

EXIT_OK, EXIT_REJECTED = 0, 1


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="our OpenPGP key and the partners' keys")
    key_commands = keys.add_subparsers(title="keys commands", metavar="COMMAND", required=True)
    generate = key_commands.add_parser(
        "generate", help="create our bureau's key and write its fingerprint into the configuration"
    )
    generate.add_argument("--expire", default="2y", help="validity, as gpg takes it (default 2y)")
    generate.set_defaults(run=cmd_keys_generate)
    export = key_commands.add_parser("export", help="print our public key (ASCII armor)")
    export.add_argument("-o", "--output", type=Path, help="write to this file instead")
    export.set_defaults(run=cmd_keys_export)
    listing = key_commands.add_parser("list", help="our key and the partners' keys, with expiry")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_keys_list)
    imported = key_commands.add_parser(
        "import", help="import a partner's public key and pin its fingerprint to the partner"
    )
    imported.add_argument("file", type=Path)
    imported.add_argument("--partner", required=True, metavar="CODE")
    imported.set_defaults(run=cmd_keys_import)


def host_port(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", text)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return match.group(1), int(match.group(2))


def source_of(config: configuration.Config) -> Path:
    if config.source is None:
        raise ConfigError("(none)", "", "this command edits the configuration file: name one")
    return config.source


def cmd_keys_generate(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    if config.openpgp.fingerprint:
        raise ConfigError(
            str(source_of(config)),
            "openpgp.fingerprint",
            f"a key is configured already ({config.openpgp.fingerprint}); remove it first",
        )
    name = " / ".join(config.identity.bureaux.values()) + " (IPC Gateway)"
    with open_gnupg(config) as gpg:
        fingerprint = gpg.generate(
            name,
            config.identity.address,
            algorithm=config.openpgp.key_algorithm,
            expire=args.expire,
        )
    configedit.set_own_fingerprint(source_of(config), fingerprint)
    print(fingerprint)
    return EXIT_OK


def cmd_keys_export(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_gnupg(config) as gpg:
        armored = gpg.export_public()
    if args.output:
        args.output.write_text(armored)
    else:
        sys.stdout.write(armored)
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    pinned = {partner.fingerprint: partner.code for partner in config.partners}
    with open_gnupg(config) as gpg:
        keys = gpg.list_keys()
    now = datetime.now(UTC)
    rows = [
        {
            "fingerprint": key.fingerprint,
            "owner": "us"
            if key.fingerprint == config.openpgp.fingerprint
            else pinned.get(key.fingerprint, "(not pinned)"),
            "uids": list(key.uids),
            "created": key.created.isoformat(),
            "expires": key.expires.isoformat() if key.expires else None,
            "state": key_state(key, now),
        }
        for key in keys
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, ("owner", "fingerprint", "state", "expires"), sys.stdout)
    return EXIT_OK


def cmd_keys_import(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    try:
        config.partner(args.partner)
    except KeyError:
        raise ConfigError(
            str(source_of(config)), "partners", f"no partner {args.partner!r}"
        ) from None
    with open_gnupg(config) as gpg:
        key = _import(gpg, args.file)
        if key is None:
            return EXIT_REJECTED
    configedit.pin_partner(source_of(config), args.partner, key.fingerprint)
    print(f"{args.partner}: pinned {key.fingerprint}")
    return EXIT_OK


def _import(gpg: GnuPG, path: Path) -> KeyInfo | None:
    try:
        return gpg.import_partner_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the key file: {exc.strerror}") from None
    except KeyUnusable as exc:
        print(f"gateway: {path}: {exc.detail}", file=sys.stderr)
        return None


def key_state(key: KeyInfo, now: datetime) -> str:
    if key.revoked:
        return "revoked"
    if key.expired or (key.expires is not None and key.expires <= now):
        return "expired"
    return "valid"
