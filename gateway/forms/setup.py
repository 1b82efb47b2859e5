"""The form validator made from a Config: the built-in forms and schemas, and those it adds."""

from __future__ import annotations

from gateway.core import config as configuration
from gateway.core.limits import XmlLimits
from gateway.forms.catalogue import FormCatalogue
from gateway.forms.xmlforms import FormValidator


def load_validator(config: configuration.Config | None) -> FormValidator:
    """The built-in forms and schemas, plus those the configuration adds."""
    if config is None:
        schema_sets, folders = configuration.builtin_schema_sets()
        return FormValidator.load(schema_sets, FormCatalogue.load(folders), XmlLimits())
    catalogue = FormCatalogue.load(config.form_folders)
    return FormValidator.load(config.schema_sets, catalogue, config.xml)
