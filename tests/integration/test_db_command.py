"""`gateway db status|upgrade` as an operator runs them, and the refusal of `serve` and `inbox`
on a ledger whose schema is not this gateway's: one line naming `db upgrade`, exit 2."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dbkit
import pytest
from dbkit import make_pre_migration_ledger, postgres_schema
from integration.inboundkit import World, gateway_config
from sqlalchemy import Engine, inspect, text

from gateway.core import config as configuration
from gateway.core.clock import SystemClock
from gateway.store import schema
from gateway.store.ledger import Ledger, make_engine
from gateway.store.unit import writing

GATEWAY = (sys.executable, "-m", "gateway")
RECEIVED = dataclasses.replace(dbkit.RECEIVED, spool_key=None)


def gateway(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GATEWAY, "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd="/",
        check=False,
    )


def status(config: Path) -> dict[str, object]:
    done = gateway(config, "db", "status", "--json")
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    """The one line of a refusal with exit 2, no traceback."""
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    assert done.returncode == 2, done.stderr
    return lines[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def configured(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A gateway's configuration whose ledger has never been opened."""
    with contextlib.ExitStack() as stack:
        url = None if request.param == "sqlite" else stack.enter_context(postgres_schema())
        yield gateway_config(world, tmp_path, database_url=url)


@contextlib.contextmanager
def engine_of(config: Path) -> Iterator[Engine]:
    engine = make_engine(configuration.load(config).database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_status_then_upgrade_of_a_new_ledger(configured: Path) -> None:
    before = status(configured)
    assert before["current"] is None
    assert before["head"] == schema.head()
    assert (before["upgrade_due"], before["empty"], before["pre_migration"]) == (True, True, False)

    done = gateway(configured, "db", "upgrade")

    assert done.returncode == 0, done.stderr
    assert f"created the empty ledger's tables at revision {schema.head()}" in done.stdout
    after = status(configured)
    assert (after["current"], after["upgrade_due"], after["empty"]) == (schema.head(), False, False)
    text_status = gateway(configured, "db", "status")
    assert f"revision: {schema.head()}\n" in text_status.stdout
    assert "upgrade due: no\n" in text_status.stdout
    again = gateway(configured, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert f"already at revision {schema.head()}: nothing to do" in again.stdout


@pytest.mark.parametrize("command", [["serve"], ["inbox"]])
def test_a_ledger_never_made_is_refused_with_the_command_to_run(
    world: World, tmp_path: Path, command: list[str]
) -> None:
    config = gateway_config(world, tmp_path)
    ledger = tmp_path / "spool" / "ledger.db"
    line = refusal(gateway(config, *command))
    assert line == (
        f"gateway: the ledger at sqlite:///{ledger} has no tables yet, this gateway needs "
        f"{schema.head()}: run `gateway -c {config} db upgrade`"
    )
    with engine_of(config) as engine:
        assert inspect(engine).get_table_names() == []  # the refusal made nothing


def test_a_ledger_made_before_migrations_is_refused_then_stamped(configured: Path) -> None:
    with engine_of(configured) as engine:
        make_pre_migration_ledger(engine)  # what every command did before migrations
        ledger = Ledger(engine, SystemClock())
        with writing(engine) as tx:
            ledger.record_in(tx, RECEIVED, "spooled")
    for command in (["serve"], ["inbox"]):
        line = refusal(gateway(configured, *command))
        assert f"was made before schema migrations, this gateway needs {schema.head()}" in line
        assert line.endswith(f"run `gateway -c {configured} db upgrade`")
    assert status(configured)["pre_migration"] is True

    done = gateway(configured, "db", "upgrade")

    assert done.returncode == 0, done.stderr
    assert "made before schema migrations: stamped as revision 0001" in done.stdout
    assert f"upgraded from revision 0001 to {schema.head()}" in done.stdout
    assert status(configured)["upgrade_due"] is False
    inbox = gateway(configured, "inbox", "--json")
    assert inbox.returncode == 0, inbox.stderr
    assert RECEIVED.reference in inbox.stdout


def test_a_ledger_at_a_newer_revision_is_left_alone(configured: Path) -> None:
    assert gateway(configured, "db", "upgrade").returncode == 0
    with engine_of(configured) as engine, writing(engine) as tx:
        tx.connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    found = status(configured)
    assert (found["current"], found["known"], found["upgrade_due"]) == ("0099", False, False)
    for command in (["db", "upgrade"], ["inbox"]):
        line = refusal(gateway(configured, *command))
        assert "is at revision 0099, which this gateway does not know" in line
        assert "db upgrade" not in line
    assert status(configured)["current"] == "0099"
