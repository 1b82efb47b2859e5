"""`gateway partners add` refuses keys forms could not be encrypted to and bad --tls-ca or
--networks, writing nothing; `gateway partners check` judges real keys and real SMTP servers on
port 0: STARTTLS working with a certificate from the partner's CA, no STARTTLS, a certificate from
another CA, an expired certificate."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import gpgkit
import pytest
from integration.fakepartner import FakePartner, Pki, make_pki, server_context

from gateway.cli.main import main
from gateway.core import config as configuration

PAST = "20200101T000000!"  # gpg --faked-system-time: keys made then, for 1 day, have expired

CONFIG = """# Test gateway: comments survive every edit.
[identity]
country = "RO"
address = "sirene@ro.example"
bureaux = {{ sirene = "RO-SIRENE" }}

[paths]
gnupg_home = "{home}"

[openpgp]
s2k_count = 65536

[outbound]
timeout = "PT10S"

[[desks]]
name = "sirene"
maildir = "desks/sirene"
"""


@dataclass
class Setup:
    config: Path
    home: Path  # our GnuPG home
    keys: Path  # a partners' GnuPG home, where the test makes their keys

    def key_file(self, name: str, *, expire: str = "2y", faketime: str | None = None) -> Path:
        fingerprint = gpgkit.make_key(
            self.keys, f"{name} <{name.lower()}@x.example>", expire=expire, faketime=faketime
        )
        path = self.config.parent / f"{name}.asc"
        path.write_bytes(gpgkit.export(self.keys, fingerprint))
        return path

    def our_keys(self) -> str:
        """The keys (and subkeys) in our keyring, by fingerprint."""
        listing = gpgkit.gpg(self.home, "--with-colons", "--list-keys", check=False).stdout
        return "\n".join(line for line in listing.decode().splitlines() if line.startswith("fpr:"))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    home, keys = gpgkit.new_home(), gpgkit.new_home()
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(home=home))
    yield Setup(path, home, keys)
    gpgkit.kill_agent(home)
    gpgkit.kill_agent(keys)


def add(setup: Setup, code: str, key: Path, *extra: str, port: int = 25) -> int:
    return main(
        ["-c", str(setup.config), "partners", "add", code, "--address",
         f"{code.lower()}@{code[:2].lower()}.example", "--channel", "sirene", "--country",
         code[:2], "--key", str(key), "--smtp", f"127.0.0.1:{port}", *extra]
    )  # fmt: skip


def refused(
    setup: Setup, capsys: pytest.CaptureFixture[str], key: Path, *extra: str, says: str
) -> None:
    """Exit 1, one line saying why, and neither the configuration nor the keyring changed."""
    before, keyring = setup.config.read_text(), setup.our_keys()
    assert add(setup, "NO-SIRENE", key, *extra) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    assert setup.config.read_text() == before
    assert setup.our_keys() == keyring
    assert not list(setup.config.parent.glob(".*.new"))


def test_an_expired_key_is_refused(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    old = setup.key_file("OLD", expire="1d", faketime=PAST)
    refused(setup, capsys, old, says="has expired on 2020-01-02")


def test_a_revoked_key_is_refused(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    key = setup.key_file("GONE")
    fingerprint = gpgkit.fingerprint_of(setup.keys, "GONE")
    gpgkit.revoke(setup.keys, fingerprint)
    key.write_bytes(gpgkit.export(setup.keys, fingerprint))
    refused(setup, capsys, key, says=f"key {fingerprint} is revoked")


def test_a_key_without_an_encryption_subkey_is_refused(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    gpgkit.gpg(setup.keys, "--quick-gen-key", "SIGN <s@x.example>", "ed25519", "sign", "2y")
    fingerprint = gpgkit.fingerprint_of(setup.keys, "SIGN")
    key = setup.config.parent / "sign.asc"
    key.write_bytes(gpgkit.export(setup.keys, fingerprint))
    refused(setup, capsys, key, says="has no usable encryption subkey")


def test_a_key_whose_encryption_subkey_expired_is_refused(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    gpgkit.gpg(
        setup.keys, "--quick-gen-key", "SUB <s@x.example>", "ed25519", "sign", "never",
        faketime=PAST,
    )  # fmt: skip
    fingerprint = gpgkit.fingerprint_of(setup.keys, "SUB")
    gpgkit.gpg(setup.keys, "--quick-add-key", fingerprint, "cv25519", "encr", "1d", faketime=PAST)
    key = setup.config.parent / "sub.asc"
    key.write_bytes(gpgkit.export(setup.keys, fingerprint))
    refused(setup, capsys, key, says="the encryption subkey of key")


def test_a_tls_ca_that_is_no_ca_file_is_refused(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    key = setup.key_file("GOOD")
    folder = setup.config.parent
    (folder / "empty.pem").write_text("")
    (folder / "key.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    (folder / "broken.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    for name, says in (
        ("missing.pem", "cannot read it"),
        ("empty.pem", "holds no PEM certificate"),
        ("key.pem", "holds no PEM certificate"),
        ("broken.pem", "cannot be read"),
    ):
        refused(setup, capsys, key, "--tls-ca", str(folder / name), says=says)


@pytest.mark.parametrize("networks", ["10.0.0.0/33", "192.0.2.1/24", "mx.example", "10.0.0.0/8,"])
def test_bad_networks_are_a_usage_error(
    setup: Setup, capsys: pytest.CaptureFixture[str], networks: str
) -> None:
    key = setup.key_file("GOOD")
    before, keyring = setup.config.read_text(), setup.our_keys()
    with pytest.raises(SystemExit) as caught:
        add(setup, "NO-SIRENE", key, "--networks", networks)
    assert caught.value.code == 2
    assert "is not an address or a CIDR network" in capsys.readouterr().err
    assert (setup.config.read_text(), setup.our_keys()) == (before, keyring)


def test_a_duplicate_partner_leaves_the_keyring_alone(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(setup, "NO-SIRENE", setup.key_file("FIRST")) == 0
    before, keyring = setup.config.read_text(), setup.our_keys()
    second = setup.key_file("SECOND")
    assert add(setup, "NO-SIRENE", second) == 2
    assert "exists already" in capsys.readouterr().err
    assert (setup.config.read_text(), setup.our_keys()) == (before, keyring)
    assert gpgkit.fingerprint_of(setup.keys, "SECOND") not in keyring


def test_tls_ca_and_networks_are_written_into_the_partner(
    setup: Setup, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    assert add(
        setup, "NO-SIRENE", setup.key_file("NO"), "--tls-ca", str(pki.ca),
        "--networks", "192.0.2.0/24,2001:db8::/32,198.51.100.7",
    ) == 0  # fmt: skip
    text = setup.config.read_text()
    assert "# Test gateway: comments survive every edit." in text
    assert 'tls_ca = "ca.crt"' in text  # beside the configuration: written relative to it
    partner = configuration.load(setup.config).partner("NO-SIRENE")
    assert partner.tls_ca == pki.ca
    assert [str(net) for net in partner.networks] == [
        "192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32",
    ]  # fmt: skip
    assert partner.sends_from("192.0.2.9") and not partner.sends_from("203.0.113.1")


# ---------------------------------------------------------------------------- check


@dataclass
class Servers:
    good: FakePartner  # STARTTLS, a certificate from the test CA
    plain: FakePartner  # no STARTTLS
    stranger: FakePartner  # a self-signed certificate
    expired: FakePartner  # a certificate from the test CA that expired yesterday
    pki: Pki


def expired_certificate(pki: Pki, folder: Path) -> tuple[Path, Path]:
    key, csr, cert = folder / "old.key", folder / "old.csr", folder / "old.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    subprocess.run(
        ["openssl", "req", *ec, "-subj", "/CN=mx.partner.example", "-keyout", str(key),
         "-out", str(csr)], check=True, capture_output=True,
    )  # fmt: skip
    (folder / "old.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki.ca), "-CAkey",
         str(folder / "ca.key"), "-CAcreateserial", "-days", "-1", "-extfile",
         str(folder / "old.ext"), "-out", str(cert)], check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    pki = make_pki(tmp_path)
    made = Servers(
        good=FakePartner(tls=server_context(pki.cert, pki.key)),
        plain=FakePartner(tls=None),
        stranger=FakePartner(tls=server_context(pki.stranger_cert, pki.stranger_key)),
        expired=FakePartner(tls=server_context(*expired_certificate(pki, tmp_path))),
        pki=pki,
    )
    for server in (made.good, made.plain, made.stranger, made.expired):
        await server.start()
    yield made
    for server in (made.good, made.plain, made.stranger, made.expired):
        await server.stop()


async def check(setup: Setup, *args: str) -> tuple[int, str]:
    """`python -m gateway partners check ...` in a subprocess, while the servers run here."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "-c", str(setup.config), "partners", "check", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


def add_all(setup: Setup, servers: Servers) -> None:
    ca = str(servers.pki.ca)
    assert (
        add(setup, "NO-SIRENE", setup.key_file("NO"), "--tls-ca", ca, port=servers.good.port) == 0
    )
    assert (
        add(setup, "SE-SIRENE", setup.key_file("SE"), "--tls-ca", ca, port=servers.plain.port) == 0
    )
    assert add(setup, "FI-SIRENE", setup.key_file("FI"), "--tls-ca", ca,
               port=servers.stranger.port) == 0  # fmt: skip
    assert add(setup, "DK-SIRENE", setup.key_file("DK"), "--tls-ca", ca,
               port=servers.expired.port) == 0  # fmt: skip
    assert add(setup, "IS-SIRENE", setup.key_file("IS", expire="10d"), "--tls-ca", ca,
               port=servers.good.port) == 0  # fmt: skip


async def test_check_tells_each_partners_key_and_server(setup: Setup, servers: Servers) -> None:
    add_all(setup, servers)
    code, out = await check(setup, "--json")
    assert code == 1, out
    found = {entry["code"]: entry for entry in json.loads(out)}

    good = found["NO-SIRENE"]
    assert good["key"]["state"] == "valid" and good["problems"] == []
    smtp = good["smtp"]
    assert (smtp["reached"], smtp["starttls"], smtp["certificate_verified"]) == (True, True, True)
    assert smtp["tls_version"] in ("TLSv1.2", "TLSv1.3")
    # The test CA signs for 2 days: under 30 days left is a warning, not a problem.
    assert good["status"] == "warning"
    assert any(w.startswith("the certificate of 127.0.0.1:") for w in good["warnings"])

    assert found["SE-SIRENE"]["status"] == "problem"
    assert found["SE-SIRENE"]["problems"] == [
        f"SMTP 127.0.0.1:{servers.plain.port}: STARTTLS not offered"
    ]
    [stranger] = found["FI-SIRENE"]["problems"]
    assert "TLS certificate not accepted" in stranger and "certificate" in stranger
    [expired] = found["DK-SIRENE"]["problems"]
    assert "certificate has expired" in expired
    soon = found["IS-SIRENE"]
    assert soon["problems"] == [] and soon["status"] == "warning"
    assert any(w.startswith("the key of IS-SIRENE expires") for w in soon["warnings"])


async def test_check_one_partner_that_is_well_exits_0(setup: Setup, servers: Servers) -> None:
    add_all(setup, servers)
    code, out = await check(setup, "NO-SIRENE")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "NO-SIRENE: warning"
    assert lines[1].startswith("  key          ") and " valid, expires " in lines[1]
    assert lines[2] == (
        f"  smtp         127.0.0.1:{servers.good.port}: STARTTLS offered and working "
        + lines[2].rsplit(" ", 1)[1]
    )
    assert lines[3].startswith(f"  certificate  verified against {servers.pki.ca}, expires ")
    assert "days left)" in lines[3]
    assert lines[4].startswith("  WARNING      the certificate of 127.0.0.1:")
    code, out = await check(setup, "SE-SIRENE")
    assert code == 1 and "STARTTLS not offered" in out
    code, out = await check(setup, "XX-NOBODY")
    assert code == 2 and "no partner 'XX-NOBODY'" in out


async def test_a_partner_whose_key_left_the_keyring_is_a_problem(
    setup: Setup, servers: Servers
) -> None:
    assert add(setup, "NO-SIRENE", setup.key_file("NO"), "--tls-ca", str(servers.pki.ca),
               port=servers.good.port) == 0  # fmt: skip
    fingerprint = configuration.load(setup.config).partner("NO-SIRENE").fingerprint
    gpgkit.gpg(setup.home, "--delete-keys", fingerprint)
    code, out = await check(setup)
    assert code == 1
    assert f"{fingerprint} is not in our keyring" in out
    assert "PROBLEM      the key of NO-SIRENE is not in our keyring" in out
