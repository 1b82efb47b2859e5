"""OpenPGP through GnuPG: keys, sign+encrypt, decrypt+verify failing closed; sole gnupg user."""

from __future__ import annotations

import codecs
import encodings.utf_8
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gnupg

from gateway.core.errors import (
    BadPassphrase,
    BadSignature,
    DamagedCiphertext,
    DecryptedTooBig,
    GatewayError,
    KeyUnusable,
    MalformedMessage,
    NotForUs,
    NotIntegrityProtected,
    NotSigned,
    SeveralSignatures,
    SignatureMismatch,
    SignerKeyExpired,
    SignerKeyRevoked,
    UnexpectedSigner,
    UnknownSigner,
)
from gateway.crypto.gpgproc import OutputLimitExceeded, RunTimedOut, run_bounded
from gateway.crypto.pgpstatus import StatusLog
from gateway.store.durable import fsync_dir

log = logging.getLogger("gateway.crypto")

# Options on every call: never reach a keyserver, never consult the web of trust (authorisation
# is by pinned fingerprint only), and never ask a question.
_ALWAYS = [
    "--no-auto-key-locate",
    "--no-auto-key-retrieve",
    "--keyserver-options",
    "no-auto-key-retrieve",
    "--trust-model",
    "always",
    "--no-greeting",
    "--no-tty",
    # libgcrypt serialises processes on the random_seed file of the home (seen as stalls of
    # 250 ms to 1.5 s with two workers); each gpg seeds from the kernel's getrandom() instead.
    "--no-random-seed-file",
]
# The plaintext a message may decrypt to where the caller names no cap: the default message size
# limit and the default form size limit, with room for the MIME around them.
DEFAULT_MAX_PLAINTEXT = (10 << 20) + (1 << 20) + (64 << 10)
# gpg's status and diagnostics for one message: a few KiB; more is a message built to make it talk.
MAX_STATUS_BYTES = 1 << 20
# gpg's own --max-output sits this far above our count, so that ours trips first and gpg's is the
# backstop; gpg cuts its output below its limit and says so on stderr (_OUTPUT_CUT).
GPG_OUTPUT_SLACK = 1 << 16
_OUTPUT_CUT = "Provided object is too large"
# No gpg run takes this long on a message under the size limits; one that does is killed.
GPG_TIMEOUT = 120.0
# gpg's error codes (the low 16 bits of a FAILURE status): a passphrase that unlocks nothing,
# and none given (empty) for a key that is protected.
_GPG_ERR_BAD_PASSPHRASE, _GPG_ERR_NO_PASSPHRASE = 11, 177
# A signing or encryption subkey, or a primary that can sign: what gpg reports in key listings.
_REVOKED, _EXPIRED = "r", "e"

# Status keywords on which python-gnupg's decrypt/encrypt result (Crypt, 0.5.x) changes nothing:
# it passes them by, or logs them at debug level as unknown. They are not handed to it (each
# line costs a walk down its chain of comparisons); tests/unit/test_openpgp_run.py holds that
# feeding them leaves the result as it was, and the result the same as python-gnupg's own run's.
# Every other line, including any keyword not named here, is handed to it.
RESULT_IGNORES = frozenset(
    {
        "KEY_CONSIDERED",
        "DECRYPTION_KEY",
        "DECRYPTION_INFO",
        "DECRYPTION_COMPLIANCE_MODE",
        "VERIFICATION_COMPLIANCE_MODE",
        "PLAINTEXT",
        "PLAINTEXT_LENGTH",
        "BEGIN_SIGNING",
        "GOODMDC",
        "END_DECRYPTION",
    }
)

# gpg writes some status values raw (Sequoia's salt notation: 32 random bytes). python-gnupg
# decodes gpg's stderr strictly, and its reader thread dies on such a line, losing the status.
# This codec is UTF-8 that replaces what is not UTF-8; only status text is decoded with it.
_STATUS_CODEC = "ipc_gateway_status_utf_8"


class _LenientReader(encodings.utf_8.StreamReader):
    def __init__(self, stream: Any, errors: str = "replace") -> None:
        super().__init__(stream, "replace")


def _find_codec(name: str) -> codecs.CodecInfo | None:
    if name.replace("-", "_") != _STATUS_CODEC:
        return None
    utf8 = codecs.lookup("utf-8")
    return codecs.CodecInfo(
        name=_STATUS_CODEC,
        encode=utf8.encode,
        decode=lambda data, errors="replace": codecs.utf_8_decode(data, "replace", True),
        streamreader=_LenientReader,
        streamwriter=utf8.streamwriter,
        incrementalencoder=utf8.incrementalencoder,
        incrementaldecoder=utf8.incrementaldecoder,
    )


codecs.register(_find_codec)

# Splits a decrypted entity into (signed bytes, detached signature), or None if it is not signed.
DetachedSplitter = Callable[[bytes], tuple[bytes, bytes] | None]


@dataclass(frozen=True)
class KeyInfo:
    """A public key in the keyring: primary fingerprint, user ids, expiry, state, subkeys."""

    fingerprint: str
    uids: tuple[str, ...]
    created: datetime
    expires: datetime | None
    revoked: bool
    expired: bool
    secret: bool
    subkeys: tuple[str, ...]
    # Until when something can be encrypted to it: the latest expiry of its encryption (sub)keys
    # that are not revoked, None if one never expires; ``can_encrypt`` False when there is none.
    encrypts_until: datetime | None = None
    can_encrypt: bool = True

    def usable_at(self, instant: datetime) -> bool:
        if self.revoked:
            return False
        return self.expires is None or instant < self.expires

    def encryption_ends(self) -> datetime | None:
        """When encrypting to it stops working: the earlier of the key's own expiry and its
        encryption subkeys' (None: never)."""
        ends = [when for when in (self.expires, self.encrypts_until) if when is not None]
        return min(ends, default=None)


@dataclass(frozen=True)
class Verified:
    """A message that passed every check: its plaintext, who signed it and when."""

    plaintext: bytes
    signer: str  # the pinned primary-key fingerprint
    signing_key: str  # the (sub)key that made the signature
    signed_at: datetime


class KeyProtection:
    """How our secret key is protected: its passphrase and the cost of the key derivation."""

    def __init__(self, passphrase: str | None, s2k_count: int | None = None) -> None:
        self.passphrase = passphrase
        self.s2k_count = s2k_count

    @classmethod
    def from_sources(
        cls,
        *,
        passphrase_file: Path | None,
        passphrase_env: str | None,
        s2k_count: int | None = None,
    ) -> KeyProtection:
        """Read the passphrase from a file or an environment variable (never the configuration)."""
        if passphrase_file is not None:
            try:
                text = passphrase_file.read_text("utf-8").rstrip("\r\n")
            except OSError as exc:
                raise KeyUnusable(f"cannot read the passphrase file: {exc.strerror}") from None
            return cls(text, s2k_count)
        if passphrase_env is not None:
            if passphrase_env not in os.environ:
                raise KeyUnusable(f"the environment variable {passphrase_env} is not set")
            return cls(os.environ[passphrase_env], s2k_count)
        return cls(None, s2k_count)


class GnuPG:
    """One GnuPG home, our signing key in it, and the partners' public keys."""

    def __init__(
        self,
        home: Path,
        *,
        fingerprint: str | None = None,
        protection: KeyProtection | None = None,
        binary: str = "gpg",
    ) -> None:
        self.home = home
        self.fingerprint = fingerprint.upper() if fingerprint else None
        self.protection = protection or KeyProtection(None)
        # Found in PATH once: a name alone has the child try each PATH entry on every run (an
        # execve each, ~30 us a run here, while the parent waits on its vfork).
        binary = shutil.which(binary) or binary
        _prepare_home(home, self.protection)
        _use_classic_keyring(home, binary)
        self._gpg = gnupg.GPG(gpgbinary=binary, gnupghome=str(home), options=list(_ALWAYS))
        self._gpg.encoding = _STATUS_CODEC
        self._gpg.decode_errors = "replace"
        self._own_keys: frozenset[str] | None = None
        self._lock = threading.Lock()
        self._check_key_signatures()

    # ---------------------------------------------------------------- keys

    def generate(
        self, uid_name: str, email: str, *, algorithm: str = "ed25519", expire: str = "2y"
    ) -> str:
        """Create our bureau's key: ed25519 signing + cv25519 encryption, or RSA 3072 for both."""
        params: dict[str, str | int]
        if algorithm == "ed25519":
            params = {
                "key_type": "EDDSA",
                "key_curve": "ed25519",
                "key_usage": "sign",
                "subkey_type": "ECDH",
                "subkey_curve": "cv25519",
                "subkey_usage": "encrypt",
            }
        elif algorithm == "rsa3072":
            params = {
                "key_type": "RSA",
                "key_length": 3072,
                "key_usage": "sign",
                "subkey_type": "RSA",
                "subkey_length": 3072,
                "subkey_usage": "encrypt",
            }
        else:
            raise ValueError(f"unknown algorithm {algorithm!r}: use ed25519 or rsa3072")
        passphrase = self.protection.passphrase
        # The agent keeps no passphrase (cache 0): it would forget it between creating the key
        # and self-signing it, and ask a pinentry that is not there. Allow caching meanwhile.
        _prepare_home(self.home, self.protection, cache=True)
        self._reload_agent()
        try:
            return self._generate(uid_name, email, params, passphrase, expire)
        finally:
            _prepare_home(self.home, self.protection)
            self._reload_agent()

    def _generate(
        self,
        uid_name: str,
        email: str,
        params: dict[str, str | int],
        passphrase: str | None,
        expire: str,
    ) -> str:
        spec = self._gpg.gen_key_input(
            name_real=uid_name,
            name_email=email,
            expire_date=expire,
            passphrase=passphrase,
            no_protection=passphrase is None,
            **params,
        )
        result = self._gpg.gen_key(spec)
        if not result.fingerprint:
            raise KeyUnusable(f"key generation failed: {_gpg_error(result)}")
        self.fingerprint = str(result.fingerprint).upper()
        self._own_keys = None
        self._check_key_signatures()
        return self.fingerprint

    def _check_key_signatures(self) -> None:
        """Have gpg check every key signature of the keyring and record the results there.

        A key made here (or changed with the gpg command line) is stored with its signatures
        marked unchecked, and every later gpg run would verify them again: with our ed25519 key,
        one decrypt and verify of a form took 63 million instructions (callgrind), and 13.5
        million once they are recorded. Imported keys are recorded as checked by the import.

        Skipped while the keyring is no newer than the last check (``pubring.gpg.checked``), so
        that opening a home whose keys did not change runs no gpg."""
        keyring, checked = self.home / "pubring.gpg", self.home / "pubring.gpg.checked"
        state = keyring.stat()
        last = checked.stat().st_mtime_ns if checked.exists() else 0
        if not state.st_size or last > state.st_mtime_ns:
            return  # no keys, or none changed since the last check (a tie checks again)
        # gpg records the results while it updates the trust database, which the "always"
        # trust model of every other call skips; the trust it computes is never used.
        command = self._gpg.make_args(["--trust-model", "pgp", "--check-signatures"], False)
        subprocess.run(command, capture_output=True, env=self._gpg.env, check=False)
        checked.touch()

    def export_public(self, fingerprint: str | None = None) -> str:
        wanted = fingerprint or self._require_own()
        armored = self._gpg.export_keys(wanted, armor=True, minimal=False)
        if not armored:
            raise KeyUnusable(f"no public key {wanted} in {self.home}")
        return str(armored)

    def scan(self, data: bytes) -> list[KeyInfo]:
        """The keys a file holds, without importing them. gpg reads them in a throwaway home
        with its default trust model: under the "always" model no trust database is ever made,
        and a dry-run import of an expired key then stops at "can't open trustdb.gpg" and
        lists nothing."""
        options = [option for option in _ALWAYS if option not in ("--trust-model", "always")]
        with tempfile.TemporaryDirectory(prefix="gscan", dir="/tmp") as folder:
            scanner = gnupg.GPG(gpgbinary=self._gpg.gpgbinary, gnupghome=folder, options=options)
            scanner.encoding = _STATUS_CODEC
            scanner.decode_errors = "replace"
            return [_key_info(entry, secret=False) for entry in scanner.scan_keys_mem(data)]

    def import_partner_key(self, data: bytes) -> KeyInfo:
        """Import one partner's public key; refuse secret keys, several keys, unusable keys."""
        if b"PRIVATE KEY BLOCK" in data:
            raise KeyUnusable("the file holds a secret key: import only the partner's public key")
        keys = self.scan(data)
        if len(keys) != 1:
            raise KeyUnusable(f"the file must hold exactly one public key, it holds {len(keys)}")
        key = keys[0]
        if key.revoked:
            raise KeyUnusable(f"key {key.fingerprint} is revoked")
        if key.expired:
            raise KeyUnusable(f"key {key.fingerprint} has expired")
        result = self._gpg.import_keys(data)
        if key.fingerprint not in [str(fpr).upper() for fpr in result.fingerprints]:
            raise KeyUnusable(f"import of {key.fingerprint} failed: {_gpg_error(result)}")
        return key

    def list_keys(self, *, secret: bool = False) -> list[KeyInfo]:
        return [_key_info(entry, secret=secret) for entry in self._gpg.list_keys(secret=secret)]

    def key(self, fingerprint: str) -> KeyInfo | None:
        wanted = fingerprint.upper()
        return next((key for key in self.list_keys() if key.fingerprint == wanted), None)

    def _require_own(self) -> str:
        if not self.fingerprint:
            raise KeyUnusable("no signing key configured: run `gateway keys generate`")
        return self.fingerprint

    def _own_key_ids(self) -> frozenset[str]:
        """Our primary fingerprint and its subkeys' (a signature may come from either)."""
        with self._lock:
            if self._own_keys is None:
                own = self._require_own()
                secret = [key for key in self.list_keys(secret=True) if key.fingerprint == own]
                if not secret:
                    raise KeyUnusable(f"our secret key {own} is not in {self.home}")
                self._own_keys = frozenset({own, *secret[0].subkeys})
            return self._own_keys

    # ---------------------------------------------------------------- messages

    def sign_encrypt(self, data: bytes, recipient: str) -> bytes:
        """Sign with our key (and only ours) and encrypt to the recipient's pinned key, armored."""
        own = self._require_own()
        own_ids = self._own_key_ids()
        # python-gnupg's encrypt(data, [recipient], sign=own, always_trust=True, armor=True,
        # extra_args=[...]) makes exactly this command line.
        args = ["--encrypt", "--recipient", recipient.upper(), "--armor"]
        args += ["--sign", "--default-key", own, "--trust-model", "always"]
        args += ["--local-user", own, "--force-mdc"]
        result = self._run(args, data)
        status: StatusLog = result.status_log
        if status.has("INV_SGNR") or status.has("NO_SGNR"):
            raise KeyUnusable(f"our signing key {own} is unusable ({status.reason('INV_SGNR')})")
        if status.has("INV_RECP") or status.has("NO_RECP"):
            raise KeyUnusable(f"the recipient key {recipient} {self._why_unusable(recipient)}")
        created = status.fields("SIG_CREATED")
        if len(created) != 1 or created[0][-1].upper() not in own_ids:
            signer = created[0][-1] if created else "nobody"
            raise KeyUnusable(f"gpg signed with {signer}, not with our key {own}: refusing to send")
        if not (result.ok and result.returncode == 0 and status.has("END_ENCRYPTION")):
            raise KeyUnusable(f"sign and encrypt failed: {_gpg_error(result)}")
        return bytes(result.data)

    def check_signing(self) -> None:
        """Sign a few bytes with our key, as every message will be signed: the start-up proof
        that the secret key is here and the passphrase unlocks it. The passphrase goes by
        loopback even when none is configured (an empty one), so no pinentry ever opens.
        BadPassphrase when the passphrase is the fault, KeyUnusable for anything else."""
        own = self._require_own()
        own_ids = self._own_key_ids()  # KeyUnusable: no secret key of ours in this home
        passphrase = self.protection.passphrase
        if passphrase is not None and not self._gpg.is_valid_passphrase(passphrase):
            raise BadPassphrase("the passphrase holds a line break: it must be one line")
        command = self._gpg.make_args(["--sign", "--local-user", own], True)
        done = subprocess.run(
            command,
            input=f"{passphrase or ''}\n".encode(),
            capture_output=True,
            env=self._gpg.env,
            check=False,
            timeout=60,
        )
        status = StatusLog.parse(done.stderr.decode(_STATUS_CODEC, "replace"))
        created = status.fields("SIG_CREATED")
        if done.returncode == 0 and len(created) == 1 and created[0][-1].upper() in own_ids:
            return
        codes = {int(f[-1]) & 0xFFFF for f in status.fields("FAILURE") if f and f[-1].isdigit()}
        if _GPG_ERR_NO_PASSPHRASE in codes or status.has("MISSING_PASSPHRASE"):
            raise BadPassphrase(f"our key {own} is protected by a passphrase, and none is given")
        if _GPG_ERR_BAD_PASSPHRASE in codes or status.has("BAD_PASSPHRASE"):
            raise BadPassphrase(f"the passphrase does not unlock our key {own}")
        failures = status.fields("FAILURE") + status.fields("ERROR")
        why = "; ".join(" ".join(fields) for fields in failures) or f"gpg exit {done.returncode}"
        raise KeyUnusable(f"our key {own} cannot sign: {why}")

    def _why_unusable(self, fingerprint: str) -> str:
        key = self.key(fingerprint)
        if key is None:
            return "is not in our keyring"
        if key.revoked:
            return "is revoked"
        if key.expired or not key.usable_at(datetime.now(UTC)):
            return "has expired"
        return "cannot encrypt (no usable encryption subkey)"

    def decrypt_verify(
        self,
        data: bytes,
        pinned: str,
        *,
        detached: DetachedSplitter | None = None,
        max_plaintext: int = DEFAULT_MAX_PLAINTEXT,
    ) -> Verified:
        """Decrypt and verify one message; return the plaintext only if every check holds.

        Checks, in order: decrypted with our key; integrity protected (MDC or AEAD); exactly one
        signature; good; by a key whose primary is ``pinned``; that key neither expired nor revoked;
        and gpg's own verdict (ok, valid, exit code 0). The plaintext is dropped otherwise.

        A message signed and encrypted in one OpenPGP message carries its signature inside. One
        that was signed first (RFC 3156 nested multipart/signed) carries none: ``detached`` then
        splits the plaintext into the signed bytes and the signature, which are verified instead.

        gpg is stopped, and DecryptedTooBig raised, once the plaintext passes ``max_plaintext``.
        """
        result = self._run(["--decrypt"], data, max_output=max_plaintext)
        status: StatusLog = result.status_log
        self._check_decryption(status)
        if detached is not None and not status.count("NEWSIG"):
            if result.returncode != 0:
                raise DamagedCiphertext("the ciphertext is damaged (gpg reported an error)")
            parts = detached(bytes(result.data))
            if parts is None:
                raise NotSigned()
            return self.verify_detached(parts[0], parts[1], pinned)
        signature = _one_signature(status, pinned)
        if not (result.ok and result.valid and result.returncode == 0):
            raise DamagedCiphertext(
                "the ciphertext is damaged (gpg reported an error after decrypting)"
            )
        return Verified(
            plaintext=bytes(result.data),
            signer=pinned.upper(),
            signing_key=signature[0].upper(),
            signed_at=datetime.fromtimestamp(int(signature[2]), UTC),
        )

    def verify_detached(self, content: bytes, signature: bytes, pinned: str) -> Verified:
        """Verify a detached signature (multipart/signed) over exactly ``content``."""
        sig_path = self.home / f"detached-{threading.get_ident()}-{os.getpid()}.sig"
        sig_path.write_bytes(signature)
        try:
            result = self._gpg.verify_data(str(sig_path), content)
        finally:
            sig_path.unlink(missing_ok=True)
        status = StatusLog.parse(result.stderr)
        found = _one_signature(status, pinned)
        if not (result.valid and result.returncode == 0):
            raise SignatureMismatch("the signature does not verify")
        return Verified(
            plaintext=content,
            signer=pinned.upper(),
            signing_key=found[0].upper(),
            signed_at=datetime.fromtimestamp(int(found[2]), UTC),
        )

    def _run(self, args: list[str], data: bytes, *, max_output: int | None = None) -> Any:
        """One gpg run as python-gnupg's ``_handle_io`` makes it (its command line, our
        passphrase first on stdin, its result object fed every status line it acts on, so
        ``ok``, ``valid`` and the rest mean what they mean there; the lines parsed once more
        for our own checks are its ``status_log``), but in this thread, with one loop
        moving stdin, stdout and stderr where python-gnupg starts three threads per call (which
        under load wait for the GIL behind the sessions) and reads all of gpg's output.

        Here every byte gpg writes is counted as it arrives: past ``max_output`` bytes of
        output (by default what the input can legitimately become) or ``MAX_STATUS_BYTES`` of
        status, gpg is killed and the run refused; gpg's own ``--max-output`` stands behind."""
        passphrase = self.protection.passphrase
        if passphrase and not self._gpg.is_valid_passphrase(passphrase):
            raise ValueError("Invalid passphrase")
        limit = max_output if max_output is not None else 4 * len(data) + (1 << 20)
        extra = ["--max-output", str(limit + GPG_OUTPUT_SLACK)]
        command = self._gpg.make_args([*extra, *args], passphrase is not None)
        prefix = f"{passphrase}\n".encode(self._gpg.encoding) if passphrase else b""
        try:
            done = run_bounded(
                command,
                (prefix, data),
                env=self._gpg.env,
                max_stdout=limit,
                max_stderr=MAX_STATUS_BYTES,
                timeout=GPG_TIMEOUT,
            )
        except OutputLimitExceeded as exceeded:
            if exceeded.stream == "stdout":
                raise DecryptedTooBig(f"the decrypted content exceeds {limit} bytes") from None
            raise MalformedMessage(
                f"gpg's report on the message exceeds {MAX_STATUS_BYTES} bytes"
            ) from None
        except RunTimedOut:
            log.error("gpg did not finish in %.0f s: killed", GPG_TIMEOUT)
            raise GatewayError("gpg did not finish in time, try again later") from None
        except OSError as error:
            log.error("gpg cannot run: %s", error.strerror or type(error).__name__)
            raise GatewayError("cannot run gpg now, try again later") from None
        result = self._gpg.result_map["crypt"](self._gpg)
        result.stderr = done.stderr.decode(_STATUS_CODEC, "replace")
        # The lines read once: for the result's verdicts and for our own checks (status_log).
        result.status_log = StatusLog.parse_feeding(
            result.stderr, result.handle_status, RESULT_IGNORES
        )
        if _OUTPUT_CUT in result.stderr:  # gpg's own limit: never a cut plaintext
            raise DecryptedTooBig(f"the decrypted content exceeds {limit} bytes")
        result.data = done.stdout
        result.returncode = done.returncode
        return result

    @staticmethod
    def _check_decryption(status: StatusLog) -> None:
        if not status.has("DECRYPTION_OKAY") or status.has("DECRYPTION_FAILED"):
            if status.has("NO_SECKEY") and not status.has("DECRYPTION_KEY"):
                raise NotForUs()
            if status.has("DECRYPTION_INFO") and not _integrity_protected(status):
                raise NotIntegrityProtected()
            if not status.has("BEGIN_DECRYPTION") and not status.has("ENC_TO"):
                raise DamagedCiphertext(
                    "the ciphertext is damaged or is not OpenPGP encrypted data"
                )
            raise DamagedCiphertext("decryption failed: the ciphertext is damaged")
        if not _integrity_protected(status):
            raise NotIntegrityProtected()

    # ---------------------------------------------------------------- lifecycle

    def _reload_agent(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--reload", "gpg-agent"],
            check=False,
            capture_output=True,
            timeout=30,
        )

    def close(self) -> None:
        """Stop the gpg-agent of this home: it would outlive the gateway otherwise."""
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
            timeout=30,
        )

    def __enter__(self) -> GnuPG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _integrity_protected(status: StatusLog) -> bool:
    """DECRYPTION_INFO <mdc_method> <sym_algo> [<aead_algo>]: MDC (non-zero) or AEAD (non-zero)."""
    for info in status.fields("DECRYPTION_INFO"):
        mdc = info[0] if info else "0"
        aead = info[2] if len(info) > 2 else "0"
        if mdc != "0" or aead != "0":
            return True
    return False


def _one_signature(status: StatusLog, pinned: str) -> list[str]:
    """The VALIDSIG fields of the one good signature by the pinned key; BadSignature otherwise."""
    count = status.count("NEWSIG")
    if count == 0:
        raise NotSigned()
    if count > 1:
        raise SeveralSignatures(f"the message carries {count} signatures; exactly one is required")
    refusals: tuple[tuple[str, type[BadSignature], str], ...] = (
        ("BADSIG", SignatureMismatch, "the signature does not match the signed content"),
        ("REVKEYSIG", SignerKeyRevoked, "the signing key is revoked"),
        ("EXPKEYSIG", SignerKeyExpired, "the signing key has expired"),
        ("EXPSIG", SignerKeyExpired, "the signature has expired"),
        ("ERRSIG", UnknownSigner, "the signature was made by an unknown key or cannot be checked"),
    )
    for keyword, error, reason in refusals:
        if status.has(keyword):
            raise error(reason)
    valid = status.fields("VALIDSIG")
    if not status.has("GOODSIG") or len(valid) != 1 or len(valid[0]) < 10:
        raise BadSignature("no good signature")
    primary = valid[0][9].upper()
    if primary != pinned.upper():
        raise UnexpectedSigner(f"signed by key {primary}, not by the key pinned for this partner")
    if status.has("KEYREVOKED"):
        raise SignerKeyRevoked()
    return valid[0]


def _prepare_home(home: Path, protection: KeyProtection, *, cache: bool = False) -> None:
    """A GnuPG home of mode 0700 whose agent accepts loopback passphrases and caches none."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    lines = ["allow-loopback-pinentry"]
    if protection.passphrase is not None and not cache:
        lines += ["default-cache-ttl 0", "max-cache-ttl 0"]
    if protection.s2k_count is not None:
        lines.append(f"s2k-count {protection.s2k_count}")
    (home / "gpg-agent.conf").write_text("\n".join(lines) + "\n")


def _use_classic_keyring(home: Path, binary: str) -> None:
    """Keep the public keys in a classic keyring (pubring.gpg), never in a keybox (pubring.kbx).

    gpg records in a classic keyring which key signatures it has already checked; a keybox, the
    default for a new home, records none, so every gpg run verifies again every self-signature of
    every key it loads: with ed25519 keys, most of the cost of a decrypt and verify (see
    ``GnuPG._check_key_signatures``). gpg takes pubring.gpg when there is no pubring.kbx. A home
    that holds a keybox has its keys copied to a new keyring, which replaces it once complete."""
    keyring, keybox = home / "pubring.gpg", home / "pubring.kbx"
    if not keyring.exists():
        if keybox.exists():
            _copy_keybox(home, binary, keyring)
            log.info("%s: public keys copied from pubring.kbx to pubring.gpg", home)
        else:
            keyring.touch(mode=0o600)
    elif keybox.exists():
        log.warning("%s: pubring.kbx beside pubring.gpg: pubring.gpg is used", home)
    if keybox.exists():  # gpg would take it over the keyring: kept aside for an operator
        keybox.rename(home / "pubring.kbx.migrated")
        fsync_dir(home)


def _copy_keybox(home: Path, binary: str, keyring: Path) -> None:
    """Every public key of the keybox, with all its signatures, into ``keyring``, atomically."""
    partial = home / "pubring.gpg.partial"
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600)
    base = [binary, "--homedir", str(home), "--batch", "--no-tty", "--quiet"]
    exported = subprocess.run(
        [*base, "--export-options", "backup", "--export"], capture_output=True, check=False
    )
    if exported.returncode != 0:
        raise KeyUnusable(f"cannot read the keybox of {home}: {_stderr_tail(exported)}")
    if exported.stdout:
        keyring_args = ["--no-default-keyring", "--keyring", str(partial)]
        imported = subprocess.run(
            [*base, *keyring_args, "--import-options", "restore", "--import"],
            input=exported.stdout,
            capture_output=True,
            check=False,
        )
        if imported.returncode != 0:
            raise KeyUnusable(f"cannot copy the keybox of {home}: {_stderr_tail(imported)}")
    (home / "pubring.gpg.partial~").unlink(missing_ok=True)
    with partial.open("rb") as copied:
        os.fsync(copied.fileno())
    partial.rename(keyring)
    fsync_dir(home)


def _stderr_tail(done: subprocess.CompletedProcess[bytes]) -> str:
    return done.stderr.decode("utf-8", "replace").strip()[-300:] or f"exit {done.returncode}"


def _key_info(entry: dict[str, Any], *, secret: bool) -> KeyInfo:
    validity = entry.get("trust", "")
    encrypts_until, can_encrypt = _encryption_expiry(entry)
    return KeyInfo(
        fingerprint=str(entry["fingerprint"]).upper(),
        uids=tuple(entry.get("uids", ())),
        created=datetime.fromtimestamp(int(entry.get("date") or 0), UTC),
        expires=_instant(entry.get("expires")),
        revoked=validity == _REVOKED,
        expired=validity == _EXPIRED,
        secret=secret,
        subkeys=tuple(str(sub[2]).upper() for sub in entry.get("subkeys", ()) if len(sub) > 2),
        encrypts_until=encrypts_until,
        can_encrypt=can_encrypt,
    )


def _encryption_expiry(entry: dict[str, Any]) -> tuple[datetime | None, bool]:
    """The latest expiry among the key's encryption-capable (sub)keys that are not revoked (None
    if one of them never expires; in the past if all have expired), and whether there is any.
    gpg's listing gives each (sub)key its own capabilities: a lower-case "e"."""
    candidates = [entry] if "e" in str(entry.get("cap", "")) else []
    candidates += list(entry.get("subkey_info", {}).values())
    usable = [
        key
        for key in candidates
        if "e" in str(key.get("cap", "")) and key.get("trust", "") != _REVOKED
    ]
    if not usable:
        return None, False
    expiries = [_instant(key.get("expires")) for key in usable]
    if any(when is None for when in expiries):
        return None, True
    return max(when for when in expiries if when is not None), True


def _instant(epoch: Any) -> datetime | None:
    return datetime.fromtimestamp(int(epoch), UTC) if epoch else None


def _gpg_error(result: Any) -> str:
    status = StatusLog.parse(getattr(result, "stderr", "") or "")
    failures = status.fields("FAILURE") + status.fields("ERROR")
    if failures:
        return " ".join(" ".join(fields) for fields in failures)
    return str(getattr(result, "status", "") or "gpg failed")
