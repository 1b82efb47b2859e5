"""Test kit for /api/v1: the app over a real ledger (SQLite file or the test PostgreSQL) with a
FakeClock, API keys of every role made as `gateway users apikey create` makes them, and JSON
requests with a key."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accesskit import CHEAP
from dbkit import upgraded
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.access.passwords import Passwords
from gateway.access.roles import Role
from gateway.access.setup import AccessServices, open_access
from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.service.services import Services, open_services
from gateway.web.app import build_app

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
API = "/api/v1"


def key_roles(desk_a: str, desk_b: str) -> dict[str, tuple[frozenset[Role], frozenset[str]]]:
    """The keys the tests use: a handler key of each desk, a supervisor's, an operator's and an
    auditor's."""
    return {
        "cms-a": (frozenset({Role.HANDLER}), frozenset({desk_a})),
        "cms-b": (frozenset({Role.HANDLER}), frozenset({desk_b})),
        "cms-all": (frozenset({Role.SUPERVISOR}), frozenset()),
        "ops": (frozenset({Role.OPERATOR}), frozenset()),
        "audit": (frozenset({Role.AUDITOR}), frozenset()),
    }


@dataclass
class ApiDesk:
    services: Services
    access: AccessServices
    clock: FakeClock
    app: Starlette
    keys: dict[str, str] = field(default_factory=dict)  # name -> the key itself

    def headers(self, name: str, **more: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[name]}", **more}


@contextlib.contextmanager
def api_desk(
    config_path: Path, desk_a: str, desk_b: str, *, start: datetime = START
) -> Iterator[ApiDesk]:
    """The app over the configuration's ledger (upgraded first), with the keys of key_roles."""
    config = configuration.load(config_path)
    upgraded(config.database_url)
    clock = FakeClock(start)
    with open_services(config, clock=clock) as services:
        access = open_access(config, services.ledger, clock, passwords=Passwords(CHEAP))
        desk = ApiDesk(services, access, clock, build_app(services, access))
        for name, (roles, desks) in key_roles(desk_a, desk_b).items():
            desk.keys[name] = access.api_keys.create(name, roles, desks)
        yield desk


def get_json(client: TestClient, url: str, headers: Mapping[str, str]) -> tuple[int, Any]:
    answer = client.get(url, headers=dict(headers))
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    return answer.status_code, answer.json()


def error_code(body: Any) -> str:
    """The stable code of an error body, after checking the body has the error shape."""
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    code: str = body["error"]["code"]
    return code
