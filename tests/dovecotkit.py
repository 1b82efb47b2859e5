"""Test kit: a real Dovecot (Debian's dovecot-imapd and dovecot-lmtpd) started by the test in a
temporary folder: LMTP on a unix socket and on a free port of 127.0.0.1, IMAP on another,
STARTTLS on both when given a certificate, one mailbox user per
desk and a master user for the gateway's look before a re-delivery, Maildirs in the folder.

It runs as the current user. Under root, Dovecot's login processes run as ``nobody`` and the
mail as ``nobody`` (Dovecot refuses uid 0 for mail), so the folder is made readable to it.
Without Dovecot the tests skip and say so, unless GATEWAY_REQUIRE_DOVECOT=1 (CI): then they fail.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MASTER_USER = "gateway"
MASTER_PASSWORD = "master-secret"
DESK_PASSWORD = "desk-secret"
START_TIMEOUT = 15.0


def require_dovecot() -> None:
    """Skip loudly when Dovecot is not installed; fail instead under GATEWAY_REQUIRE_DOVECOT=1."""
    lmtp = Path("/usr/lib/dovecot/lmtp")
    imap = Path("/usr/lib/dovecot/imap")
    if Path(DOVECOT).exists() and lmtp.exists() and imap.exists():
        return
    reason = (
        "Dovecot NOT INSTALLED (apt-get install dovecot-imapd dovecot-lmtpd): "
        "desk delivery by LMTP not tested"
    )
    if os.environ.get("GATEWAY_REQUIRE_DOVECOT") == "1":
        pytest.fail(reason + " but GATEWAY_REQUIRE_DOVECOT=1")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Dovecot:
    """A running Dovecot: where its LMTP socket and IMAP port are, its folder and its log."""

    root: Path
    lmtp_socket: Path
    lmtp_port: int
    imap_port: int
    password_file: Path  # the master user's password, for [desk_delivery] imap_password_file
    process: subprocess.Popen[bytes]
    ca: Path | None = None  # the certificate Dovecot presents (self-signed): its own CA

    @property
    def log(self) -> Path:
        return self.root / "dovecot.log"

    def desk_config(self) -> str:
        """The [desk_delivery] table of a gateway that delivers to this Dovecot: LMTP by its
        socket without a certificate, by TCP with STARTTLS (and IMAP too) with one."""
        lmtp = self.lmtp_socket if self.ca is None else f"127.0.0.1:{self.lmtp_port}"
        tls = "imap_tls = false\n" if self.ca is None else f'tls_ca = "{self.ca}"\n'
        return (
            "\n[desk_delivery]\n"
            'method = "lmtp"\n'
            f'lmtp = "{lmtp}"\n'
            f'imap = "127.0.0.1:{self.imap_port}"\n'
            f'imap_user = "{MASTER_USER}"\n'
            f'imap_password_file = "{self.password_file}"\n'
            f"{tls}"
            'timeout = "PT10S"\n'
        )

    def message_ids(self, mailbox: str) -> Counter[str]:
        """Message-ID of every message in ``mailbox``'s INBOX, read over IMAP as a handler."""
        client = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        try:
            client.login(mailbox, DESK_PASSWORD)
            client.select("INBOX", readonly=True)
            found: Counter[str] = Counter()
            typ, data = client.search(None, "ALL")
            assert typ == "OK", data
            for number in data[0].split():
                typ, parts = client.fetch(number, "(BODY.PEEK[HEADER])")
                assert typ == "OK", parts
                header = parts[0][1] if isinstance(parts[0], tuple) else b""
                found[str(message_from_bytes(header, policy=default)["Message-ID"])] += 1
            return found
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()

    def fetch(self, mailbox: str, message_id: str) -> bytes:
        """The whole of the message with this Message-ID in ``mailbox``'s INBOX."""
        client = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        try:
            client.login(mailbox, DESK_PASSWORD)
            client.select("INBOX", readonly=True)
            typ, data = client.search(None, "HEADER", "Message-ID", f'"{message_id}"')
            numbers = data[0].split()
            assert typ == "OK" and len(numbers) == 1, (typ, data)
            typ, parts = client.fetch(numbers[0], "(BODY.PEEK[])")
            assert typ == "OK" and isinstance(parts[0], tuple), parts
            return bytes(parts[0][1])
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()


def _config(
    root: Path,
    mailboxes: tuple[str, ...],
    ports: tuple[int, int],
    extra: str,
    tls: tuple[Path, Path] | None,
) -> str:
    imap_port, lmtp_port = ports
    ssl = "ssl = no\n" if tls is None else f"ssl = yes\nssl_cert = <{tls[0]}\nssl_key = <{tls[1]}\n"
    me = pwd.getpwuid(os.getuid())
    if os.getuid() == 0:
        nobody = pwd.getpwnam("nobody")
        login_user, mail_uid, mail_gid = "nobody", nobody.pw_uid, nobody.pw_gid
    else:
        login_user, mail_uid, mail_gid = me.pw_name, me.pw_uid, me.pw_gid
    group = grp.getgrgid(os.getgid()).gr_name
    (root / "users").write_text(
        "".join(f"{name}:{{PLAIN}}{DESK_PASSWORD}::::::\n" for name in mailboxes)
    )
    (root / "masters").write_text(f"{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}::::::\n")
    return f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = dovecot-{root.name}
log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain
auth_master_user_separator = *
mail_location = maildir:{root}/mail/%n
first_valid_uid = 1
default_login_user = {login_user}
default_internal_user = {me.pw_name}
default_internal_group = {group}
passdb {{
  driver = passwd-file
  args = {root}/masters
  master = yes
  result_success = continue
}}
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener lmtp-gateway {{
    mode = 0600
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
{extra}"""


@contextlib.contextmanager
def running_dovecot(
    mailboxes: tuple[str, ...], extra: str = "", tls: tuple[Path, Path] | None = None
) -> Iterator[Dovecot]:
    """Dovecot in a fresh folder under /tmp (its socket paths must stay short), stopped and
    removed at the end; ``extra``: more of its configuration (e.g. a quota); ``tls``: its
    certificate and key (PEM, for 127.0.0.1), for STARTTLS."""
    require_dovecot()
    root = Path(tempfile.mkdtemp(prefix="dv", dir="/tmp"))
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    if os.getuid() == 0:  # the mail is nobody's
        root.chmod(0o755)
        nobody = pwd.getpwnam("nobody")
        os.chown(root / "mail", nobody.pw_uid, nobody.pw_gid)
    imap_port, lmtp_port = free_port(), free_port()
    conf = root / "dovecot.conf"
    conf.write_text(_config(root, mailboxes, (imap_port, lmtp_port), extra, tls))
    password_file = root / "gateway.password"
    password_file.write_text(MASTER_PASSWORD + "\n")
    password_file.chmod(0o600)
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(root / "stderr.log").open("wb"),
    )
    socket_path = root / "run" / "lmtp-gateway"
    ca = None if tls is None else tls[0]
    dovecot = Dovecot(root, socket_path, lmtp_port, imap_port, password_file, process, ca)
    try:
        _wait_ready(dovecot)
        yield dovecot
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(dovecot: Dovecot) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if dovecot.process.poll() is not None:
            break
        if dovecot.lmtp_socket.exists():
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", dovecot.imap_port), timeout=1) as probe,
            ):
                if probe.recv(100).startswith(b"* OK"):
                    return
        time.sleep(0.05)
    log = dovecot.log.read_text(errors="replace") if dovecot.log.exists() else ""
    stderr = (dovecot.root / "stderr.log").read_text(errors="replace")
    raise AssertionError(f"Dovecot did not start:\n{stderr}\n{log[-3000:]}")
