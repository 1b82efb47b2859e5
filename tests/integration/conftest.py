"""Fixtures of the inbound integration tests: the test world and a running gateway."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from integration.inboundkit import World, end_world, make_world, running_gateway
from sqlalchemy import text

from gateway.ledger import make_engine
from gateway.server import Gateway

POSTGRES_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = make_world(tmp_path_factory.mktemp("inbound"))
    yield made
    end_world(made)


@pytest.fixture(params=["sqlite", "postgresql"])
async def gateway(
    world: World, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Gateway]:
    """A running gateway whose ledger is a SQLite file, or a private schema on the test
    PostgreSQL (skipped, saying so, when GATEWAY_TEST_POSTGRES_URL is not set)."""
    if request.param == "sqlite":
        async with running_gateway(world, tmp_path) as running:
            yield running
        return
    if not POSTGRES_URL:
        pytest.skip("GATEWAY_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        async with running_gateway(world, tmp_path, database_url=url) as running:
            yield running
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
