"""The configuration: one frozen Config from TOML; every mistake names the file, the key and why."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.core import config as configuration
from gateway.core.errors import ConfigError

EXAMPLE = configuration.PROJECT_ROOT / "config" / "gateway.example.toml"
MINIMAL = """
[identity]
country = "RO"
address = "gateway@ro.example"
bureaux = { sirene = "RO-SIRENE" }

[[partners]]
code = "NO-SIRENE"
channel = "sirene"
country = "NO"
address = "sirene@no.example"
smtp_host = "127.0.0.1"
smtp_port = 2525
fingerprint = "0123 4567 89ab cdef 0123 4567 89ab cdef 0123 4567"

[[desks]]
name = "sirene"
maildir = "desks/sirene"

[[routes]]
desk = "sirene"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def failure(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        configuration.load(path)
    assert caught.value.source == str(path)
    return caught.value


def test_example_is_complete_and_valid() -> None:
    config = configuration.load(EXAMPLE)
    assert config.identity.bureaux == {
        "sirene": "RO-SIRENE",
        "interpol": "RO-NCB",
        "europol": "RO-ENU",
    }
    assert [p.code for p in config.partners] == ["NO-SIRENE", "RS-NCB"]
    assert config.partner("RS-NCB").require_tls
    assert config.desk("duty").maildir == (EXAMPLE.parent / "../spool/desks/duty").resolve()
    assert config.routes[0].matches("sirene", "G", "urgent", "NO-SIRENE")
    assert not config.routes[1].matches("interpol", "IP-MSG", "normal", "RS-NCB")


def test_example_comments_every_line() -> None:
    for number, line in enumerate(EXAMPLE.read_text().splitlines(), 1):
        stripped = line.strip()
        if "=" in stripped and not stripped.startswith("#") and not stripped.startswith("["):
            continue  # a value: its comment may be on a line above when the row is a repeat
        assert stripped == "" or stripped.startswith(("#", "[")), f"line {number}: {line}"
    values = [
        line
        for line in EXAMPLE.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    ]
    commented = [line for line in values if "#" in line]
    assert len(commented) >= len(values) * 0.6


def test_minimal_defaults(tmp_path: Path) -> None:
    config = configuration.load(write(tmp_path, MINIMAL))
    partner = config.partner("NO-SIRENE")
    assert partner.fingerprint == "0123456789ABCDEF0123456789ABCDEF01234567"
    assert partner.require_tls is True
    assert partner.receipt_window == timedelta(minutes=15)
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'spool' / 'ledger.db'}"
    assert config.listen.max_message_bytes == 10 * 1024 * 1024
    assert config.partner_by_address("SIRENE@no.example") is partner
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.database_url = "x"  # type: ignore[misc]


def test_unknown_key(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL.replace("smtp_port = 2525", "smtp_prot = 2525"))
    assert error.key == "partners[0].smtp_prot"
    assert "unknown key (did you mean 'smtp_port'?)" in error.reason


def test_unknown_section(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL + "\n[smtp.lisen]\nport = 25\n")
    assert error.key == "smtp.lisen"


def test_missing_partner_fingerprint(tmp_path: Path) -> None:
    text = "\n".join(line for line in MINIMAL.splitlines() if "fingerprint" not in line)
    error = failure(tmp_path, text)
    assert error.key == "partners[0].fingerprint"
    assert "pinned OpenPGP primary-key fingerprint" in error.reason


def test_malformed_fingerprint(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL.replace("0123 4567 89ab", "XYZ"))
    assert error.key == "partners[0].fingerprint"


@pytest.mark.parametrize("port", ["0", "70000", "-1", '"25"'])
def test_bad_partner_port(tmp_path: Path, port: str) -> None:
    error = failure(tmp_path, MINIMAL.replace("smtp_port = 2525", f"smtp_port = {port}"))
    assert error.key == "partners[0].smtp_port"


def test_bad_listen_port(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL + "\n[smtp.listen]\nport = 123456\n")
    assert (error.key, error.reason) == ("smtp.listen.port", "123456 is above the maximum 65535")


def test_boolean_is_not_an_integer(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL.replace("smtp_port = 2525", "smtp_port = true"))
    assert error.reason == "must be an integer, not a boolean"


def test_bad_channel(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL.replace('channel = "sirene"', 'channel = "sis"'))
    assert error.key == "partners[0].channel"
    assert "not one of sirene, europol, interpol" in error.reason


def test_partner_country_must_match_code(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL.replace('country = "NO"', 'country = "SE"'))
    assert error.key == "partners[0].code"


def test_duplicate_partner(tmp_path: Path) -> None:
    block = MINIMAL[MINIMAL.index("[[partners]]") : MINIMAL.index("[[desks]]")]
    error = failure(tmp_path, MINIMAL + block)
    assert error.key == "partners[1].code"


def test_route_to_unknown_desk(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL.replace('desk = "sirene"', 'desk = "nobody"'))
    assert (error.key, error.reason) == ("routes[0].desk", "unknown desk 'nobody'")


def test_bad_duration(tmp_path: Path) -> None:
    text = MINIMAL.replace("smtp_port = 2525", 'smtp_port = 2525\nreceipt_window = "P1M"')
    error = failure(tmp_path, text)
    assert error.key == "partners[0].receipt_window"
    assert "months are not allowed" in error.reason


def test_keep_sessions(tmp_path: Path) -> None:
    assert configuration.load(write(tmp_path, MINIMAL)).outbound.keep_sessions == timedelta(
        seconds=30
    )
    config = configuration.load(write(tmp_path, MINIMAL + '\n[outbound]\nkeep_sessions = "PT0S"\n'))
    assert config.outbound.keep_sessions == timedelta(0)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('"PT10M"', "PT10M is above the maximum PT5M"),
        ("30", "must be an ISO 8601 duration string"),
        ('"-PT1S"', "not an ISO 8601 duration"),
        ('"30s"', "not an ISO 8601 duration"),
    ],
)
def test_bad_keep_sessions(tmp_path: Path, value: str, reason: str) -> None:
    error = failure(tmp_path, MINIMAL + f"\n[outbound]\nkeep_sessions = {value}\n")
    assert error.key == "outbound.keep_sessions"
    assert reason in error.reason


def test_zero_is_not_a_duration_elsewhere(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL + '\n[outbound]\ntimeout = "PT0S"\n')
    assert (error.key, error.reason) == ("outbound.timeout", "'PT0S' must be longer than zero")


def test_tls_cert_without_key(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL + '\n[smtp.listen]\ntls_cert = "a.pem"\n')
    assert error.key == "smtp.listen.tls_key"


def test_identity_is_required(tmp_path: Path) -> None:
    error = failure(tmp_path, MINIMAL.replace("[identity]", "[identiti]"))
    assert error.key == "identity"


def test_not_toml(tmp_path: Path) -> None:
    error = failure(tmp_path, "this is = = not toml")
    assert "not valid TOML" in error.reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        configuration.load(tmp_path / "absent.toml")


def test_cli_exits_2_with_file_key_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MINIMAL.replace("smtp_port = 2525", "smtp_port = 99999"))
    sample = configuration.BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml"
    assert main(["-c", str(path), "validate", str(sample)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: partners[0].smtp_port: 99999 is above the maximum 65535" in err


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(configuration.ENV_VAR, raising=False)
    assert configuration.locate(None) is None
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "gateway.toml").write_text(MINIMAL)
    assert configuration.locate(None) == Path("config/gateway.toml")
    monkeypatch.setenv(configuration.ENV_VAR, "/from/env.toml")
    assert configuration.locate(None) == Path("/from/env.toml")
    assert configuration.locate("explicit.toml") == Path("explicit.toml")


def test_the_configuration_imports_only_the_standard_library() -> None:
    """Reading a configuration loads no XML, OpenPGP, SQL or SMTP library: every command reads
    one, and a mistake in the file must be reported without them."""
    heavy = ("lxml", "xmlschema", "gnupg", "sqlalchemy", "aiosmtpd", "aiosmtplib", "apscheduler")
    probe = (
        "import sys, gateway.core.config; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_access_defaults_and_settings(tmp_path: Path) -> None:
    defaults = configuration.load(write(tmp_path, MINIMAL)).access
    assert defaults == dataclasses.replace(
        configuration.AccessSettings(), totp_key_file=tmp_path / "var" / "totp.key"
    )
    assert defaults.totp_required == ("supervisor", "duty_officer", "operator", "auditor")
    config = configuration.load(
        write(
            tmp_path,
            MINIMAL
            + """
[access]
session_idle = "PT15M"
session_absolute = "PT8H"
lockout_after = 3
lockout_for = "PT1M"
lockout_max = "PT1H"
totp_required = ["handler"]
totp_key_file = "/etc/ipc-gateway/totp.key"
password_min_length = 16
password_time_cost = 4
password_memory_kib = 131072
""",
        )
    )
    assert config.access == configuration.AccessSettings(
        session_idle=timedelta(minutes=15),
        session_absolute=timedelta(hours=8),
        lockout_after=3,
        lockout_for=timedelta(minutes=1),
        lockout_max=timedelta(hours=1),
        totp_required=("handler",),
        totp_key_file=Path("/etc/ipc-gateway/totp.key"),
        password_min_length=16,
        password_time_cost=4,
        password_memory_kib=131072,
    )
    assert configuration.load(EXAMPLE).access.totp_key_file.name == "totp.key"


@pytest.mark.parametrize(
    ("setting", "key", "reason"),
    [
        ('totp_required = ["admin"]', "access.totp_required[0]", "'admin' is not one of handler"),
        ('session_idle = "PT0S"', "access.session_idle", "longer than zero"),
        (
            'session_idle = "PT2H"\nsession_absolute = "PT1H"',
            "access.session_absolute",
            "not be shorter than session_idle",
        ),
        ('lockout_for = "PT2H"\nlockout_max = "PT1H"', "access.lockout_max", "lockout_for"),
        ("lockout_after = 0", "access.lockout_after", "below the minimum 1"),
        ("password_memory_kib = 1024", "access.password_memory_kib", "below the minimum 19456"),
        ("password_min_length = 6", "access.password_min_length", "below the minimum 8"),
        ("lockout = 5", "access.lockout", "unknown key"),
    ],
)
def test_access_mistakes(tmp_path: Path, setting: str, key: str, reason: str) -> None:
    error = failure(tmp_path, MINIMAL + f"\n[access]\n{setting}\n")
    assert error.key == key
    assert reason in error.reason


def test_api_idempotency_retention(tmp_path: Path) -> None:
    assert configuration.load(write(tmp_path, MINIMAL)).api.idempotency_keep == timedelta(hours=24)
    config = configuration.load(write(tmp_path, MINIMAL + "\n[api]\nidempotency_hours = 72\n"))
    assert config.api.idempotency_keep == timedelta(hours=72)
    assert configuration.load(EXAMPLE).api.idempotency_keep == timedelta(hours=24)


@pytest.mark.parametrize(
    ("setting", "key", "reason"),
    [
        ("idempotency_hours = 0", "api.idempotency_hours", "below the minimum 1"),
        ("idempotency_hours = 9000", "api.idempotency_hours", "above the maximum 8784"),
        ('idempotency_hours = "24"', "api.idempotency_hours", "must be an integer"),
        ("idempotency_days = 1", "api.idempotency_days", "unknown key"),
    ],
)
def test_api_mistakes(tmp_path: Path, setting: str, key: str, reason: str) -> None:
    error = failure(tmp_path, MINIMAL + f"\n[api]\n{setting}\n")
    assert error.key == key
    assert reason in error.reason


def test_metrics_are_served_on_loopback_unless_configured(tmp_path: Path) -> None:
    default = configuration.load(write(tmp_path, MINIMAL)).metrics
    assert (default.host, default.port, default.enabled) == ("127.0.0.1", 9464, True)
    assert default.disk_floor_mb == 1024
    example = configuration.load(EXAMPLE).metrics
    assert (example.host, example.port) == ("127.0.0.1", 9464)
    text = MINIMAL + '\n[metrics]\nlisten = "[::1]:9100"\ndisk_floor_mb = 200\n'
    chosen = configuration.load(write(tmp_path, text)).metrics
    assert (chosen.host, chosen.port, chosen.disk_floor_mb) == ("::1", 9100, 200)
    off = configuration.load(write(tmp_path, MINIMAL + '\n[metrics]\nlisten = ""\n')).metrics
    assert (off.host, off.enabled) == (None, False)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('listen = "9464"', '"host:port"'),
        ('listen = "127.0.0.1:"', '"host:port"'),
        ('listen = "127.0.0.1:70000"', "above 65535"),
        ('listen = "bad host:1"', '"host:port"'),
        ("listen = 9464", "must be a string"),
        ("disk_floor_mb = -1", "below the minimum"),
        ("listen_on = 1", "listen_on"),
    ],
)
def test_a_bad_metrics_setting_is_named(tmp_path: Path, text: str, reason: str) -> None:
    error = failure(tmp_path, MINIMAL + f"\n[metrics]\n{text}\n")
    assert "metrics." in str(error) and reason in str(error)


LMTP = """
[desk_delivery]
method = "lmtp"
lmtp = "/run/dovecot/lmtp-gateway"
imap = "127.0.0.1:143"
imap_user = "gateway"
imap_password_file = "imap.password"
"""


def test_desk_delivery_is_maildir_unless_configured(tmp_path: Path) -> None:
    default = configuration.load(write(tmp_path, MINIMAL))
    assert default.desk_delivery.method == "maildir"
    assert default.desk("sirene").mailbox_user == "sirene"
    assert configuration.load(EXAMPLE).desk_delivery.method == "maildir"
    text = MINIMAL.replace(
        'maildir = "desks/sirene"\n', 'maildir = "desks/sirene"\nmailbox = "sis"\n'
    )
    config = configuration.load(write(tmp_path, text + LMTP + 'timeout = "PT5S"\n'))
    chosen = config.desk_delivery
    assert (chosen.method, chosen.lmtp_socket, chosen.imap) == (
        "lmtp",
        "/run/dovecot/lmtp-gateway",
        "127.0.0.1:143",
    )
    assert chosen.imap_password_file == tmp_path / "imap.password"
    assert (chosen.imap_tls, chosen.lmtp_tls, chosen.tls_ca) == (True, True, None)
    assert chosen.timeout == timedelta(seconds=5)
    assert config.desk("sirene").mailbox_user == "sis"
    tcp = configuration.load(
        write(tmp_path, MINIMAL + LMTP.replace("/run/dovecot/lmtp-gateway", "mail.example:24"))
    )
    assert (tcp.desk_delivery.lmtp, tcp.desk_delivery.lmtp_socket) == ("mail.example:24", None)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('method = "imap"', "desk_delivery.method", "one of"),
        ('method = "lmtp"', "desk_delivery.lmtp", 'method = "lmtp" needs'),
        (
            LMTP.replace('imap_user = "gateway"\n', "").split("\n", 2)[2],
            "desk_delivery.imap_user",
            "master user",
        ),
        (
            LMTP.replace('imap = "127.0.0.1:143"\n', "").split("\n", 2)[2],
            "desk_delivery.imap",
            "IMAP",
        ),
        (
            LMTP.replace('imap_password_file = "imap.password"\n', "").split("\n", 2)[2],
            "desk_delivery.imap_password_file",
            "password",
        ),
        ('lmtp = "relative/socket"', "desk_delivery.lmtp", "socket path"),
        ('lmtp = "127.0.0.1:99999"', "desk_delivery.lmtp", "above 65535"),
        ('imap = "/run/dovecot/imap"', "desk_delivery.imap", '"host:port"'),
        ('imap_user = "gw*master"', "desk_delivery.imap_user", "master user"),
        ('timeout = "PT0S"', "desk_delivery.timeout", ""),
        ("pipelining = true", "desk_delivery.pipelining", "unknown key"),
    ],
)
def test_a_bad_desk_delivery_setting_is_named(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    error = failure(tmp_path, MINIMAL + f"\n[desk_delivery]\n{text}\n")
    assert error.key == key, error
    assert reason in error.reason


def test_a_desk_mailbox_must_be_a_user_name(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'maildir = "desks/sirene"\n', 'maildir = "desks/sirene"\nmailbox = "a b"\n'
    )
    error = failure(tmp_path, text)
    assert error.key == "desks[0].mailbox"
