"""Build the gateway's long-lived parts (validator, GnuPG) from a Config."""

from __future__ import annotations

from gateway import config as configuration
from gateway.forms import FormCatalogue
from gateway.limits import XmlLimits
from gateway.openpgp import GnuPG, KeyProtection
from gateway.xmlforms import FormValidator


def load_validator(config: configuration.Config | None) -> FormValidator:
    """The built-in forms and schemas, plus those the configuration adds."""
    if config is None:
        schema_sets, folders = configuration.builtin_schema_sets()
        return FormValidator.load(schema_sets, FormCatalogue.load(folders), XmlLimits())
    catalogue = FormCatalogue.load(config.form_folders)
    return FormValidator.load(config.schema_sets, catalogue, config.xml)


def open_gnupg(config: configuration.Config) -> GnuPG:
    """Our GnuPG home with our key and its protection as configured."""
    settings = config.openpgp
    protection = KeyProtection.from_sources(
        passphrase_file=settings.passphrase_file,
        passphrase_env=settings.passphrase_env,
        s2k_count=settings.s2k_count,
    )
    return GnuPG(config.paths.gnupg_home, fingerprint=settings.fingerprint, protection=protection)
