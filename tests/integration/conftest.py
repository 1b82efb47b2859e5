"""Fixtures of the inbound integration tests: the test world and a running gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from dbkit import postgres_schema
from integration.inboundkit import World, end_world, make_world, running_gateway

from gateway.service.server import Gateway


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
    with postgres_schema() as url:
        async with running_gateway(world, tmp_path, database_url=url) as running:
            yield running
