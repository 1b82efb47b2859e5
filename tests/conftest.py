"""Shared fixtures: the built-in form catalogue and validator, loaded once per test session."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import gpgkit
import pytest
from dbkit import POSTGRES_FOUND, POSTGRES_URL, postgres_schema
from hypothesis import settings
from sqlalchemy import Engine

from gateway.core.config import BUILTIN_FORMS, builtin_schema_sets
from gateway.forms.catalogue import FormCatalogue
from gateway.forms.xmlforms import FormValidator
from gateway.store import schema
from gateway.store.ledger import make_engine

PROJECT = Path(__file__).resolve().parent.parent

# Hypothesis: "ci" (the default) runs the same examples on every run; GATEWAY_FUZZ=long runs
# twenty times as many, new ones each time.
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("GATEWAY_FUZZ", "ci"))
SAMPLES = BUILTIN_FORMS / "samples"


def pytest_report_header() -> list[str]:
    return [f"PostgreSQL for the ledger tests: {POSTGRES_FOUND}"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly, at the end where it is read, what was skipped and why."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not POSTGRES_URL:
        terminalreporter.write_sep("!", "PostgreSQL variants SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"  {POSTGRES_FOUND}: every ledger test ran on SQLite only")
    if skipped:
        terminalreporter.write_sep("!", f"{len(skipped)} tests SKIPPED", yellow=True, bold=True)
        reasons: dict[str, int] = {}
        for report in skipped:
            reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else "?"
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"  {count:4d} x {reason}")


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


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty ledger at the current schema revision (made by the migrations): a SQLite
    file, and a private schema on the test PostgreSQL."""
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'ledger.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_schema())
        )
        engine = make_engine(url)
        schema.upgrade(engine)
        yield engine
        engine.dispose()
