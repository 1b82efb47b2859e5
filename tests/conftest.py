"""Shared fixtures: the built-in form catalogue and validator, loaded once per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import gpgkit
import pytest
from sqlalchemy import Engine, text

from gateway.config import BUILTIN_FORMS, builtin_schema_sets
from gateway.forms import FormCatalogue
from gateway.ledger import create_schema, make_engine
from gateway.xmlforms import FormValidator

PROJECT = Path(__file__).resolve().parent.parent
SAMPLES = BUILTIN_FORMS / "samples"


@pytest.fixture(scope="session", autouse=True)
def _throwaway_gnupg_homes() -> Iterator[None]:
    """Every GnuPG home a test made: agents stopped and folders removed at the end."""
    yield
    gpgkit.remove_homes()


@pytest.fixture(scope="session")
def catalogue() -> FormCatalogue:
    return FormCatalogue.load([(BUILTIN_FORMS, "builtin")])


@pytest.fixture(scope="session")
def validator(catalogue: FormCatalogue) -> FormValidator:
    schema_sets, _ = builtin_schema_sets()
    return FormValidator.load(schema_sets, catalogue)


POSTGRES_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty ledger: a SQLite file, and a private schema on the test PostgreSQL.

    PostgreSQL runs when GATEWAY_TEST_POSTGRES_URL names a server (CI sets it); without it the
    PostgreSQL variant is skipped, never silently replaced by SQLite.
    """
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
        create_schema(engine)
        yield engine
        engine.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("GATEWAY_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    create_schema(engine)
    yield engine
    engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
