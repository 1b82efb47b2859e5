"""`gateway demo`: three bureaux on one machine exchange forms over SMTP, told step by step.

From nothing: a demo certificate authority and a TLS certificate per bureau (openssl), a fresh
OpenPGP key per bureau, each bureau's configuration pinning the others' keys, and three real
gateways on loopback. Then the story: RO-SIRENE sends a hit (G) to NO-SIRENE, which files it on
its SIRENE desk and sends a signed receipt; NO's handler answers with an M; RO-NCB queries RS-NCB
on the Interpol channel and gets its result; an urgent hit left unanswered brings reminders and
an escalation (the demo's clock jumps hours ahead for that). Everything is real but the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.parser import BytesHeaderParser
from pathlib import Path

from gateway.cli.democonsole import serve_consoles
from gateway.core import config as configuration
from gateway.core.clock import ShiftedClock
from gateway.crypto.openpgp import GnuPG, KeyProtection
from gateway.service.server import Gateway
from gateway.service.services import open_services
from gateway.store import lookups, schema
from gateway.store.ledger import MessageRow, make_engine
from gateway.store.states import InboundState, MessageState, OutboundState

DEMO_FORMS = configuration.PROJECT_ROOT / "config" / "demo"
STEP_TIMEOUT = 30.0
# The demo keys' protection: a passphrase from a file, with a cheap key derivation so that the
# demo stays quick (see docs/OPERATIONS.md for what production should use).
DEMO_S2K_COUNT = 65536

DEADLINE_NOTICES = ("notice.reminder.", "notice.escalation.")

Say = Callable[[str], None]


@dataclass(frozen=True)
class Bureau:
    """One bureau of the demo: its folder name, country, address and codes per channel."""

    name: str
    country: str
    address: str
    codes: dict[str, str]
    desks: tuple[str, ...]
    zone: str  # the time zone its console shows


BUREAUX = (
    Bureau(
        "ro",
        "RO",
        "gateway@ro-spoc.demo",
        {"sirene": "RO-SIRENE", "interpol": "RO-NCB"},
        ("sirene", "interpol", "duty"),
        "Europe/Bucharest",
    ),
    Bureau(
        "no",
        "NO",
        "sirene@no-spoc.demo",
        {"sirene": "NO-SIRENE"},
        ("sirene", "duty"),
        "Europe/Oslo",
    ),
    Bureau(
        "rs",
        "RS",
        "ncb@rs-ncb.demo",
        {"interpol": "RS-NCB"},
        ("interpol", "duty"),
        "Europe/Belgrade",
    ),
)


@dataclass
class Site:
    """A bureau made on disk: its folder, port, key and configuration file."""

    bureau: Bureau
    root: Path
    port: int
    fingerprint: str = ""
    config_path: Path = field(default_factory=Path)


def run(folder: Path | None, say: Say = print, *, console: bool = False) -> int:
    """Make the three bureaux in ``folder`` (a new temporary folder when None) and tell the
    story; with ``console``, then serve their consoles until interrupted. Returns 0 when every
    step happened as it should."""
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="ipc-demo-"))
    elif folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty: the demo starts from nothing")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"IPC Gateway demo in {folder}")
    sites = make_sites(folder, say)
    asyncio.run(_story(sites, say, folder if console else None))
    say(f"Done in {time.monotonic() - started:.1f} s. Everything is in {folder}.")
    return 0


# ---------------------------------------------------------------------- setting up


def make_sites(folder: Path, say: Say) -> dict[str, Site]:
    ca_cert, ca_key = _certificate_authority(folder / "ca")
    sites = {bureau.name: Site(bureau, folder / bureau.name, _free_port()) for bureau in BUREAUX}
    for site in sites.values():
        _prepare_site(site, ca_cert, ca_key)
    _exchange_keys(sites)
    for site in sites.values():
        site.config_path = _write_config(site, sites, ca_cert)
        codes = ", ".join(site.bureau.codes.values())
        say(f"  {codes}: key {site.fingerprint[-16:]}, SMTP on 127.0.0.1:{site.port}")
    return sites


def _prepare_site(site: Site, ca_cert: Path, ca_key: Path) -> None:
    (site.root / "var").mkdir(parents=True, mode=0o700)
    passphrase = site.root / "var" / "passphrase"
    # Made 0600 from the start: `gateway serve` refuses a passphrase file others may read.
    fd = os.open(passphrase, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(f"demo passphrase of {site.bureau.name}\n")
    _server_certificate(site.root / "var", ca_cert, ca_key)
    protection = KeyProtection.from_sources(
        passphrase_file=passphrase, passphrase_env=None, s2k_count=DEMO_S2K_COUNT
    )
    with GnuPG(site.root / "var" / "gnupg", protection=protection) as gpg:
        first = next(iter(site.bureau.codes.values()))
        site.fingerprint = gpg.generate(first, site.bureau.address)


def _exchange_keys(sites: dict[str, Site]) -> None:
    exported = {}
    for name, site in sites.items():
        with GnuPG(site.root / "var" / "gnupg", fingerprint=site.fingerprint) as gpg:
            exported[name] = gpg.export_public().encode()
    for site in sites.values():
        with GnuPG(site.root / "var" / "gnupg", fingerprint=site.fingerprint) as gpg:
            for other in _partners_of(site, sites):
                gpg.import_partner_key(exported[other.bureau.name])


def _partners_of(site: Site, sites: dict[str, Site]) -> Iterator[Site]:
    """The other bureaux that share a channel with this one."""
    for other in sites.values():
        if other is not site and set(other.bureau.codes) & set(site.bureau.codes):
            yield other


def _write_config(site: Site, sites: dict[str, Site], ca_cert: Path) -> Path:
    bureau = site.bureau
    bureaux = ", ".join(f'{channel} = "{code}"' for channel, code in bureau.codes.items())
    lines = [
        f"# The demo's {bureau.country} bureau: made by `gateway demo`.",
        "[identity]",
        f'country = "{bureau.country}"',
        f'address = "{bureau.address}"',
        f"bureaux = {{ {bureaux} }}",
        "",
        "[paths]",
        'gnupg_home = "var/gnupg"',
        'spool = "spool"',
        "",
        "[openpgp]",
        f'fingerprint = "{site.fingerprint}"',
        'passphrase_file = "var/passphrase"',
        "",
        "[smtp.listen]",
        'host = "127.0.0.1"',
        f"port = {site.port}",
        f'hostname = "gateway.{bureau.name}.demo"',
        'tls_cert = "var/gateway.crt"',
        'tls_key = "var/gateway.key"',
        "",
        "[outbound]",
        'retry_first = "PT1S"',
        'retry_max = "PT10S"',
        "",
        "[deadlines]",
        'duty_desk = "duty"',
        "",
        "[scheduler]",
        'supervisor_desk = "duty"',
        "",
        "# The demo's users log in with a password alone; production asks these roles for TOTP.",
        "[access]",
        "totp_required = []",
        "",
        "[web]",
        'host = "127.0.0.1"',
        "port = 0",
        f'time_zone = "{bureau.zone}"',
        "",
        "# /metrics on a port the system picks (three bureaux on one machine): see the log.",
        "[metrics]",
        'listen = "127.0.0.1:0"',
    ]
    for other in _partners_of(site, sites):
        channel = next(c for c in other.bureau.codes if c in bureau.codes)
        lines += [
            "",
            "[[partners]]",
            f'code = "{other.bureau.codes[channel]}"',
            f'channel = "{channel}"',
            f'country = "{other.bureau.country}"',
            f'address = "{other.bureau.address}"',
            'smtp_host = "127.0.0.1"',
            f"smtp_port = {other.port}",
            f'fingerprint = "{other.fingerprint}"',
            f'tls_ca = "{ca_cert}"',
        ]
    for desk in bureau.desks:
        lines += ["", "[[desks]]", f'name = "{desk}"', f'maildir = "desks/{desk}"']
    lines += ["", "[[routes]]", 'priority = "urgent"', 'desk = "duty"']
    for channel in bureau.codes:
        lines += ["", "[[routes]]", f'channel = "{channel}"', f'desk = "{channel}"']
    path = site.root / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _certificate_authority(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, mode=0o700)
    cert, key = folder / "demo-ca.crt", folder / "demo-ca.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-days", "2", "-subj", "/CN=IPC Gateway demo CA", "-keyout", str(key), "-out", str(cert),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
    )  # fmt: skip
    return cert, key


def _server_certificate(folder: Path, ca_cert: Path, ca_key: Path) -> None:
    key, request, cert = folder / "gateway.key", folder / "gateway.csr", folder / "gateway.crt"
    extensions = folder / "san.cnf"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(request),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the demo needs the openssl command to make its TLS certificates")
    subprocess.run([openssl, *args], check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------- the story


class _Stage:
    """The running gateways, and the ways the story looks at them."""

    def __init__(self, gateways: dict[str, Gateway], clock: ShiftedClock, say: Say) -> None:
        self.gateways = gateways
        self.clock = clock
        self.say = say

    async def submit(self, name: str, template: str, in_reply_to: str = "") -> MessageRow:
        gateway = self.gateways[name]
        form = (DEMO_FORMS / template).read_bytes().replace(b"IN-REPLY-TO", in_reply_to.encode())
        submitted = await asyncio.to_thread(gateway.submitter.submit, form)
        gateway.wake_outbound()
        return gateway.ledger.get(submitted.ledger_id)

    async def until(
        self,
        name: str,
        direction: str,
        partner: str,
        reference: str,
        states: tuple[MessageState, ...],
    ) -> MessageRow:
        """Wait until the message is in one of ``states`` at bureau ``name``."""
        ledger = self.gateways[name].ledger
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            row = await asyncio.to_thread(ledger.find, direction, partner, reference)
            if row is not None and row.state in states:
                return row
            if time.monotonic() > deadline:
                seen = row.state if row is not None else "nothing"
                raise TimeoutError(
                    f"{name}: {reference} did not reach {'/'.join(states)} (it is {seen})"
                )
            await asyncio.sleep(0.05)

    def desk_copy(self, name: str, desk: str, reference: str) -> Path:
        maildir = self.gateways[name].config.desk(desk).maildir
        found = sorted((maildir / "new").glob(f"*.{reference}"))
        return found[0] if found else maildir / "new"

    async def sweep(self) -> None:
        for gateway in self.gateways.values():
            await asyncio.to_thread(gateway.schedule.sweep_once)

    def notices(self, name: str) -> dict[Path, tuple[str, str]]:
        """Every notice in bureau ``name``'s desks: its file, and (desk, subject)."""
        found = {}
        for desk in self.gateways[name].config.desks:
            for path in sorted((desk.maildir / "new").glob("notice.*")):
                with path.open("rb") as file:
                    headers = BytesHeaderParser().parse(file)
                subject = " ".join(str(headers.get("Subject", path.name)).split())
                found[path] = (desk.name, subject)
        return found


async def _story(sites: dict[str, Site], say: Say, consoles: Path | None = None) -> None:
    """The story; then, when ``consoles`` (the demo's folder) is given, the bureaux' consoles
    until interrupted."""
    clock = ShiftedClock()
    configs = {name: configuration.load(site.config_path) for name, site in sites.items()}
    for config in configs.values():  # what an operator does once: `gateway db upgrade`
        engine = make_engine(config.database_url)
        try:
            schema.upgrade(engine)
        finally:
            engine.dispose()
    async with contextlib.AsyncExitStack() as stack:
        gateways = {
            name: Gateway(stack.enter_context(open_services(config, clock=clock)))
            for name, config in configs.items()
        }
        for gateway in gateways.values():
            await gateway.start()
            stack.push_async_callback(gateway.stop)
        stage = _Stage(gateways, clock, say)
        await _hit_and_answer(stage)
        await _interpol_query(stage)
        await _unanswered_urgent(stage)
        _ledgers(stage)
        say("")
        say("The desks' Maildirs (any mail client that reads Maildir opens them):")
        for name, gateway in gateways.items():
            for desk in gateway.config.desks:
                say(f"  {name.upper()} {desk.name:<9} {desk.maildir}")
        if consoles is not None:
            await serve_consoles(gateways, consoles, say)


async def _hit_and_answer(stage: _Stage) -> None:
    say = stage.say
    say("")
    say("1. RO-SIRENE sends form G (a hit on NO's alert) to NO-SIRENE")
    sent = await stage.submit("ro", "g-hit.xml")
    say(f"   RO: validated, numbered {sent.reference}, signed, encrypted to NO's pinned key")
    received = await stage.until(
        "no", "inbound", "RO-SIRENE", sent.reference, (InboundState.DELIVERED,)
    )
    say("   NO: decrypted, verified RO's signature, validated; 250 after the commit")
    copy = stage.desk_copy("no", received.desk or "", sent.reference)
    say(f"   NO: on its {received.desk} desk: {copy}")
    acked = await stage.until(
        "ro", "outbound", "NO-SIRENE", sent.reference, (OutboundState.ACKNOWLEDGED,)
    )
    say(f"   RO: NO's signed receipt verified, digest matches: {acked.reference} {acked.state}")
    say("")
    say("2. NO's handler answers with form M")
    reply = await stage.submit("no", "m-reply.xml", in_reply_to=sent.reference)
    say(f"   NO: {reply.form} {reply.reference} in reply to {sent.reference}")
    answered = await stage.until(
        "ro", "outbound", "NO-SIRENE", sent.reference, (OutboundState.ANSWERED,)
    )
    say(f"   RO: {answered.reference} {answered.state}; the reply is on RO's sirene desk")
    await stage.until("no", "inbound", "RO-SIRENE", sent.reference, (InboundState.ANSWERED,))
    say(f"   NO: {sent.reference} answered, the reply deadline NO's desk owed is met")


async def _interpol_query(stage: _Stage) -> None:
    say = stage.say
    say("")
    say("3. RO-NCB sends an IP-QUERY to RS-NCB on the Interpol channel")
    query = await stage.submit("ro", "ip-query.xml")
    say(f"   RO: {query.form} {query.reference} queued for RS-NCB")
    await stage.until("rs", "inbound", "RO-NCB", query.reference, (InboundState.DELIVERED,))
    await stage.until(
        "ro",
        "outbound",
        "RS-NCB",
        query.reference,
        (OutboundState.ACKNOWLEDGED, OutboundState.ANSWERED),
    )
    say(f"   RS: received and receipted; RO: {query.reference} acknowledged")
    result = await stage.submit("rs", "ip-query-result.xml", in_reply_to=query.reference)
    say(f"   RS: answers with {result.form} {result.reference} (no hit)")
    done = await stage.until("ro", "outbound", "RS-NCB", query.reference, (OutboundState.ANSWERED,))
    say(f"   RO: {done.reference} {done.state}")


async def _unanswered_urgent(stage: _Stage) -> None:
    say = stage.say
    say("")
    say("4. RO-SIRENE sends an urgent G to NO-SIRENE, and nobody at NO answers")
    sent = await stage.submit("ro", "g-urgent.xml")
    received = await stage.until(
        "no", "inbound", "RO-SIRENE", sent.reference, (InboundState.DELIVERED,)
    )
    await stage.until("ro", "outbound", "NO-SIRENE", sent.reference, (OutboundState.ACKNOWLEDGED,))
    say(f"   NO: {sent.reference} on the {received.desk} desk, reply due in 12 hours")
    seen = {name: set(stage.notices(name)) for name in stage.gateways}
    for hours, label in ((6.0, "50 %"), (10.8, "90 %"), (12.0, "the deadline")):
        target = received.created_at + timedelta(hours=hours)
        step = target - stage.clock.now()
        if step > timedelta(0):
            stage.clock.advance(step + timedelta(seconds=1))
        await stage.sweep()
        say(f"   the clock jumps to {label} of the window ({stage.clock.now():%Y-%m-%d %H:%M} UTC)")
        for name in ("no", "ro"):
            notices = stage.notices(name)
            for path, (desk, subject) in notices.items():
                if path not in seen[name] and path.name.startswith(DEADLINE_NOTICES):
                    say(f"     {name.upper()} {desk} desk: {subject}")
            seen[name] = set(notices)


def _ledgers(stage: _Stage) -> None:
    say = stage.say
    for gateway in stage.gateways.values():
        say("")
        codes = ", ".join(gateway.config.identity.bureaux.values())
        say(f"Ledger of {codes}:")
        say(
            f"  {'reference':<16} {'dir':<8} {'partner':<10} {'form':<16} {'state':<13} in reply to"
        )
        with gateway.ledger.reading() as tx:
            rows = lookups.every_message(tx)
        for row in rows:
            say(
                f"  {row.reference:<16} {row.direction:<8} {row.partner:<10} {row.form:<16} "
                f"{row.state:<13} {row.in_reply_to or ''}"
            )
