"""What `gateway serve` checks before it opens anything: each fault an operator can cause, refused
in one line that names the file or key at fault (ConfigError, exit 2; CannotStart, exit 1)."""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path

from gateway.core.config import Config
from gateway.core.errors import BadPassphrase, CannotStart, ConfigError, KeyUnusable
from gateway.crypto.setup import open_gnupg
from gateway.desks.imapcheck import read_password
from gateway.inbound.smtp_server import tls_context
from gateway.service.services import open_services
from gateway.store.durable import private_folder
from gateway.store.spoollock import LOCK_NAME, SpoolLock
from gateway.store.unit import LedgerError

# The spool's own folders that must be writable (made by the spools when missing).
SPOOL_FOLDERS = ("inbound", "outbound", "outbox")


def check(config: Config, now: datetime) -> SpoolLock:
    """Every check, in the order serve uses what it checks; returns the spool's lock, held (the
    caller keeps it for the life of the process). Nothing else is left open."""
    source = str(config.source or "configuration")
    spool_folder(config, source)
    try:
        lock = SpoolLock.acquire(config.paths.spool, now)
    except OSError as exc:
        raise ConfigError(
            source, "paths.spool", f"cannot create {config.paths.spool / LOCK_NAME}: {_words(exc)}"
        ) from None
    try:
        tls_files(config, source)
        passphrase_source(config, source)
        desk_delivery(config, source)
        signing_key(config, source)
        ledger(config, source)
    except BaseException:
        lock.release()
        raise
    return lock


def spool_folder(config: Config, source: str) -> None:
    """The spool is a folder this user can write (made 0700 when missing), and so is each of the
    spool's own folders that exists already."""
    spool = config.paths.spool
    if spool.exists() and not spool.is_dir():
        raise ConfigError(source, "paths.spool", f"{spool} is not a folder")
    try:
        private_folder(spool)
    except OSError as exc:
        raise ConfigError(source, "paths.spool", f"cannot create {spool}: {_words(exc)}") from None
    folders = [spool]
    for name in SPOOL_FOLDERS:
        if (spool / name).is_dir():
            folders += [spool / name, *(p for p in (spool / name).iterdir() if p.is_dir())]
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            why = "read-only file system" if _read_only_mount(folder) else "no write permission"
            raise ConfigError(
                source, "paths.spool", f"{folder} is not writable by this user ({why})"
            )


def tls_files(config: Config, source: str) -> None:
    """The STARTTLS certificate and key can be read, are PEM, and belong together."""
    cert, key = config.listen.tls_cert, config.listen.tls_key
    if cert is None or key is None:
        return
    texts = {}
    for name, path in (("smtp.listen.tls_cert", cert), ("smtp.listen.tls_key", key)):
        try:
            texts[name] = path.read_bytes()
        except OSError as exc:
            raise ConfigError(source, name, f"cannot read {path}: {_words(exc)}") from None
    if b"-----BEGIN CERTIFICATE-----" not in texts["smtp.listen.tls_cert"]:
        raise ConfigError(source, "smtp.listen.tls_cert", f"{cert} holds no PEM certificate")
    if b"PRIVATE KEY-----" not in texts["smtp.listen.tls_key"]:
        raise ConfigError(source, "smtp.listen.tls_key", f"{key} holds no PEM private key")
    try:
        tls_context(config)
    except ConfigError:
        raise ConfigError(
            source,
            "smtp.listen.tls_cert",
            f"{cert} and {key} do not load as a certificate and its private key "
            "(damaged, or the key is not the certificate's)",
        ) from None


def passphrase_source(config: Config, source: str) -> None:
    """The passphrase file exists, is a file, is readable, and no one else may read or write it;
    or the environment variable named for it is set."""
    settings = config.openpgp
    if settings.passphrase_env is not None and settings.passphrase_env not in os.environ:
        raise ConfigError(
            source,
            "openpgp.passphrase_env",
            f"the environment variable {settings.passphrase_env} (our key's passphrase) is not set",
        )
    path = settings.passphrase_file
    if path is None:
        return
    key = "openpgp.passphrase_file"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(source, key, f"passphrase file {path}: {_words(exc)}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(source, key, f"passphrase file {path} is not a file")
    if mode & 0o077:
        raise ConfigError(
            source,
            key,
            f"passphrase file {path} has mode {stat.S_IMODE(mode):04o}: group or others may "
            f"read or write it; make it 0600 (chmod 600 {path})",
        )
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(source, key, f"passphrase file {path}: {_words(exc)}") from None


def desk_delivery(config: Config, source: str) -> None:
    """With LMTP desk delivery, the IMAP master user's password file can be read and holds a
    password. Dovecot itself is not asked: while it is away, desk copies wait in the spool."""
    if config.desk_delivery.method != "lmtp":
        return
    try:
        read_password(config.desk_delivery)
    except ConfigError as exc:
        raise ConfigError(source, "desk_delivery.imap_password_file", exc.reason) from None


def signing_key(config: Config, source: str) -> None:
    """Our secret key is in the GnuPG home and the passphrase unlocks it: a real signature."""
    home, fingerprint = config.paths.gnupg_home, config.openpgp.fingerprint
    if not fingerprint:
        raise ConfigError(
            source, "openpgp.fingerprint", "no key of ours: run `gateway keys generate` first"
        )
    try:
        gpg = open_gnupg(config)
    except KeyUnusable as exc:
        raise ConfigError(source, "paths.gnupg_home", f"{home}: {exc.detail}") from None
    except OSError as exc:
        raise ConfigError(source, "paths.gnupg_home", f"{home}: {_words(exc)}") from None
    try:
        gpg.check_signing()
    except BadPassphrase as exc:
        reason = _passphrase_reason(config, exc)
        raise ConfigError(source, _passphrase_key(config), reason) from None
    except KeyUnusable as exc:
        secret = exc.detail.startswith("our secret key")
        reason = f"no secret key {fingerprint} in the GnuPG home {home}" if secret else exc.detail
        raise ConfigError(source, "openpgp.fingerprint", reason) from None
    finally:
        gpg.close()


def ledger(config: Config, source: str) -> None:
    """The ledger opens and is at this gateway's schema revision (else LedgerOutdated, exit 2:
    `gateway db upgrade` is the operator's step, never taken here)."""
    url = config.database_url
    sqlite = url.startswith("sqlite")
    try:
        with open_services(config):
            pass  # what serve opens first: the engine, at the schema revision required
    except OSError as exc:
        raise ConfigError(
            source, "database.url", f"cannot use {exc.filename or 'the ledger'}: {_words(exc)}"
        ) from None
    except LedgerError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if sqlite:
            where = url.split(":///", 1)[-1]
            raise ConfigError(
                source, "database.url", f"cannot open the SQLite ledger {where}: {reason}"
            ) from None
        # The URL may carry a password: never printed.
        raise CannotStart(f"cannot open the ledger database (database.url): {reason}") from None


def _passphrase_key(config: Config) -> str:
    if config.openpgp.passphrase_env is not None:
        return "openpgp.passphrase_env"
    return "openpgp.passphrase_file"


def _passphrase_reason(config: Config, exc: BadPassphrase) -> str:
    settings = config.openpgp
    if settings.passphrase_file is not None:
        return f"passphrase file {settings.passphrase_file}: {exc.detail}"
    if settings.passphrase_env is not None:
        return f"passphrase in ${settings.passphrase_env}: {exc.detail}"
    return f"{exc.detail}: name the passphrase file (or passphrase_env)"


def _read_only_mount(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


def _words(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower() if exc.errno else str(exc)
