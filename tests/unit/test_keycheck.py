"""The partner-key check on keys made with gpg: a key that stays valid while its encryption
subkey expires is told, the subkey's expiry given; a key with no encryption subkey left too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpgkit
import pytest

from gateway.core.config import Partner
from gateway.crypto.openpgp import GnuPG, KeyInfo
from gateway.tracking.keycheck import KeyWarning, warnings

WITHIN = timedelta(days=30)
PAST = "20200101T000000!"  # gpg --faked-system-time


@dataclass
class Keys:
    subkey_soon: str  # primary for 2 years, its only encryption subkey for 5 days
    renewed: str  # the same, and a second encryption subkey for 2 years
    subkey_gone: str  # primary for ever, its only encryption subkey expired in 2020
    no_subkey: str  # primary only, which cannot encrypt
    listed: list[KeyInfo]


def add_key(home: Path, uid: str, expire: str, *subkeys: tuple[str, str | None]) -> str:
    """A primary made now (or at the faked time given with each subkey) and its subkeys."""
    faketime = subkeys[0][1] if subkeys else None
    gpgkit.gpg(home, "--quick-gen-key", uid, "ed25519", "sign", expire, faketime=faketime)
    fingerprint = gpgkit.fingerprint_of(home, uid)
    for subkey_expire, subkey_time in subkeys:
        gpgkit.gpg(
            home, "--quick-add-key", fingerprint, "cv25519", "encr", subkey_expire,
            faketime=subkey_time,
        )  # fmt: skip
    return fingerprint


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    partner = gpgkit.new_home()
    made = Keys(
        subkey_soon=add_key(partner, "A <a@a.example>", "2y", ("5d", None)),
        renewed=add_key(partner, "B <b@b.example>", "2y", ("5d", None), ("2y", None)),
        subkey_gone=add_key(partner, "C <c@c.example>", "never", ("1d", PAST)),
        no_subkey=add_key(partner, "D <d@d.example>", "2y"),
        listed=[],
    )
    ours = GnuPG(gpgkit.new_home())
    for fingerprint in (made.subkey_soon, made.renewed, made.subkey_gone, made.no_subkey):
        ours.import_partner_key(gpgkit.export(partner, fingerprint))
    made.listed = ours.list_keys()
    yield made
    ours.close()


def partner(code: str, fingerprint: str) -> Partner:
    return Partner(code, "sirene", code[:2], f"{code}@x.example", "127.0.0.1", 25, fingerprint)


def check(keys: Keys, code: str, fingerprint: str) -> list[KeyWarning]:
    return warnings([partner(code, fingerprint)], keys.listed, datetime.now(UTC), WITHIN)


def test_an_encryption_subkey_expiring_before_its_key_is_told(keys: Keys) -> None:
    (found,) = check(keys, "AA-SIRENE", keys.subkey_soon)
    assert (found.problem, found.part) == ("expires", "encryption subkey")
    assert found.expires is not None
    assert timedelta(days=4) < found.expires - datetime.now(UTC) <= timedelta(days=5)
    sentence = found.sentence(datetime.now(UTC))
    assert sentence.startswith("the encryption subkey of AA-SIRENE expires")


def test_a_second_encryption_subkey_that_lasts_is_enough(keys: Keys) -> None:
    assert check(keys, "BB-SIRENE", keys.renewed) == []


def test_an_expired_encryption_subkey_of_a_valid_key_is_told(keys: Keys) -> None:
    (found,) = check(keys, "CC-SIRENE", keys.subkey_gone)
    assert (found.problem, found.part) == ("expired", "encryption subkey")
    assert found.expires is not None and found.expires.year == 2020


def test_a_key_without_an_encryption_subkey_is_told(keys: Keys) -> None:
    (found,) = check(keys, "DD-SIRENE", keys.no_subkey)
    assert found.problem == "cannot-encrypt"
    assert found.sentence(datetime.now(UTC)) == (
        "the key of DD-SIRENE has no usable encryption subkey"
    )


def test_what_ends_first_is_named(keys: Keys) -> None:
    """Six days on, A's only encryption subkey has expired; B's second one lasts as long as B's
    key, so what B's partner is warned of, three years ahead, is the key itself."""
    found = warnings(
        [partner("AA-SIRENE", keys.subkey_soon), partner("BB-SIRENE", keys.renewed)],
        keys.listed,
        datetime.now(UTC) + timedelta(days=6),
        timedelta(days=3 * 365),
    )
    assert [(w.partner, w.problem, w.part) for w in found] == [
        ("AA-SIRENE", "expired", "encryption subkey"),
        ("BB-SIRENE", "expires", "key"),
    ]
