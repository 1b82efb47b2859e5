"""Shared fixtures: the built-in form catalogue and validator, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import BUILTIN_FORMS, builtin_schema_sets
from gateway.forms import FormCatalogue
from gateway.xmlforms import FormValidator

PROJECT = Path(__file__).resolve().parent.parent
SAMPLES = BUILTIN_FORMS / "samples"


@pytest.fixture(scope="session")
def catalogue() -> FormCatalogue:
    return FormCatalogue.load([(BUILTIN_FORMS, "builtin")])


@pytest.fixture(scope="session")
def validator(catalogue: FormCatalogue) -> FormValidator:
    schema_sets, _ = builtin_schema_sets()
    return FormValidator.load(schema_sets, catalogue)
