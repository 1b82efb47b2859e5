"""Test kit: a private, throwaway schema on the test PostgreSQL, named in the URL it yields."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from gateway.ledger import make_engine

POSTGRES_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose connections see only a new, empty schema, dropped afterwards. Skips the test,
    saying so, when GATEWAY_TEST_POSTGRES_URL does not name a server (CI sets it)."""
    if not POSTGRES_URL:
        pytest.skip("GATEWAY_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
