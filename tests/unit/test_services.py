"""open_services: every part built once on a real SQLite ledger and GnuPG home, closed in reverse
order after the body (also when it raises), an outdated ledger refused before anything else."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import gpgkit
import pytest
from dbkit import upgraded
from sqlalchemy import event
from trackingkit import START, write_config

from gateway.core.clock import FakeClock
from gateway.core.config import Config
from gateway.core.errors import KeyUnusable, LedgerOutdated
from gateway.service.services import Services, open_services

AGENT_SOCKET = "S.gpg-agent"
AGENT_EXIT = 10.0  # seconds an agent told to stop may take to remove its socket


def configured(folder: Path, *, passphrase_file: Path | None = None) -> Config:
    """Our bureau with a real key in a throwaway GnuPG home and a SQLite ledger beside (not in)
    the spool, so that a spool folder made shows a spool touched."""
    home = gpgkit.new_home()
    fingerprint = gpgkit.make_key(home, "RO-SIRENE <sirene@ro.example>")
    gpgkit.kill_agent(home)  # the agent gpg started for that: only the services start one now
    openpgp = f'[openpgp]\nfingerprint = "{fingerprint}"\n'
    if passphrase_file is not None:
        openpgp += f'passphrase_file = "{passphrase_file}"\n'
    return write_config(folder, f"sqlite:///{folder / 'ledger.db'}", gnupg_home=home, extra=openpgp)


def closings(services: Services) -> list[str]:
    """What has closed, in order, as the engine's own disposal event sees it: the engine, and
    whether our gpg-agent was stopped by then. `gpgconf --kill` returns once the agent was told
    to stop; its socket goes a moment later, so the socket is given AGENT_EXIT to go: were the
    engine disposed first, nothing would have told the agent to stop and it would still run."""
    seen: list[str] = []
    socket = services.config.paths.gnupg_home / AGENT_SOCKET

    @event.listens_for(services.ledger.engine, "engine_disposed")
    def disposed(_engine: object) -> None:
        deadline = time.monotonic() + AGENT_EXIT
        while socket.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(f"engine disposed, gpg-agent {'running' if socket.exists() else 'stopped'}")

    return seen


def test_every_part_is_built_once_and_closed_in_reverse_order(tmp_path: Path) -> None:
    config = configured(tmp_path)
    upgraded(config.database_url)
    clock = FakeClock(START)
    with open_services(config, clock=clock) as services:
        seen = closings(services)
        assert services.clock is clock
        assert services.ledger.clock is clock and services.audit.clock is clock
        assert services.audit.engine is services.ledger.engine
        assert services.gpg is services.gpg
        assert services.gpg.fingerprint == config.openpgp.fingerprint
        services.gpg.check_signing()  # a real signature: our gpg-agent runs now
        assert (config.paths.gnupg_home / AGENT_SOCKET).exists()
        assert services.validator is services.validator
        assert services.validator.catalogue.get("G").title
        assert services.inbound is services.inbound
        assert services.inbound.root == config.paths.spool / "inbound"
        assert services.outbound.root == config.paths.spool / "outbound"
        assert stat.S_IMODE(config.paths.spool.stat().st_mode) == 0o700
        submitter = services.submitter()
        assert (submitter.gpg, submitter.outbound) == (services.gpg, services.outbound)
        services.audit.append("test.entry", reason="written through the services")
        assert [entry.kind for entry in services.audit.entries()] == ["test.entry"]
        assert seen == []  # nothing closes inside the body
    assert seen == ["engine disposed, gpg-agent stopped"]


def test_a_body_that_raises_still_closes_everything(tmp_path: Path) -> None:
    config = configured(tmp_path)
    upgraded(config.database_url)
    with pytest.raises(ZeroDivisionError), open_services(config) as services:
        seen = closings(services)
        services.gpg.check_signing()
        _ = 1 / 0
    assert seen == ["engine disposed, gpg-agent stopped"]


def test_a_command_that_needs_no_key_reads_no_passphrase_and_makes_no_spool(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-passphrase"
    config = configured(tmp_path, passphrase_file=missing)
    upgraded(config.database_url)
    with open_services(config) as services:
        seen = closings(services)
        assert services.ledger.by_reference("NO-2026-000001") == []
        assert not config.paths.spool.exists()
        with pytest.raises(KeyUnusable, match="cannot read the passphrase file"):
            services.gpg  # noqa: B018 (the part that reads it)
    assert seen == ["engine disposed, gpg-agent stopped"]
    with pytest.raises(RuntimeError, match="the services are closed: cannot open inbound"):
        services.inbound  # noqa: B018 (a part first asked for after the end)
    assert not config.paths.spool.exists()


def test_an_outdated_ledger_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    config = configured(tmp_path, passphrase_file=tmp_path / "no-such-passphrase")
    assert config.source is not None
    with pytest.raises(LedgerOutdated) as refused, open_services(config):
        pytest.fail("the body ran on a ledger that has no tables")
    line = refused.value.line(str(config.source))
    assert line.startswith(f"the ledger at {config.database_url} has no tables yet")
    assert line.endswith(f"run `gateway -c {config.source} db upgrade`")
    assert not config.paths.spool.exists()
