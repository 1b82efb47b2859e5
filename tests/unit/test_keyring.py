"""Our GnuPG home keeps public keys in a classic keyring with gpg's record of checked signatures:
new homes, homes made with a keybox by the gpg command line, a copy left half-done."""

from __future__ import annotations

import subprocess
from pathlib import Path

import gpgkit

from gateway.core.config import BUILTIN_FORMS
from gateway.crypto.openpgp import GnuPG

FORM = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()


def signature_records(home: Path) -> list[str]:
    """The sigcache value of every signature's trust packet in the keyring."""
    listing = subprocess.run(
        ["gpg", "--homedir", str(home), "--list-packets", str(home / "pubring.gpg")],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [line.split("sigcache=")[1][:2] for line in listing.splitlines() if "sigcache=" in line]


def round_trip(ours: GnuPG, partner_home: Path, partner: str) -> None:
    """We sign and encrypt to the partner, who decrypts; the partner does the same to us."""
    status, plaintext, _ = gpgkit.decrypt(partner_home, ours.sign_encrypt(FORM, partner))
    assert (status, plaintext) == (0, FORM)
    ciphertext = gpgkit.sign_encrypt(partner_home, [partner], [ours.fingerprint or ""], FORM)
    assert ours.decrypt_verify(ciphertext, partner).plaintext == FORM


def test_a_new_home_keeps_checked_signatures_in_a_classic_keyring() -> None:
    home = gpgkit.new_home()
    ours = GnuPG(home)
    ours.generate("RO-SIRENE", "sirene@ro.example")
    partner_home = gpgkit.new_home()
    partner = gpgkit.make_key(partner_home, "NO-SIRENE <sirene@no.example>")
    ours.import_partner_key(gpgkit.export(partner_home, partner))
    gpgkit.import_key(partner_home, ours.export_public().encode())

    assert not (home / "pubring.kbx").exists()
    records = signature_records(home)
    # Our key and the partner's: a self-signature and a subkey binding each, all recorded as
    # checked and good (gpg's flags 0x01 checked, 0x02 valid), none left for every run to check.
    assert records == ["03"] * 4
    round_trip(ours, partner_home, partner)


def test_a_home_made_with_a_keybox_is_copied_to_a_keyring() -> None:
    home, partner_home = gpgkit.new_home(), gpgkit.new_home()
    fingerprint = gpgkit.make_key(home, "RO-SIRENE <sirene@ro.example>")
    partner = gpgkit.make_key(partner_home, "NO-SIRENE <sirene@no.example>")
    gpgkit.import_key(home, gpgkit.export(partner_home, partner))
    gpgkit.import_key(partner_home, gpgkit.export(home, fingerprint))
    assert (home / "pubring.kbx").exists()
    gpgkit.kill_agent(home)

    ours = GnuPG(home, fingerprint=fingerprint)

    assert not (home / "pubring.kbx").exists()
    assert (home / "pubring.kbx.migrated").exists()
    assert not (home / "pubring.gpg.partial").exists()
    assert {key.fingerprint for key in ours.list_keys()} == {fingerprint, partner}
    assert [key.fingerprint for key in ours.list_keys(secret=True)] == [fingerprint]
    assert set(signature_records(home)) == {"03"}
    round_trip(ours, partner_home, partner)


def test_a_copy_cut_short_is_made_again() -> None:
    home = gpgkit.new_home()
    fingerprint = gpgkit.make_key(home, "RO-SIRENE <sirene@ro.example>")
    (home / "pubring.gpg.partial").write_bytes(b"\x99 cut short")
    gpgkit.kill_agent(home)

    ours = GnuPG(home, fingerprint=fingerprint)

    assert [key.fingerprint for key in ours.list_keys()] == [fingerprint]
    assert not (home / "pubring.gpg.partial").exists()


def test_a_home_that_has_both_uses_the_keyring() -> None:
    """A copy that completed but did not get to set the keybox aside: the keyring is complete,
    so the keybox only needs setting aside (gpg would prefer it otherwise)."""
    home = gpgkit.new_home()
    fingerprint = gpgkit.make_key(home, "RO-SIRENE <sirene@ro.example>")
    gpgkit.kill_agent(home)
    GnuPG(home, fingerprint=fingerprint).close()
    (home / "pubring.kbx.migrated").rename(home / "pubring.kbx")

    ours = GnuPG(home, fingerprint=fingerprint)

    assert not (home / "pubring.kbx").exists()
    assert [key.fingerprint for key in ours.list_keys()] == [fingerprint]
