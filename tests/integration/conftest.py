"""Fixtures of the inbound integration tests: the test world and a running gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from integration.inboundkit import World, end_world, make_world, running_gateway

from gateway.server import Gateway


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = make_world(tmp_path_factory.mktemp("inbound"))
    yield made
    end_world(made)


@pytest.fixture
async def gateway(world: World, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(world, tmp_path) as running:
        yield running
