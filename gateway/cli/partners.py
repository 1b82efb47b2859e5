"""`gateway partners ...`: add a foreign bureau (key, TLS CAs, networks), list them, check them."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.cli.keys import EXIT_OK, EXIT_REJECTED, host_port, key_state, source_of
from gateway.cli.table import minute, print_table
from gateway.core import config as configuration
from gateway.core import configedit
from gateway.core.errors import ConfigError
from gateway.crypto.openpgp import GnuPG, KeyInfo
from gateway.crypto.setup import open_gnupg
from gateway.outbound.smtpclient import TlsCheck, ca_file_problem, check_tls, tls_context
from gateway.tracking.keycheck import warnings

CERTIFICATE_WARNING = timedelta(days=30)  # a partner's certificate expiring sooner is warned of
CHECK_TIMEOUT = 20.0  # seconds, at most, for each step of the SMTP check


def register(commands: Any) -> None:
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
    add.add_argument("--smtp", required=True, metavar="HOST:PORT", type=host_port)
    add.add_argument(
        "--tls-ca",
        type=Path,
        metavar="FILE",
        help="CA certificates (PEM) its SMTP server's certificate must chain to "
        "(default: the system's store)",
    )
    add.add_argument(
        "--networks",
        type=_networks,
        metavar="CIDR[,CIDR...]",
        default=(),
        help="the addresses its mail comes from; its mail from elsewhere is refused",
    )
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
    check = partner_commands.add_parser(
        "check",
        help="check partners' keys and their SMTP servers (STARTTLS, certificate)",
        description="For each partner (or the one named): its pinned key's validity and expiry, "
        "its encryption subkey's, and a connection to its SMTP server: STARTTLS offered and "
        "working, the certificate verified (against its tls_ca or the system's store) and its "
        "expiry. Exit 0 when all is well (warnings allowed), 1 when a partner has a problem.",
    )
    check.add_argument("code", nargs="?", help="only this partner")
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=cmd_partners_check)


def _networks(text: str) -> tuple[str, ...]:
    found = []
    for item in (part.strip() for part in text.split(",")):
        try:
            found.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not an address or a CIDR network (e.g. 192.0.2.0/24)"
            ) from None
    return tuple(found)


# ---------------------------------------------------------------------------- add


def cmd_partners_add(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    path = source_of(config)
    if args.tls_ca is not None and (problem := ca_file_problem(args.tls_ca)) is not None:
        print(f"gateway: {args.tls_ca}: not a CA file for --tls-ca: {problem}", file=sys.stderr)
        return EXIT_REJECTED
    try:
        data = args.key.read_bytes()
    except OSError as exc:
        raise ConfigError(str(args.key), "", f"cannot read the key file: {exc.strerror}") from None
    with open_gnupg(config) as gpg:
        key = _usable_key(gpg, args.key, data)
        if key is None:
            return EXIT_REJECTED
        host, port = args.smtp
        fields: dict[str, configedit.Value] = {
            "code": args.code,
            "channel": args.channel,
            "country": args.country,
            "address": args.address,
            "smtp_host": host,
            "smtp_port": port,
            "fingerprint": key.fingerprint,
            "require_tls": args.require_tls,
        }
        if args.tls_ca is not None:
            fields["tls_ca"] = _as_written(args.tls_ca, path)
        if args.networks:
            fields["networks"] = list(args.networks)
        # The key enters the keyring only once the new configuration has been checked whole,
        # and the configuration is replaced only once the key is in.
        configedit.add_partner(path, fields, before_replace=lambda: gpg.import_partner_key(data))
    print(f"{args.code}: added, key {key.fingerprint} pinned")
    return EXIT_OK


def _usable_key(gpg: GnuPG, name: Path, data: bytes) -> KeyInfo | None:
    """The one key in the file, if forms could be encrypted to it now; else says why (one
    line) and returns None. Nothing is imported."""
    keys = gpg.scan(data) if b"PRIVATE KEY BLOCK" not in data else []
    problem = None
    if b"PRIVATE KEY BLOCK" in data:
        problem = "the file holds a secret key: import only the partner's public key"
    elif len(keys) != 1:
        problem = f"the file must hold exactly one public key, it holds {len(keys)}"
    else:
        problem = key_problem(keys[0], datetime.now(UTC))
    if problem is not None:
        print(f"gateway: {name}: {problem}", file=sys.stderr)
        return None
    return keys[0]


def key_problem(key: KeyInfo, now: datetime) -> str | None:
    """Why no form could be encrypted to ``key`` at ``now``; None when one could."""
    if key.revoked:
        return f"key {key.fingerprint} is revoked"
    if key.expired or (key.expires is not None and key.expires <= now):
        when = f" on {minute(key.expires)}" if key.expires else ""
        return f"key {key.fingerprint} has expired{when}"
    if not key.can_encrypt:
        return f"key {key.fingerprint} has no usable encryption subkey"
    ends = key.encryption_ends()
    if ends is not None and ends <= now:
        return f"the encryption subkey of key {key.fingerprint} has expired on {minute(ends)}"
    return None


def _as_written(path: Path, config_file: Path) -> str:
    """A path as the configuration keeps it: relative to the configuration's folder when
    inside it (relative paths are read from there), else absolute."""
    absolute = path.resolve()
    folder = config_file.resolve().parent
    if absolute.is_relative_to(folder):
        return os.path.relpath(absolute, folder)
    return str(absolute)


# ---------------------------------------------------------------------------- list


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
                "key": key_state(key, now) if key else "missing",
                "key_expires": key.expires.isoformat() if key and key.expires else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, ("code", "channel", "address", "smtp", "key", "key_expires"), sys.stdout)
    return EXIT_OK


# ---------------------------------------------------------------------------- check


@dataclass
class Verdict:
    """What `partners check` found for one partner: lines to show, problems and warnings."""

    code: str
    lines: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "problem" if self.problems else "warning" if self.warnings else "ok"


def cmd_partners_check(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    partners = config.partners
    if args.code is not None:
        partners = tuple(p for p in partners if p.code == args.code)
        if not partners:
            raise ConfigError(str(source_of(config)), "partners", f"no partner {args.code!r}")
    with open_gnupg(config) as gpg:
        keys = gpg.list_keys()
    now = datetime.now(UTC)
    verdicts = [_key_verdict(config, partner, keys, now) for partner in partners]
    checks = asyncio.run(_check_all(config, partners))
    for verdict, partner, tls in zip(verdicts, partners, checks, strict=True):
        _tls_verdict(verdict, partner, tls, now)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "code": v.code,
                        "status": v.status,
                        "problems": v.problems,
                        "warnings": v.warnings,
                        **v.detail,
                    }
                    for v in verdicts
                ],
                indent=2,
            )
        )
    else:
        _print_verdicts(verdicts)
    return EXIT_REJECTED if any(v.problems for v in verdicts) else EXIT_OK


def _key_verdict(
    config: configuration.Config,
    partner: configuration.Partner,
    keys: list[KeyInfo],
    now: datetime,
) -> Verdict:
    verdict = Verdict(partner.code)
    key = next((k for k in keys if k.fingerprint == partner.fingerprint), None)
    found = warnings([partner], keys, now, config.scheduler.key_warning)
    for warning in found:
        target = verdict.warnings if warning.problem == "expires" else verdict.problems
        target.append(warning.sentence(now))
    if key is None:
        verdict.lines.append(("key", f"{partner.fingerprint} is not in our keyring"))
        verdict.detail["key"] = {"fingerprint": partner.fingerprint, "state": "missing"}
        return verdict
    state = key_state(key, now)
    ends = key.encryption_ends()
    if not key.can_encrypt:
        state = "cannot encrypt"
    elif state == "valid" and ends is not None and ends <= now:
        state = "encryption subkey expired"
    text = f"{state}, " + (f"expires {minute(key.expires)}" if key.expires else "never expires")
    if key.can_encrypt and ends != key.expires:
        text += "; encryption subkey " + (
            f"until {minute(ends)}" if ends is not None else "never expires"
        )
    verdict.lines.append(("key", f"{key.fingerprint} {text}"))
    verdict.detail["key"] = {
        "fingerprint": key.fingerprint,
        "state": state,
        "expires": key.expires.isoformat() if key.expires else None,
        "encryption_ends": ends.isoformat() if ends else None,
    }
    return verdict


async def _check_all(
    config: configuration.Config, partners: tuple[configuration.Partner, ...]
) -> list[TlsCheck]:
    timeout = min(config.outbound.timeout.total_seconds(), CHECK_TIMEOUT)

    async def one(partner: configuration.Partner) -> TlsCheck:
        try:
            context = tls_context(partner.tls_ca)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            reason = getattr(exc, "strerror", None) or str(exc)
            return TlsCheck(problem=f"cannot load tls_ca {partner.tls_ca}: {reason}")
        return await check_tls(
            partner.smtp_host, partner.smtp_port, context, config.listen.hostname, timeout
        )

    return list(await asyncio.gather(*(one(partner) for partner in partners)))


def _tls_verdict(
    verdict: Verdict, partner: configuration.Partner, tls: TlsCheck, now: datetime
) -> None:
    where = f"{partner.smtp_host}:{partner.smtp_port}"
    against = str(partner.tls_ca) if partner.tls_ca else "the system's store"
    verdict.detail["smtp"] = {
        "server": where,
        "reached": tls.reached,
        "starttls": tls.starttls,
        "certificate_verified": tls.verified,
        "verified_against": against,
        "tls_version": tls.protocol,
        "certificate_expires": tls.not_after.isoformat() if tls.not_after else None,
        "problem": tls.problem,
    }
    if tls.problem is not None:
        lenient = tls.problem == "STARTTLS not offered" and not partner.require_tls
        (verdict.warnings if lenient else verdict.problems).append(f"SMTP {where}: {tls.problem}")
        verdict.lines.append(("smtp", f"{where}: {tls.problem}"))
        return
    verdict.lines.append(("smtp", f"{where}: STARTTLS offered and working ({tls.protocol})"))
    if tls.not_after is None:
        verdict.lines.append(("certificate", f"verified against {against}"))
        return
    left = tls.not_after - now
    days = left.days
    verdict.lines.append(
        (
            "certificate",
            f"verified against {against}, expires {minute(tls.not_after)} ({days} days left)",
        )
    )
    if left < CERTIFICATE_WARNING:
        verdict.warnings.append(
            f"the certificate of {where} expires {minute(tls.not_after)}, in {days} days"
        )


def _print_verdicts(verdicts: list[Verdict]) -> None:
    if not verdicts:
        print("(no partners)")
    for verdict in verdicts:
        print(f"{verdict.code}: {verdict.status}")
        for label, text in verdict.lines:
            print(f"  {label:<12} {text}")
        for problem in verdict.problems:
            print(f"  PROBLEM      {problem}")
        for warning in verdict.warnings:
            print(f"  WARNING      {warning}")
