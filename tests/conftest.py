"""Shared fixtures: the built-in form catalogue and validator, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import BUILTIN_FORMS, BUILTIN_XSD
from gateway.forms import FormCatalogue
from gateway.xmlforms import FormValidator, SchemaSetSpec

PROJECT = Path(__file__).resolve().parent.parent
SAMPLES = BUILTIN_FORMS / "samples"


@pytest.fixture(scope="session")
def catalogue() -> FormCatalogue:
    return FormCatalogue.load([(BUILTIN_FORMS, "builtin")])


@pytest.fixture(scope="session")
def validator(catalogue: FormCatalogue) -> FormValidator:
    return FormValidator.load([SchemaSetSpec("builtin", BUILTIN_XSD)], catalogue)
