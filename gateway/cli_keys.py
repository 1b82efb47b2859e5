"""`gateway keys ...` and `gateway partners ...`: our key, partners' keys and their pinning."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import config as configuration
from gateway import configedit
from gateway.clitable import print_table
from gateway.errors import ConfigError, KeyUnusable
from gateway.openpgp import GnuPG, KeyInfo
from gateway.runtime import open_gnupg

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

    partners = commands.add_parser("partners", help="foreign bureaux")
    partner_commands = partners.add_subparsers(
        title="partners commands", metavar="COMMAND", required=True
    )
    add = partner_commands.add_parser(
        "add", help="add a partner: import and pin its key, write it into the configuration"
    )
    add.add_argument("code", help="bureau code, e.g. NO-SIRENE")
    add.add_argument("--address", required=True, help="its e-mail address")
    add.add_argument("--channel", required=True, choices=configuration.PARTNER_CHANNELS)
    add.add_argument("--country", required=True, help="ISO 3166-1 alpha-2")
    add.add_argument("--key", required=True, type=Path, help="its public key file")
    add.add_argument("--smtp", required=True, metavar="HOST:PORT", type=_host_port)
    add.add_argument(
        "--no-require-tls",
        dest="require_tls",
        action="store_false",
        help="allow this partner without STARTTLS (not recommended)",
    )
    add.set_defaults(run=cmd_partners_add)
    plist = partner_commands.add_parser("list", help="the partners and the state of their keys")
    plist.add_argument("--json", action="store_true")
    plist.set_defaults(run=cmd_partners_list)


def _host_port(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", text)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return match.group(1), int(match.group(2))


def _source(config: configuration.Config) -> Path:
    if config.source is None:
        raise ConfigError("(none)", "", "this command edits the configuration file: name one")
    return config.source


def cmd_keys_generate(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    if config.openpgp.fingerprint:
        raise ConfigError(
            str(_source(config)),
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
    configedit.set_own_fingerprint(_source(config), fingerprint)
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
            "state": _state(key, now),
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
            str(_source(config)), "partners", f"no partner {args.partner!r}"
        ) from None
    with open_gnupg(config) as gpg:
        key = _import(gpg, args.file)
        if key is None:
            return EXIT_REJECTED
    configedit.pin_partner(_source(config), args.partner, key.fingerprint)
    print(f"{args.partner}: pinned {key.fingerprint}")
    return EXIT_OK


def cmd_partners_add(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_gnupg(config) as gpg:
        key = _import(gpg, args.key)
        if key is None:
            return EXIT_REJECTED
    host, port = args.smtp
    configedit.add_partner(
        _source(config),
        {
            "code": args.code,
            "channel": args.channel,
            "country": args.country,
            "address": args.address,
            "smtp_host": host,
            "smtp_port": port,
            "fingerprint": key.fingerprint,
            "require_tls": args.require_tls,
        },
    )
    print(f"{args.code}: added, key {key.fingerprint} pinned")
    return EXIT_OK


def cmd_partners_list(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    with open_gnupg(config) as gpg:
        keys = {key.fingerprint: key for key in gpg.list_keys()}
    now = datetime.now(UTC)
    rows = []
    for partner in config.partners:
        key = keys.get(partner.fingerprint)
        rows.append(
            {
                "code": partner.code,
                "channel": partner.channel,
                "country": partner.country,
                "address": partner.address,
                "smtp": f"{partner.smtp_host}:{partner.smtp_port}",
                "require_tls": partner.require_tls,
                "fingerprint": partner.fingerprint,
                "key": _state(key, now) if key else "missing",
                "key_expires": key.expires.isoformat() if key and key.expires else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, ("code", "channel", "address", "smtp", "key", "key_expires"), sys.stdout)
    return EXIT_OK


def _import(gpg: GnuPG, path: Path) -> KeyInfo | None:
    try:
        return gpg.import_partner_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the key file: {exc.strerror}") from None
    except KeyUnusable as exc:
        print(f"gateway: {path}: {exc.detail}", file=sys.stderr)
        return None


def _state(key: KeyInfo, now: datetime) -> str:
    if key.revoked:
        return "revoked"
    if key.expired or (key.expires is not None and key.expires <= now):
        return "expired"
    return "valid"
