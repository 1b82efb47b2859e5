"""Our GnuPG home made from a Config: our key and its protection as configured."""

from __future__ import annotations

from gateway.core import config as configuration
from gateway.crypto.openpgp import GnuPG, KeyProtection


def open_gnupg(config: configuration.Config) -> GnuPG:
    """Our GnuPG home with our key and its protection as configured."""
    settings = config.openpgp
    protection = KeyProtection.from_sources(
        passphrase_file=settings.passphrase_file,
        passphrase_env=settings.passphrase_env,
        s2k_count=settings.s2k_count,
    )
    return GnuPG(config.paths.gnupg_home, fingerprint=settings.fingerprint, protection=protection)
