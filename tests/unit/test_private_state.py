"""Where the ledger goes and how private it is; the spool's lock; the 0700 folders."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.core import config as configuration
from gateway.core.config import sqlite_url_from
from gateway.core.errors import CannotStart
from gateway.store import schema
from gateway.store.durable import private_folder
from gateway.store.ledger import make_engine
from gateway.store.spoollock import LOCK_NAME, SpoolLock

BASE = Path("/etc/ipc-gateway")
NOW = datetime(2026, 5, 11, 8, 30, 15, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/ledger.db", "sqlite:////etc/ipc-gateway/var/ledger.db"),
        ("sqlite:///./ledger.db", "sqlite:////etc/ipc-gateway/ledger.db"),
        ("sqlite:///../spool/ledger.db", "sqlite:////etc/spool/ledger.db"),
        ("sqlite+pysqlite:///l.db?timeout=5", "sqlite+pysqlite:////etc/ipc-gateway/l.db?timeout=5"),
        ("sqlite:////srv/ledger.db", "sqlite:////srv/ledger.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite:///file:l.db?mode=ro&uri=true", "sqlite:///file:l.db?mode=ro&uri=true"),
        ("postgresql+psycopg://u@db/ipcgw", "postgresql+psycopg://u@db/ipcgw"),
    ],
)
def test_a_relative_sqlite_file_is_taken_from_the_configuration_folder(
    url: str, expected: str
) -> None:
    assert sqlite_url_from(url, BASE) == expected


def test_load_resolves_database_url_against_the_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "gateway.toml"
    path.write_text(
        '[identity]\ncountry = "RO"\naddress = "sirene@ro.example"\n'
        '[identity.bureaux]\nsirene = "RO-SIRENE"\n'
        '[database]\nurl = "sqlite:///var/ledger.db"\n'
    )
    monkeypatch.chdir(tmp_path)
    loaded = configuration.load(Path("etc") / "gateway.toml")
    assert loaded.database_url == f"sqlite:///{folder.resolve() / 'var' / 'ledger.db'}"


def test_the_sqlite_ledger_is_made_0600_in_0700_folders(tmp_path: Path) -> None:
    old = os.umask(0o022)  # what a login shell has: the gateway must not rely on the umask
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'ledger.db'}")
        schema.upgrade(engine)
        engine.dispose()
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b" / "ledger.db").stat().st_mode) == 0o600


def test_private_folder_makes_each_missing_folder_0700_and_leaves_others(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    old = os.umask(0o022)
    try:
        private_folder(tmp_path / "x" / "y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "x" / "y").stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_private_folder_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        private_folder(tmp_path / "file" / "sub")


def test_a_held_spool_lock_names_its_holder(tmp_path: Path) -> None:
    with SpoolLock.acquire(tmp_path, NOW):
        with pytest.raises(CannotStart) as refused:
            SpoolLock.acquire(tmp_path, NOW)
        assert str(refused.value) == (
            f"spool {tmp_path} is in use by gateway pid {os.getpid()} on host "
            f"{os.uname().nodename} since 2026-05-11T08:30:15+00:00"
        )
    assert stat.S_IMODE((tmp_path / LOCK_NAME).stat().st_mode) == 0o600
    # Released: the next gateway takes it and writes its own record over the old one.
    later = NOW.replace(hour=9)
    with SpoolLock.acquire(tmp_path, later):
        record = (tmp_path / LOCK_NAME).read_text()
    assert record.endswith("since 2026-05-11T09:30:15+00:00\n")
    assert record.count("pid ") == 1
