"""The ledger's schema revision: read it, require it, upgrade to it. The only caller of Alembic.

The migrations live in the package folder store/migrations (env.py, versions/), found next to
this module, so they run the same from a checkout, an installed package and any working folder.
A ledger made before migrations (its tables there, no ``alembic_version``) is adopted: stamped
with the first revision, which is exactly what ``metadata.create_all`` used to make.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicError
from sqlalchemy import Connection, Engine, inspect

from gateway.core.errors import LedgerOutdated

SCRIPTS = Path(__file__).resolve().parent / "migrations"
# The revision a ledger made before migrations is, and the tables such a ledger holds.
ADOPTED_REVISION = "0001"
ADOPTED_TABLES = frozenset(
    {
        "messages",
        "events",
        "deadlines",
        "audit",
        "job_runs",
        "sequences",
        "refusals",
        "quarantine_notices",
    }
)
VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class SchemaState:
    """Where a ledger stands against the migrations this gateway carries."""

    url: str  # password hidden
    current: str | None  # the stamped revision; None when not stamped
    head: str
    pre_migration: bool  # tables made before migrations, not stamped yet
    missing: frozenset[str]  # of a pre-migration ledger: adopted tables it lacks
    known: bool  # current is None or one of this gateway's revisions

    @property
    def empty(self) -> bool:
        return self.current is None and not self.pre_migration

    @property
    def upgrade_due(self) -> bool:
        return self.current != self.head

    def shown(self) -> str:
        """The revision in words: ``0001``, ``none (empty)``, ``none (made before migrations)``."""
        if self.current is not None:
            return self.current
        return "none (made before migrations)" if self.pre_migration else "none (empty)"


@dataclass(frozen=True)
class Upgrade:
    """What ``upgrade`` did: from which revision to which, and whether it stamped or created."""

    before: SchemaState
    after: str
    stamped: bool


@functools.cache
def _scripts(folder: Path) -> ScriptDirectory:
    return ScriptDirectory(str(folder))


def head(scripts: Path = SCRIPTS) -> str:
    revision = _scripts(scripts).get_current_head()
    if revision is None:  # pragma: no cover - the package always carries revisions
        raise RuntimeError(f"no schema revisions in {scripts}")
    return revision


def state(engine: Engine, scripts: Path = SCRIPTS) -> SchemaState:
    with engine.connect() as connection:
        return _state(connection, engine, scripts)


def _state(connection: Connection, engine: Engine, scripts: Path) -> SchemaState:
    current = MigrationContext.configure(connection).get_current_revision()
    tables = set(inspect(connection).get_table_names())
    pre_migration = current is None and bool(tables & ADOPTED_TABLES)
    known = current is None or _revision_known(scripts, current)
    return SchemaState(
        url=engine.url.render_as_string(hide_password=True),
        current=current,
        head=head(scripts),
        pre_migration=pre_migration,
        missing=frozenset(ADOPTED_TABLES - tables) if pre_migration else frozenset(),
        known=known,
    )


def _revision_known(scripts: Path, revision: str) -> bool:
    try:
        return _scripts(scripts).get_revision(revision) is not None
    except AlembicError:  # alembic's own error for an unknown revision id
        return False


def require_current(engine: Engine, scripts: Path = SCRIPTS) -> None:
    """Return when the ledger is at this gateway's head revision; else LedgerOutdated."""
    found = state(engine, scripts)
    if found.current == found.head:
        return
    raise _refusal(found)


def _refusal(found: SchemaState) -> LedgerOutdated:
    where = f"the ledger at {found.url}"
    if not found.known:
        return LedgerOutdated(
            f"{where} is at revision {found.current}, which this gateway does not know "
            f"(its newest is {found.head}): run the gateway that upgraded it",
            upgradable=False,
        )
    if found.pre_migration:
        return LedgerOutdated(
            f"{where} was made before schema migrations, this gateway needs {found.head}",
            upgradable=True,
        )
    if found.current is None:
        return LedgerOutdated(
            f"{where} has no tables yet, this gateway needs {found.head}", upgradable=True
        )
    return LedgerOutdated(
        f"{where} is at revision {found.current}, this gateway needs {found.head}",
        upgradable=True,
    )


def upgrade(engine: Engine, scripts: Path = SCRIPTS) -> Upgrade:
    """Bring the ledger to the head revision (one transaction on PostgreSQL; SQLite commits
    each DDL statement by itself): create an empty one, stamp one
    made before migrations with the first revision, run the revisions it lacks. LedgerOutdated
    when its revision is unknown here or a pre-migration ledger lacks adopted tables."""
    with engine.begin() as connection:
        before = _state(connection, engine, scripts)
        if not before.known:
            raise _refusal(before)
        if before.missing:
            raise LedgerOutdated(
                f"the ledger at {before.url} was made before schema migrations but lacks "
                f"{', '.join(sorted(before.missing))}: open it once with the gateway that made "
                "it, then upgrade",
                upgradable=False,
            )
        config = _config(connection, scripts)
        if before.pre_migration:
            command.stamp(config, ADOPTED_REVISION)
        command.upgrade(config, "head")
        after = MigrationContext.configure(connection).get_current_revision()
    return Upgrade(before=before, after=after or "", stamped=before.pre_migration)


def _config(connection: Connection, scripts: Path) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(scripts).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config
