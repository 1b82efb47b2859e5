"""The partner-key check: warn the supervisor desk before a pinned partner key expires.

Each partner's pinned primary key is looked up in our keyring once a day. A key that expires
within ``[scheduler] key_warning``, or whose last encryption subkey does, or that has expired,
is revoked, is missing or has no encryption subkey left, draws one notice per partner, key and
day (the notice key holds the day: posting twice leaves one) and one audit entry. Only
fingerprints, partner codes and instants are written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.core.config import Config, Partner
from gateway.crypto.openpgp import KeyInfo
from gateway.desks.notices import Notice, post
from gateway.store.audit import AuditLog
from gateway.tracking.deadline_notices import span_text, utc_text
from gateway.tracking.recipients import supervisor_desk

log = logging.getLogger("gateway.crypto")


@dataclass(frozen=True)
class KeyWarning:
    """What is wrong (or soon will be) with one partner's pinned key."""

    partner: str
    fingerprint: str
    problem: str  # expires | expired | revoked | missing | cannot-encrypt
    expires: datetime | None = None
    part: str = "key"  # what expires: the key, or its encryption subkey before the key

    def sentence(self, now: datetime) -> str:
        what = f"the {self.part} of {self.partner}"
        if self.problem == "expires" and self.expires is not None:
            return f"{what} expires {utc_text(self.expires)} (in {span_text(self.expires - now)})"
        if self.problem == "expired" and self.expires is not None:
            return f"{what} expired {utc_text(self.expires)}"
        if self.problem == "revoked":
            return f"{what} is revoked"
        if self.problem == "cannot-encrypt":
            return f"{what} has no usable encryption subkey"
        return f"{what} is not in our keyring"


def warnings(
    partners: Iterable[Partner], keys: Iterable[KeyInfo], now: datetime, warn_within: timedelta
) -> list[KeyWarning]:
    """The partners whose pinned key needs attention at ``now``, expiring within
    ``warn_within`` or worse: a pure function."""
    by_fingerprint = {key.fingerprint: key for key in keys}
    found: list[KeyWarning] = []
    for partner in partners:
        key = by_fingerprint.get(partner.fingerprint)
        if key is None:
            found.append(KeyWarning(partner.code, partner.fingerprint, "missing"))
        elif key.revoked:
            found.append(KeyWarning(partner.code, key.fingerprint, "revoked", key.expires))
        elif not key.can_encrypt and (key.expires is None or now < key.expires):
            found.append(KeyWarning(partner.code, key.fingerprint, "cannot-encrypt"))
        elif (ends := key.encryption_ends()) is not None:
            # Forms to the partner stop when either the key or its encryption subkey expires.
            part = "key" if ends == key.expires else "encryption subkey"
            if ends <= now:
                found.append(KeyWarning(partner.code, key.fingerprint, "expired", ends, part))
            elif ends - now <= warn_within:
                found.append(KeyWarning(partner.code, key.fingerprint, "expires", ends, part))
    return found


def notify(config: Config, audit: AuditLog, found: list[KeyWarning], now: datetime) -> int:
    """Tell the supervisor desk of each warning, once per day; returns how many were posted."""
    desk = supervisor_desk(config)
    day = now.date().isoformat()
    for warning in found:
        sentence = warning.sentence(now)
        log.warning("partner key: %s (%s)", sentence, warning.fingerprint)
        if desk is not None:
            post(
                config,
                desk,
                Notice(
                    kind="key-expiry",
                    key=f"key-expiry.{warning.partner}.{warning.fingerprint[-16:]}.{day}",
                    subject=f"Partner key: {sentence}",
                    body=(
                        f"Partner:      {warning.partner}\n"
                        f"Fingerprint:  {warning.fingerprint}\n"
                        f"Problem:      {warning.problem}\n"
                        f"Expires:      {utc_text(warning.expires) if warning.expires else '-'}\n"
                        f"Checked:      {utc_text(now)}\n\n"
                        "Ask the partner for its new key, check its fingerprint out of band, "
                        "and pin it with `gateway keys import`.\n"
                    ),
                ),
                now,
            )
        audit.append(
            "key.warning",
            partner=warning.partner,
            reason=f"{warning.problem}: {warning.fingerprint} {sentence}"[:300],
        )
    return len(found)
