"""Time-based one-time passwords (RFC 6238): the only module that imports pyotp."""

from __future__ import annotations

from datetime import datetime

import pyotp

STEP_SECONDS = 30
DIGITS = 6
# Codes of the step before and after the current one are accepted too (clock drift).
DRIFT_STEPS = 1


def new_secret() -> str:
    """A new shared secret: 32 base32 characters (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, name: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads (from a QR code or typed in)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=name, issuer_name=issuer
    )


def code_at(secret: str, at: datetime) -> str:
    """The code for ``at`` (tests and enrolment checks)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(at)


def matching_step(secret: str, code: str, at: datetime, after_step: int | None) -> int | None:
    """The time step whose code ``code`` is, within the drift around ``at``, and later than
    ``after_step`` (a code used once is not accepted again); None when none is."""
    code = code.strip()
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = totp.timecode(at)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if after_step is not None and step <= after_step:
            continue
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None
