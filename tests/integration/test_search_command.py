"""`gateway search` on SQLite and PostgreSQL: results limited to the user's desks, each search
recorded (its terms in search_requests, an access-log line with that row's id and digest and no
personal data), bad searches refused with nothing recorded, the terms purged with retention."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dbkit import RECEIVED, postgres_schema, upgraded
from integration.test_users_command import CONFIG as USERS_CONFIG
from integration.test_users_command import PASSWORD
from sqlalchemy import Engine, func, select

from gateway.access.accesslog import Access
from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.cli.main import main
from gateway.core import config as configuration
from gateway.core.clock import FakeClock, SystemClock
from gateway.forms.entities import Entity
from gateway.search import index
from gateway.store import search_log
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, make_engine, search_entries, search_requests
from gateway.store.search_rows import Where
from gateway.store.spool import Spool
from gateway.store.unit import reading
from gateway.tracking.retention import Purger

# The users command's configuration, with a retention rule (the search log is purged by it).
CONFIG = (
    USERS_CONFIG
    + """
[[retention]]
keep = "P30D"
"""
)


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A ledger with users and two indexed messages, one on each desk."""
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'ledger.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_schema())
        )
        path = tmp_path / "gateway.toml"
        path.write_text(CONFIG.format(url=upgraded(url)))
        loaded = configuration.load(path)
        engine = make_engine(url)
        stack.callback(engine.dispose)
        ledger = Ledger(engine, SystemClock())
        access = open_access(loaded, ledger, SystemClock())
        access.accounts.add("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
        access.accounts.add("ivo", frozenset({Role.HANDLER}), frozenset({"interpol"}), PASSWORD)
        access.accounts.add("olga", frozenset({Role.OPERATOR}), frozenset(), PASSWORD)
        now = datetime.now(UTC)
        with ledger.transaction() as tx:
            for number, desk in enumerate(("sirene", "interpol"), start=1):
                reference = f"NO-2026-{number:06d}"
                new = dataclasses.replace(
                    RECEIVED, reference=reference, spool_key=reference, desk=desk
                )
                message = ledger.record_in(tx, new, "spooled")
                person = Entity("person", "name", "Ivan IVANOV", "1979-05-05", "RU")
                where = Where(message, "inbound", "NO-SIRENE", desk, "G")
                index.write_in(tx, where, [person], now)
        yield path


def entries(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(search_entries)).scalar_one()
        )


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["-c", str(config), "search", *args])
    out, err = capsys.readouterr()
    return code, out, err


def recorded(config: Path) -> tuple[int, list[tuple[str, str, str]]]:
    """How many searches' terms are kept, and the access log's search lines."""
    engine = make_engine(configuration.load(config).database_url)
    try:
        with engine.connect() as connection:
            kept = connection.execute(select(func.count()).select_from(search_requests)).scalar()
        log = AuditLog(engine, SystemClock())
        lines = [
            (entry.kind, entry.reason, entry.digest)
            for entry in log.entries()
            if entry.kind == Access.SEARCH
        ]
    finally:
        engine.dispose()
    return int(kept or 0), lines


def test_a_search_finds_on_the_users_desks_and_is_recorded(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, config, "Iwanow Iwan", "--user", "ana", "--purpose", "case-work",
        "--case", "RO-2026-000042", "--born", "1979-05-05", "--json",
    )  # fmt: skip
    assert code == 0
    done = json.loads(out)
    assert [(hit["value"], hit["desk"]) for hit in done["results"]] == [("Ivan IVANOV", "sirene")]
    assert "iwanow ~ ivanov: spelling variant" in done["results"][0]["why"]
    assert "date of birth the same" in done["results"][0]["why"]

    kept, lines = recorded(config)
    assert kept == 1
    [(_kind, reason, digest)] = lines
    assert reason == f"user=ana role=handler purpose=case-work hits=1 search={done['search_id']}"
    assert "Iwan" not in reason and "1979" not in reason  # no personal data in the chain
    engine = make_engine(configuration.load(config).database_url)
    try:
        with reading(engine) as tx:
            row = search_log.get(tx, done["search_id"])
    finally:
        engine.dispose()
    assert row is not None and row.digest == digest
    assert (row.user_name, row.purpose, row.case_reference, row.reason) == (
        "ana", "case-work", "RO-2026-000042", None,
    )  # fmt: skip
    assert row.terms["value"] == "Iwanow Iwan" and row.terms["born"] == "1979-05-05"
    assert row.digest == search_log.digest_of(
        at=row.at, user_name="ana", purpose="case-work", case_reference="RO-2026-000042",
        reason=None, terms=row.terms,
    )  # fmt: skip

    code, out, _ = run(
        capsys, config, "Ivanov", "--user", "ivo", "--purpose", "reply", "--reason",
        "request from NO about a border check",
    )  # fmt: skip
    assert code == 0
    assert "desk interpol" in out and "desk sirene" not in out  # desk isolation
    assert recorded(config)[0] == 2


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("Ivanov", "--user", "ana", "--case", "X1"), "a search needs a purpose"),
        (("Ivanov", "--user", "ana", "--purpose", "reply"), "a case reference or a short reason"),
        (("", "--user", "ana", "--purpose", "reply", "--case", "C-1"), "the search is empty"),
        (("x" * 201, "--user", "ana", "--purpose", "reply", "--case", "C-1"), "too long"),
        (("Ivanov", "--user", "ana", "--purpose", "reply", "--case", "a b"), "a case reference"),
        (("Ivanov", "--user", "ana", "--purpose", "reply", "--reason", "no"), "3 to 200"),
        (("Ivanov", "--user", "nobody", "--purpose", "reply", "--case", "C-1"), "no user"),
    ],
)
def test_bad_searches_are_refused_and_nothing_is_recorded(
    config: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], said: str
) -> None:
    code, out, err = run(capsys, config, *args)
    assert code == 2
    assert said in err and out == ""
    assert recorded(config) == (0, [])


def test_a_role_that_does_not_search_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, config, "Ivanov", "--user", "olga", "--purpose", "reply", "--case", "C-1"
    )
    assert code == 1
    assert "olga has no role that searches" in err
    assert recorded(config) == (0, [])


def test_the_terms_are_purged_with_retention(
    config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert (
        run(capsys, config, "Ivanov", "--user", "ana", "--purpose", "reply", "--case", "C-1")[0]
        == 0
    )
    loaded = configuration.load(config)
    engine = make_engine(loaded.database_url)
    try:
        later = datetime.now(UTC) + timedelta(days=31)
        ledger = Ledger(engine, FakeClock(later))
        purger = Purger(
            config=loaded,
            ledger=ledger,
            audit=AuditLog(engine, FakeClock(later)),
            inbound=Spool(tmp_path / "in"),
            outbound=Spool(tmp_path / "out"),
        )
        assert purger.purge(datetime.now(UTC)).searches == 0  # kept 30 days
        assert entries(engine) == 2
        done = purger.purge(later)
        assert (done.searches, done.messages) == (1, 2)
        assert entries(engine) == 0  # the messages' index entries went with them
    finally:
        engine.dispose()
    kept, lines = recorded(config)
    assert kept == 0 and len(lines) == 1  # the chain keeps its line, with id and digest
