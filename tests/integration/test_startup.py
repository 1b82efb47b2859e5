"""`gateway serve` as an operator meets it in the first hour: every fault they can cause refused in
one line on stderr that names the file or key at fault (exit 2 for the configuration, 1 for the
rest), never a traceback; and a run that works leaves private files and a quiet log.

Each case runs `python -m gateway -c FILE serve` as a subprocess: the exit code and the one line
are the point."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import gpgkit
import pytest
from dbkit import upgraded
from integration.inboundkit import World, gateway_config, message

from gateway.core import config as configuration
from gateway.core.errors import ConfigError
from gateway.crypto.openpgp import GnuPG, KeyProtection

GATEWAY = (sys.executable, "-m", "gateway")
LISTENING = re.compile(r"listening on [^\s:]+:(\d+)")
START_TIMEOUT = 60.0
PASSPHRASE = "correct horse battery staple"
OPENSSL_EC_KEY = ("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")


def serve_once(
    config: Path, *args: str, timeout: float = 60, upgrade: bool = True
) -> subprocess.CompletedProcess[str]:
    """`gateway -c CONFIG serve` that is expected to refuse to start (and so to end by itself).
    ``upgrade``: the ledger brought to the schema first, where the configuration lets it be, so
    that a check after the ledger's is what refuses."""
    if upgrade:
        with contextlib.suppress(ConfigError, OSError):
            upgraded(configuration.load(config).database_url)
    return subprocess.run(
        [*GATEWAY, "-c", str(config), "serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd="/",
        check=False,
    )


def assert_refused(done: subprocess.CompletedProcess[str], code: int, *wanted: str) -> str:
    """One line on stderr, no traceback, the exit code, and every ``wanted`` text in the line."""
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    assert done.returncode == code, done.stderr
    for text in wanted:
        assert text in lines[0], lines[0]
    return lines[0]


class Served:
    """`gateway -c CONFIG serve` running in the background; its stderr in a file."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        upgraded(configuration.load(config).database_url)  # the operator's `gateway db upgrade`
        self.log = log
        self._out = log.open("wb")
        self.process = subprocess.Popen(
            [*GATEWAY, "-c", str(config), "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._out,
            cwd="/",
        )

    def wait_listening(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if found := LISTENING.search(self.log.read_text(errors="replace")):
                return int(found.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"`gateway serve` did not start:\n{self.text()}")

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._out.close()
        return code

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def edited(path: Path, *replacements: tuple[str, str], append: str = "") -> Path:
    """The configuration at ``path`` with each (old, new) replaced (each must be there)."""
    text = path.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text + append)
    return path


@pytest.fixture
def config(world: World, tmp_path: Path) -> Path:
    """The world's configuration with its spool and desks in this test's folder."""
    return gateway_config(world, tmp_path)


@dataclass
class Protected:
    """A GnuPG home whose key is protected by PASSPHRASE."""

    home: Path
    fingerprint: str


@pytest.fixture(scope="module")
def protected() -> Iterator[Protected]:
    home = gpgkit.new_home()
    with GnuPG(home, protection=KeyProtection(PASSPHRASE, s2k_count=1024)) as gpg:
        fingerprint = gpg.generate("RO-SIRENE", "sirene@ro.example", expire="1y")
    yield Protected(home, fingerprint)


def with_passphrase_file(config: Path, world: World, protected: Protected, file: Path) -> Path:
    fingerprint = configuration.load(config).openpgp.fingerprint
    assert fingerprint is not None
    return edited(
        config,
        (f'gnupg_home = "{world.gnupg_home}"', f'gnupg_home = "{protected.home}"'),
        (
            f'fingerprint = "{fingerprint}"',
            f'fingerprint = "{protected.fingerprint}"\npassphrase_file = "{file}"',
        ),
    )


def private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return path


# ------------------------------------------------------------------------ the address, the spool


def test_a_port_in_use_is_named_with_host_and_port(config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        edited(config, ("port = 0\n", f"port = {port}\n"))
        done = serve_once(config)
    assert_refused(done, 1, f"cannot listen on 127.0.0.1:{port}", "address already in use")


def test_a_second_serve_on_the_same_spool_names_the_first(config: Path, tmp_path: Path) -> None:
    first = Served(config, tmp_path / "first.log")
    try:
        first.wait_listening()
        done = serve_once(config)
        spool = configuration.load(config).paths.spool
        line = assert_refused(
            done, 1, f"spool {spool} is in use by gateway pid {first.process.pid} on host "
        )
        assert re.search(r" since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", line), line
        assert first.process.poll() is None, "the first gateway runs on"
    finally:
        assert first.stop() == 0, first.text()
    # The lock went with the first process: the spool can be served again.
    again = Served(config, tmp_path / "again.log")
    try:
        again.wait_listening()
    finally:
        assert again.stop() == 0, again.text()


def test_a_spool_that_is_a_file_is_refused(config: Path, tmp_path: Path) -> None:
    spool = configuration.load(config).paths.spool
    spool.write_text("not a folder\n")
    done = serve_once(config)
    assert_refused(done, 2, str(config), "paths.spool", f"{spool} is not a folder")


@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """A folder nobody can write to: a read-only tmpfs for root (who writes through any mode),
    mode 0500 for anyone else."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"root, but cannot mount a read-only tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_spool_is_refused(config: Path, tmp_path: Path) -> None:
    spool = configuration.load(config).paths.spool
    with read_only_folder(spool):
        done = serve_once(config)
    assert_refused(done, 2, "paths.spool", f"{spool} is not writable by this user")


# -------------------------------------------------------------------- the key and its passphrase


def test_a_missing_passphrase_file_is_named(
    config: Path, world: World, protected: Protected, tmp_path: Path
) -> None:
    missing = tmp_path / "var" / "passphrase"
    done = serve_once(with_passphrase_file(config, world, protected, missing))
    assert_refused(done, 2, "openpgp.passphrase_file", f"passphrase file {missing}", "no such file")


def test_a_wrong_passphrase_is_refused_at_start(
    config: Path, world: World, protected: Protected, tmp_path: Path
) -> None:
    wrong = private_file(tmp_path / "passphrase", "not the passphrase")
    done = serve_once(with_passphrase_file(config, world, protected, wrong))
    line = assert_refused(
        done,
        2,
        "openpgp.passphrase_file",
        f"passphrase file {wrong}",
        f"the passphrase does not unlock our key {protected.fingerprint}",
    )
    assert "nobody" not in line
    assert "Invalid passphrase" not in line


def test_no_passphrase_for_a_protected_key_is_refused(
    config: Path, world: World, protected: Protected
) -> None:
    fingerprint = configuration.load(config).openpgp.fingerprint
    edited(
        config,
        (f'gnupg_home = "{world.gnupg_home}"', f'gnupg_home = "{protected.home}"'),
        (f'fingerprint = "{fingerprint}"', f'fingerprint = "{protected.fingerprint}"'),
    )
    done = serve_once(config)
    assert_refused(done, 2, "openpgp.passphrase_file", "protected by a passphrase")


def test_the_right_passphrase_starts(
    config: Path, world: World, protected: Protected, tmp_path: Path
) -> None:
    """The control of the two above: the same home and key, the right passphrase."""
    right = private_file(tmp_path / "passphrase", PASSPHRASE)
    served = Served(with_passphrase_file(config, world, protected, right), tmp_path / "serve.log")
    try:
        served.wait_listening()
    finally:
        assert served.stop() == 0, served.text()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_passphrase_file_others_may_read_or_write_is_refused(
    config: Path, world: World, protected: Protected, tmp_path: Path, mode: int
) -> None:
    loose = private_file(tmp_path / "passphrase", PASSPHRASE)
    loose.chmod(mode)
    done = serve_once(with_passphrase_file(config, world, protected, loose))
    assert_refused(done, 2, "openpgp.passphrase_file", str(loose), f"has mode {mode:04o}")


def test_a_gnupg_home_without_our_secret_key_is_refused(config: Path, world: World) -> None:
    empty = gpgkit.new_home()
    edited(config, (f'gnupg_home = "{world.gnupg_home}"', f'gnupg_home = "{empty}"'))
    fingerprint = configuration.load(config).openpgp.fingerprint
    done = serve_once(config)
    assert_refused(
        done, 2, "openpgp.fingerprint", f"no secret key {fingerprint} in the GnuPG home {empty}"
    )


# -------------------------------------------------------------------------------------- TLS


def test_a_missing_tls_certificate_is_named(config: Path, world: World, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.crt"
    edited(config, (f'tls_cert = "{world.tls_cert}"', f'tls_cert = "{missing}"'))
    done = serve_once(config)
    assert_refused(done, 2, "smtp.listen.tls_cert", f"cannot read {missing}", "no such file")


def test_a_missing_imap_password_file_is_named(config: Path, tmp_path: Path) -> None:
    missing = tmp_path / "imap.password"
    desk_delivery = (
        '\n[desk_delivery]\nmethod = "lmtp"\nlmtp = "/run/dovecot/lmtp"\n'
        f'imap = "127.0.0.1:143"\nimap_user = "gateway"\nimap_password_file = "{missing}"\n'
    )
    done = serve_once(edited(config, append=desk_delivery))
    assert_refused(
        done, 2, "desk_delivery.imap_password_file", f"cannot read {missing}", "No such file"
    )


def test_a_tls_key_that_is_a_folder_is_named(config: Path, tmp_path: Path) -> None:
    key = configuration.load(config).listen.tls_key
    folder = tmp_path / "key-folder"
    folder.mkdir()
    edited(config, (f'tls_key = "{key}"', f'tls_key = "{folder}"'))
    done = serve_once(config)
    assert_refused(done, 2, "smtp.listen.tls_key", f"cannot read {folder}", "is a directory")


def test_a_certificate_that_is_not_pem_is_named(config: Path, world: World, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("this is no certificate\n")
    edited(config, (f'tls_cert = "{world.tls_cert}"', f'tls_cert = "{garbage}"'))
    done = serve_once(config)
    assert_refused(done, 2, "smtp.listen.tls_cert", f"{garbage} holds no PEM certificate")


def test_a_key_that_is_not_the_certificates_names_both(
    config: Path, world: World, tmp_path: Path
) -> None:
    other_key = tmp_path / "other.key"
    subprocess.run(
        [*OPENSSL_EC_KEY, "-out", str(other_key)],
        check=True,
        capture_output=True,
    )
    key = configuration.load(config).listen.tls_key
    edited(config, (f'tls_key = "{key}"', f'tls_key = "{other_key}"'))
    done = serve_once(config)
    assert_refused(done, 2, "smtp.listen.tls_cert", str(world.tls_cert), str(other_key))


# ------------------------------------------------------------------------------ the ledger


def test_a_relative_sqlite_path_is_taken_from_the_configuration_folder(
    config: Path, tmp_path: Path
) -> None:
    """README: relative paths are the configuration file's folder's, database.url included; the
    command runs from / (where var/ does not exist and could not be made)."""
    edited(config, append='\n[database]\nurl = "sqlite:///var/db/ledger.db"\n')
    for command in (["db", "upgrade"], ["inbox"]):
        done = subprocess.run(
            [*GATEWAY, "-c", str(config), *command],
            capture_output=True,
            text=True,
            cwd="/",
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    ledger = tmp_path / "var" / "db" / "ledger.db"
    assert ledger.is_file()
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o600
    for folder in (tmp_path / "var", tmp_path / "var" / "db"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not Path("/var/db/ledger.db").exists()


def test_a_ledger_folder_that_cannot_be_made_is_named(config: Path, tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the folder should be\n")
    edited(config, append='\n[database]\nurl = "sqlite:///blocker/ledger.db"\n')
    done = serve_once(config, upgrade=False)
    assert_refused(done, 2, "database.url", str(tmp_path / "blocker"))


# ------------------------------------------------------------------------ a run that works


@dataclass
class Run:
    """One real `gateway serve` that took one message and was stopped with SIGTERM."""

    config: configuration.Config
    stderr: str
    code: int
    reference: str
    folders: dict[Path, int]  # the mode of each, while it ran
    files: dict[Path, int]


@pytest.fixture(scope="module")
def one_message_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("run")
    config_path = gateway_config(world, folder)
    config = configuration.load(config_path)
    served = Served(config_path, folder / "serve.log")
    try:
        port = served.wait_listening()
        reply = asyncio.run(_send(world, port, message(world)))
        reference = reply.split()[-1]
        new = [desk.maildir / "new" for desk in config.desks]  # the sample is urgent: duty's
        deadline = time.monotonic() + 30
        done = config.paths.spool / "inbound" / "done"  # the hand-off's last move
        while not (
            any(folder.is_dir() and any(folder.iterdir()) for folder in new)
            and done.is_dir()
            and any(done.iterdir())
        ):
            assert time.monotonic() < deadline, served.text()
            time.sleep(0.05)
        folders, files = _modes(config)
    finally:
        code = served.stop()
    return Run(config, served.text(), code, reference, folders, files)


def _modes(config: configuration.Config) -> tuple[dict[Path, int], dict[Path, int]]:
    """The mode of every folder and file of the spool and the desks' Maildirs."""
    roots = [config.paths.spool, *(desk.maildir for desk in config.desks)]
    found = [path for root in roots for path in (root, *root.rglob("*"))]
    folders = {path: stat.S_IMODE(path.stat().st_mode) for path in found if path.is_dir()}
    files = {path: stat.S_IMODE(path.stat().st_mode) for path in found if path.is_file()}
    return folders, files


async def _send(world: World, port: int, raw: bytes) -> str:
    """One message over STARTTLS, as NO-SIRENE; the text of the 250 (anything else raises)."""
    context = ssl.create_default_context(cafile=str(world.tls_cert))
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, tls_context=context, timeout=30)
    async with client:
        response = await client.sendmail("sirene@no.example", ["sirene@ro.example"], raw)
    return response[1]


def test_serve_logs_one_line_per_message_and_no_library_chatter(one_message_run: Run) -> None:
    run = one_message_run
    assert run.code == 0, run.stderr
    info = [line for line in run.stderr.splitlines() if " INFO " in line]
    about = [line for line in info if run.reference in line]
    assert len(about) == 1, "\n".join(about)
    assert f"received G {run.reference} from NO-SIRENE" in about[0]
    assert "mail.log" not in run.stderr
    assert "apscheduler" not in run.stderr
    assert "Available AUTH mechanisms" not in run.stderr
    assert "Traceback" not in run.stderr
    # Python reprs in our own lines: a peer tuple, bytes, a dataclass, a list.
    assert not re.search(r"\('\d+\.\d+\.\d+\.\d+', \d+\)|b'|b\"|\w+\(\w+=|: \[\]", run.stderr), (
        run.stderr
    )


def test_debug_shows_the_smtp_commands(world: World, config: Path, tmp_path: Path) -> None:
    """The control of the test above: the lines are there to be had at DEBUG."""
    served = Served(config, tmp_path / "serve.log", "--log-level", "DEBUG")
    try:
        port = served.wait_listening()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.recv(1024)
            client.sendall(b"EHLO probe.example\r\nQUIT\r\n")
            client.recv(4096)
    finally:
        served.stop()
    assert "mail.log" in served.text()
    assert "Available AUTH mechanisms" not in served.text()


def test_a_run_leaves_private_folders_and_files(one_message_run: Run) -> None:
    """Checked while it ran: the ledger's -wal and -shm go when it stops."""
    run = one_message_run
    names = {path.name for path in run.files}
    assert {"ledger.db", "ledger.db-wal", "ledger.db-shm", "gateway.lock"} <= names
    assert any(path.parent.name == "new" and "desks" in path.parts for path in run.files)
    assert any(path.parent.name == "done" and "inbound" in path.parts for path in run.files)
    duty = run.config.desk("duty").maildir  # where the urgent sample went
    assert {duty, duty / "cur", duty / "new", duty / "tmp"} <= run.folders.keys()
    assert {str(p): oct(mode) for p, mode in run.folders.items() if mode != 0o700} == {}
    assert {str(p): oct(mode) for p, mode in run.files.items() if mode != 0o600} == {}


@pytest.mark.parametrize("command", [["inbox"], ["status", "NO-2026-000001"], ["deadlines"]])
def test_other_commands_name_a_ledger_they_cannot_open(
    config: Path, tmp_path: Path, command: list[str]
) -> None:
    """Not only serve: a command that reads the ledger says which file is in the way."""
    (tmp_path / "blocker").write_text("a file where the folder should be\n")
    edited(config, append='\n[database]\nurl = "sqlite:///blocker/ledger.db"\n')
    done = subprocess.run(
        [*GATEWAY, "-c", str(config), *command],
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
        timeout=60,
    )
    assert_refused(done, 1, str(tmp_path / "blocker"), "file exists")


def test_other_commands_name_a_ledger_sqlite_cannot_open(config: Path, tmp_path: Path) -> None:
    (tmp_path / "ledger.db").mkdir()  # a folder where the database file should be
    edited(config, append='\n[database]\nurl = "sqlite:///ledger.db"\n')
    done = subprocess.run(
        [*GATEWAY, "-c", str(config), "inbox"],
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
        timeout=60,
    )
    assert_refused(done, 1, str(tmp_path / "ledger.db"), "is a directory")
