"""GnuPG._run (gpg in the calling thread): the same verdicts python-gnupg's own runs gave, the
same exceptions for gpg's failures, and no thread left behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import gpgkit
import pytest

from gateway.core.errors import DamagedCiphertext, KeyUnusable, NotForUs
from gateway.crypto.openpgp import RESULT_IGNORES, GnuPG
from gateway.crypto.pgpstatus import StatusLog

PLAINTEXT = b"Content-Type: application/xml\r\n\r\n<FormG/>\r\n"


@dataclass
class Pair:
    ours: GnuPG
    ro: str
    partner: GnuPG
    no: str


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    ours = GnuPG(gpgkit.new_home())
    partner = GnuPG(gpgkit.new_home())
    try:
        ro = ours.generate("RO-SIRENE", "sirene@ro.example")
        no = partner.generate("NO-SIRENE", "sirene@no.example")
        ours.import_partner_key(partner.export_public().encode())
        partner.import_partner_key(ours.export_public().encode())
        yield Pair(ours, ro, partner, no)
    finally:
        ours.close()
        partner.close()


GARBAGE = [
    b"",
    b"garbage, not OpenPGP at all",
    bytes(range(256)) * 4,
    b"-----BEGIN PGP MESSAGE-----\n\nbm90IHJlYWxseQ==\n=AAAA\n-----END PGP MESSAGE-----\n",
]


@pytest.mark.parametrize("data", GARBAGE, ids=["empty", "text", "binary", "armor"])
def test_decrypting_garbage_is_damaged_ciphertext(pair: Pair, data: bytes) -> None:
    with pytest.raises(DamagedCiphertext, match="damaged"):
        pair.ours.decrypt_verify(data, pair.no)


@pytest.mark.parametrize("data", GARBAGE, ids=["empty", "text", "binary", "armor"])
def test_run_on_garbage_reports_what_python_gnupg_reports(pair: Pair, data: bytes) -> None:
    ours = pair.ours._run(["--decrypt"], data)
    theirs = pair.ours._gpg.decrypt(data)
    assert (ours.ok, ours.valid, ours.returncode) == (theirs.ok, theirs.valid, theirs.returncode)
    assert ours.returncode != 0 and not ours.ok
    assert bytes(ours.data) == bytes(theirs.data) == b""


def test_run_on_a_good_message_reports_what_python_gnupg_reports(pair: Pair) -> None:
    ciphertext = pair.partner.sign_encrypt(PLAINTEXT, pair.ro)
    ours = pair.ours._run(["--decrypt"], ciphertext)
    theirs = pair.ours._gpg.decrypt(ciphertext)
    for name in ("ok", "valid", "returncode", "status", "fingerprint", "key_id", "trust_level"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert bytes(ours.data) == bytes(theirs.data) == PLAINTEXT


def test_message_for_somebody_else_is_not_for_us(pair: Pair) -> None:
    to_partner = pair.ours.sign_encrypt(PLAINTEXT, pair.no)
    with pytest.raises(NotForUs):
        pair.ours.decrypt_verify(to_partner, pair.no)


def test_sign_encrypt_to_an_unknown_key_is_refused(pair: Pair) -> None:
    with pytest.raises(KeyUnusable, match="not in our keyring"):
        pair.ours.sign_encrypt(PLAINTEXT, "A" * 40)


def test_no_thread_is_left_behind(pair: Pair) -> None:
    pair.ours.sign_encrypt(PLAINTEXT, pair.no)  # warm up: nothing lazily started counts
    before = threading.active_count()
    names = {thread.name for thread in threading.enumerate()}
    for _ in range(3):
        ciphertext = pair.ours.sign_encrypt(PLAINTEXT, pair.no)
        verified = pair.partner.decrypt_verify(ciphertext, pair.ro)
        assert verified.plaintext == PLAINTEXT and verified.signer == pair.ro.upper()
        with pytest.raises(DamagedCiphertext):
            pair.partner.decrypt_verify(b"garbage", pair.ro)
    assert threading.active_count() == before
    assert {thread.name for thread in threading.enumerate()} == names


def test_round_trip_runs_no_thread_while_running(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair.ours.sign_encrypt(PLAINTEXT, pair.no)  # warm up: our key ids are listed once
    started: list[str] = []
    original = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append(thread.name)
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    ciphertext = pair.ours.sign_encrypt(PLAINTEXT, pair.no)
    pair.partner.decrypt_verify(ciphertext, pair.ro)
    assert started == []


# ---------------------------------------------------------------------- status lines read once

# Sample values of the keywords not handed to python-gnupg's result, as gpg 2.2 writes them.
IGNORED_SAMPLES = {
    "KEY_CONSIDERED": "8818A1A986CB2C91D52271A46F393026C611FA84 0",
    "DECRYPTION_KEY": "49F737F7650D538CC9894D52297D115792C15EF4 8818A1A986CB2C91D522 u",
    "DECRYPTION_INFO": "2 9 0",
    "DECRYPTION_COMPLIANCE_MODE": "23",
    "VERIFICATION_COMPLIANCE_MODE": "23",
    "PLAINTEXT": "62 1796623934 ",
    "PLAINTEXT_LENGTH": "1234",
    "BEGIN_SIGNING": "H10",
    "GOODMDC": "",
    "END_DECRYPTION": "",
}


def _result_state(result: object) -> dict[str, object]:
    return {k: v for k, v in vars(result).items() if k not in ("gpg", "stderr", "status_log")}


def test_the_keywords_not_handed_to_python_gnupg_change_nothing_there(pair: Pair) -> None:
    """Each skipped keyword, fed to a fresh result and to one part-way through a run (after a
    signature's lines), leaves every attribute as it was: skipping it is not a choice."""
    assert set(IGNORED_SAMPLES) == set(RESULT_IGNORES)
    ciphertext = pair.partner.sign_encrypt(PLAINTEXT, pair.ro)
    done = pair.ours._run(["--decrypt"], ciphertext)
    for keyword, value in IGNORED_SAMPLES.items():
        for fed in ([], [(k, " ".join(a)) for k, a in done.status_log.lines]):
            result = pair.ours._gpg.result_map["crypt"](pair.ours._gpg)
            for key, rest in fed:
                result.handle_status(key, rest)
            before = _result_state(result)
            result.handle_status(keyword, value)
            assert _result_state(result) == before, keyword


@pytest.mark.parametrize("kind", ["decrypt", "garbage", "sign_encrypt", "not_for_us"])
def test_the_result_fed_the_lines_it_acts_on_is_the_result_fed_them_all(
    pair: Pair, kind: str
) -> None:
    """Real runs: the result fed every status line (as python-gnupg feeds it) and ours, fed
    all but the skipped keywords, hold the same attributes; the status log holds every line."""
    ciphertext = pair.partner.sign_encrypt(PLAINTEXT, pair.ro)
    runs = {
        "decrypt": (["--decrypt"], ciphertext),
        "garbage": (["--decrypt"], GARBAGE[3]),
        "sign_encrypt": (
            ["--encrypt", "--recipient", pair.no, "--armor", "--sign", "--local-user", pair.ro],
            PLAINTEXT,
        ),
        "not_for_us": (["--decrypt"], pair.ours.sign_encrypt(PLAINTEXT, pair.no)),
    }
    args, data = runs[kind]
    ours = pair.ours._run(args, data)
    everything = pair.ours._gpg.result_map["crypt"](pair.ours._gpg)
    for line in ours.stderr.splitlines(keepends=True):
        stripped = line.rstrip()
        if stripped.startswith("[GNUPG:] "):
            keyword, *value = stripped[9:].split(None, 1)
            everything.handle_status(keyword, value[0] if value else "")
    everything.data, everything.returncode = ours.data, ours.returncode
    assert _result_state(ours) == _result_state(everything)
    assert ours.status_log == StatusLog.parse(ours.stderr)
    skipped = [keyword for keyword, _ in ours.status_log.lines if keyword in RESULT_IGNORES]
    assert bool(skipped) == (kind in ("decrypt", "sign_encrypt", "not_for_us")), skipped
