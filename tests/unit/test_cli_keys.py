"""`gateway keys` and `gateway partners`: real gpg, and a configuration file edited in place."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import gpgkit
import pytest

from gateway.cli.main import main
from gateway.core import config as configuration

CONFIG = """# Test gateway: this comment must survive every edit.
[identity]
country = "RO"  # our country
address = "sirene@ro.example"
bureaux = {{ sirene = "RO-SIRENE" }}

[paths]
gnupg_home = "{home}"  # short, under /tmp

[openpgp]
s2k_count = 65536

[[partners]]
code = "NO-SIRENE"  # the first partner
channel = "sirene"
country = "NO"
address = "sirene@no.example"
smtp_host = "127.0.0.1"
smtp_port = 2525
fingerprint = "{no}"

[[desks]]
name = "sirene"
maildir = "desks/sirene"
"""


@pytest.fixture
def partner_home() -> Iterator[tuple[Path, str]]:
    home = gpgkit.new_home()
    yield home, gpgkit.make_key(home, "NO-SIRENE <sirene@no.example>")
    gpgkit.kill_agent(home)


@pytest.fixture
def setup(
    tmp_path: Path, partner_home: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    home = gpgkit.new_home()
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(home=home, no=partner_home[1]))
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    yield path
    gpgkit.kill_agent(home)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_writes_our_fingerprint_and_keeps_comments(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "keys", "generate")
    assert code == 0
    fingerprint = out.strip()
    assert len(fingerprint) == 40
    text = setup.read_text()
    assert "# Test gateway: this comment must survive every edit." in text
    assert 'code = "NO-SIRENE"  # the first partner' in text
    assert configuration.load(setup).openpgp.fingerprint == fingerprint
    code, _, err = run(capsys, "keys", "generate")
    assert code == 2 and "a key is configured already" in err


def test_export_and_list(
    setup: Path, capsys: pytest.CaptureFixture[str], partner_home: tuple[Path, str]
) -> None:
    run(capsys, "keys", "generate")
    code, armored, _ = run(capsys, "keys", "export")
    assert code == 0 and armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    key_file = setup.parent / "no.asc"
    key_file.write_bytes(gpgkit.export(*partner_home))
    assert run(capsys, "keys", "import", str(key_file), "--partner", "NO-SIRENE")[0] == 0
    code, out, _ = run(capsys, "keys", "list", "--json")
    rows = {row["owner"]: row for row in json.loads(out)}
    assert rows["us"]["state"] == "valid" and rows["us"]["expires"]
    assert rows["NO-SIRENE"]["fingerprint"] == partner_home[1]


def test_partners_add_imports_pins_and_writes(
    setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = gpgkit.new_home()
    try:
        fingerprint = gpgkit.make_key(home, "RS-NCB <ncb@rs.example>")
        key_file = setup.parent / "rs.asc"
        key_file.write_bytes(gpgkit.export(home, fingerprint))
    finally:
        gpgkit.kill_agent(home)
    code, out, _ = run(
        capsys,
        "partners",
        "add",
        "RS-NCB",
        "--address",
        "ncb@rs.example",
        "--channel",
        "interpol",
        "--country",
        "RS",
        "--key",
        str(key_file),
        "--smtp",
        "mx.rs.example:25",
    )
    assert code == 0, out
    partner = configuration.load(setup).partner("RS-NCB")
    assert (partner.fingerprint, partner.smtp_host, partner.smtp_port) == (
        fingerprint,
        "mx.rs.example",
        25,
    )
    assert partner.require_tls
    assert "# Test gateway: this comment must survive every edit." in setup.read_text()
    code, out, _ = run(capsys, "partners", "list", "--json")
    listed = {row["code"]: row for row in json.loads(out)}
    assert listed["RS-NCB"]["key"] == "valid"
    assert listed["NO-SIRENE"]["key"] == "missing"  # pinned, but never imported


def test_partners_add_refuses_a_secret_key(
    setup: Path, capsys: pytest.CaptureFixture[str], partner_home: tuple[Path, str]
) -> None:
    before = setup.read_text()
    secret = setup.parent / "secret.asc"
    secret.write_bytes(
        gpgkit.gpg(partner_home[0], "--armor", "--export-secret-keys", partner_home[1]).stdout
    )
    code, _, err = run(
        capsys,
        "partners",
        "add",
        "XX-NCB",
        "--address",
        "x@x.example",
        "--channel",
        "interpol",
        "--country",
        "XX",
        "--key",
        str(secret),
        "--smtp",
        "x.example:25",
    )
    assert code == 1 and "secret key" in err
    assert setup.read_text() == before


def test_partners_add_refuses_a_duplicate(
    setup: Path, capsys: pytest.CaptureFixture[str], partner_home: tuple[Path, str]
) -> None:
    before = setup.read_text()
    key_file = setup.parent / "no.asc"
    key_file.write_bytes(gpgkit.export(*partner_home))
    code, _, err = run(
        capsys,
        "partners",
        "add",
        "NO-SIRENE",
        "--address",
        "b@no.example",
        "--channel",
        "sirene",
        "--country",
        "NO",
        "--key",
        str(key_file),
        "--smtp",
        "mx.no.example:25",
    )
    assert code == 2 and "exists already" in err
    assert setup.read_text() == before


def test_partners_add_checks_the_result_as_a_whole(
    setup: Path, capsys: pytest.CaptureFixture[str], partner_home: tuple[Path, str]
) -> None:
    before = setup.read_text()
    key_file = setup.parent / "no.asc"
    key_file.write_bytes(gpgkit.export(*partner_home))
    code, _, err = run(
        capsys,
        "partners",
        "add",
        "SE-SIRENE",
        "--address",
        "s@se.example",
        "--channel",
        "sirene",
        "--country",
        "NO",
        "--key",
        str(key_file),
        "--smtp",
        "mx.se.example:25",
    )
    assert code == 2 and "partners[1].code" in err and "does not start with" in err
    assert setup.read_text() == before


def test_bad_smtp_argument(setup: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(
            [
                "partners",
                "add",
                "RS-NCB",
                "--address",
                "a@b.example",
                "--channel",
                "interpol",
                "--country",
                "RS",
                "--key",
                "k.asc",
                "--smtp",
                "no-port",
            ]
        )
    assert caught.value.code == 2


def test_keys_commands_need_a_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "keys", "list")
    assert code == 2 and "no configuration" in err
