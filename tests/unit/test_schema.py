"""Schema migrations on SQLite and PostgreSQL: from empty, adoption of a pre-migration ledger,
a later revision applied to a ledger holding data, and the refusals of an outdated schema."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from dbkit import RECEIVED, REPORT_INDEXES, make_pre_migration_ledger, postgres_schema
from sqlalchemy import Engine, inspect, select, text

from gateway.core.clock import FakeClock
from gateway.core.config import RetentionRule
from gateway.core.errors import LedgerOutdated
from gateway.forms.entities import Entity
from gateway.search import crosscheck, index, matching
from gateway.service.cases import Cases
from gateway.store import (
    alert_rows,
    bodies,
    case_rows,
    claims,
    crosscheck_rows,
    deadline_rows,
    drafts,
    idempotency,
    leases,
    reportfigures,
    retention_rows,
    schema,
    search_ddl,
    search_rows,
    shred_rows,
    users,
    worklist,
)
from gateway.store.audit import AuditLog
from gateway.store.groupcommit import GroupCommit, Received
from gateway.store.ledger import (
    Ledger,
    audit,
    case_members,
    case_references,
    cases,
    deadlines,
    events,
    make_engine,
    messages,
    metadata,
)
from gateway.store.reportfigures import Scope
from gateway.store.search_rows import IndexRow, Where
from gateway.store.unit import writing

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
# A next revision, as a future change to ledger.py would bring: a column added to messages.
NEXT = "9999"
NEXT_REVISION = '''"""A note on each message (a test's revision)."""

import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("note", sa.String(40), nullable=False, server_default="none"))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("note")
'''


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A ledger database with nothing in it: a SQLite file, a private PostgreSQL schema."""
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'ledger.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_schema())
        )
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _described(name: str | None, kind: str, _parents: object) -> bool:
    """Whether metadata describes it: not the search index's trigram tables and index, which
    gateway.store.search_ddl makes."""
    if kind == "table":
        return name not in search_ddl.EXTRA_TABLES
    return not (kind == "index" and name in search_ddl.TRGM_INDEXES)


def differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": _described})
        return list(compare_metadata(context, metadata))


def fill(engine: Engine) -> None:
    """A message with an event and an open deadline, and two audit entries, through the APIs."""
    ledger = Ledger(engine, FakeClock(START))
    with writing(engine) as tx:
        message = ledger.record_in(tx, RECEIVED, "spooled")
        ledger.event_in(tx, message, "delivered", "desk sirene")
        ledger.open_deadline_in(
            tx, message, kind="reply", owed_by="desk", due=START + timedelta(hours=12)
        )
    log = AuditLog(engine, FakeClock(START))
    log.append("accepted", partner="NO-SIRENE", form="G", reference=RECEIVED.reference)
    log.append("delivered", partner="NO-SIRENE", reference=RECEIVED.reference)


def contents(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """The rows of the core tables, in the columns both the database and ledger.py have (an
    older revision lacks some of ledger.py's, a newer one may add its own)."""
    found = inspect(engine)
    with engine.connect() as connection:
        return {
            table.name: [
                tuple(row)
                for row in connection.execute(
                    select(
                        *(
                            table.c[column["name"]]
                            for column in found.get_columns(table.name)
                            if column["name"] in table.c
                        )
                    ).order_by(*table.primary_key)
                )
            ]
            for table in (messages, events, deadlines, audit)
        }


def kept(engine: Engine, before: dict[str, list[tuple[object, ...]]]) -> bool:
    """Whether the tables still hold the rows of ``before`` in the columns they had then (the
    columns a revision added since come last, and are left out)."""
    after = contents(engine)
    return all(
        [row[: len(old)] for row, old in zip(after[name], rows, strict=True)] == rows
        for name, rows in before.items()
    ) and all(len(after[name]) == len(rows) for name, rows in before.items())


def versions_with_next_revision(tmp_path: Path) -> Path:
    """The package's migrations copied, plus a next revision: what the next release will carry."""
    folder = tmp_path / "migrations"
    shutil.copytree(schema.SCRIPTS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / f"{NEXT}_note.py").write_text(
        NEXT_REVISION.replace("{head}", schema.head())
    )
    return folder


def versions_up_to(tmp_path: Path, last: str) -> Path:
    """The package's migrations as an earlier release carried them: up to revision ``last``."""
    folder = tmp_path / f"migrations-{last}"
    shutil.copytree(schema.SCRIPTS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    for revision in (folder / "versions").glob("0*.py"):
        if revision.name[:4] > last:
            revision.unlink()
    return folder


def filled_at(engine: Engine, tmp_path: Path, revision: str) -> Ledger:
    """The ledger of a release that stopped at ``revision``, holding what ``fill`` writes."""
    assert schema.upgrade(engine, versions_up_to(tmp_path, revision)).after == revision
    fill(engine)
    return Ledger(engine, FakeClock(START))


def upgraded(
    engine: Engine,
    before: dict[str, list[tuple[object, ...]]],
    revision: str,
    to: Path | None = None,
) -> str:
    """Upgrade a ledger at ``revision`` (to head, or to the last of the migrations ``to``): it
    moves from there, keeps the rows of ``before`` and, at head, has ledger.py's schema.
    Returns the revision reached."""
    done = schema.upgrade(engine) if to is None else schema.upgrade(engine, to)
    assert done.before.current == revision
    assert kept(engine, before)
    if to is None:
        assert done.after == schema.head()
        assert differences(engine) == []
    return done.after


def test_the_migrations_make_exactly_the_schema_of_ledger_py(empty_engine: Engine) -> None:
    """The meta-test: a table, column, index or constraint changed in ledger.py without a
    migration makes this fail."""
    done = schema.upgrade(empty_engine)
    assert (done.before.current, done.after, done.stamped) == (None, schema.head(), False)
    assert done.before.empty
    assert differences(empty_engine) == []
    tables = set(inspect(empty_engine).get_table_names())
    assert tables - search_ddl.EXTRA_TABLES == {*metadata.tables, "alembic_version"}
    schema.require_current(empty_engine)


def test_the_meta_test_sees_a_table_of_metadata_without_a_migration(
    empty_engine: Engine,
) -> None:
    schema.upgrade(empty_engine)
    with empty_engine.begin() as connection:
        connection.execute(text("DROP TABLE quarantine_notices"))
    assert any(diff[0] == "add_table" for diff in differences(empty_engine))  # type: ignore[index]


def test_a_ledger_made_before_migrations_is_stamped_and_keeps_its_data(
    empty_engine: Engine,
) -> None:
    make_pre_migration_ledger(empty_engine)  # what every command did before migrations
    fill(empty_engine)
    before = contents(empty_engine)
    found = schema.state(empty_engine)
    assert (found.current, found.pre_migration, found.upgrade_due) == (None, True, True)
    with pytest.raises(LedgerOutdated, match="made before schema migrations"):
        schema.require_current(empty_engine)

    done = schema.upgrade(empty_engine)

    assert done.stamped
    assert done.after == schema.head()
    assert kept(empty_engine, before)
    assert all(before.values())
    assert differences(empty_engine) == []
    schema.require_current(empty_engine)
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_an_upgrade_of_a_current_ledger_changes_nothing(empty_engine: Engine) -> None:
    schema.upgrade(empty_engine)
    fill(empty_engine)
    before = contents(empty_engine)
    again = schema.upgrade(empty_engine)
    assert (again.before.current, again.after, again.stamped) == (schema.head(),) * 2 + (False,)
    assert contents(empty_engine) == before


def test_a_next_revision_adds_a_column_to_a_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    schema.upgrade(empty_engine)
    fill(empty_engine)
    before = contents(empty_engine)
    scripts = versions_with_next_revision(tmp_path)
    head = schema.head()
    assert schema.head(scripts) == NEXT
    with pytest.raises(LedgerOutdated) as refused:
        schema.require_current(empty_engine, scripts)
    assert refused.value.upgradable
    assert f"is at revision {head}, this gateway needs {NEXT}" in refused.value.line("gw.toml")
    assert refused.value.line("gw.toml").endswith("run `gateway -c gw.toml db upgrade`")

    done = schema.upgrade(empty_engine, scripts)

    assert (done.before.current, done.after) == (head, NEXT)
    schema.require_current(empty_engine, scripts)
    with empty_engine.connect() as connection:
        notes = connection.execute(text("SELECT reference, note FROM messages")).all()
    assert [tuple(row) for row in notes] == [(RECEIVED.reference, "none")]
    assert kept(empty_engine, before)  # the tables as ledger.py knows them: unchanged
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_revision_0002_adds_the_users_tables_to_a_0001_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    first = schema.upgrade(empty_engine, versions_up_to(tmp_path, "0001"))
    assert first.after == "0001"
    fill(empty_engine)
    before = contents(empty_engine)
    assert "users" not in inspect(empty_engine).get_table_names()
    with pytest.raises(
        LedgerOutdated, match=f"is at revision 0001, this gateway needs {schema.head()}"
    ):
        schema.require_current(empty_engine)

    assert upgraded(empty_engine, before, "0001", versions_up_to(tmp_path, "0002")) == "0002"
    assert {"users", "api_keys", "sessions"} <= set(inspect(empty_engine).get_table_names())
    accounts = Ledger(empty_engine, FakeClock(START))
    with accounts.transaction() as tx:
        user = users.insert_user(
            tx, name="ana", roles="handler", desks="sirene", password_hash="x", now=START
        )
        users.insert_session(tx, "a" * 64, user, now=START, expires_at=START + timedelta(hours=1))
    with accounts.reading() as tx:
        found = users.user_by_name(tx, "ana")
    assert found is not None
    assert (found.roles, found.desks, found.failed_logins, found.disabled) == (
        "handler",
        "sirene",
        0,
        False,
    )
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_revision_0003_adds_the_worklist_index_to_a_0002_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    filled_at(empty_engine, tmp_path, "0002")
    before = contents(empty_engine)
    indexes = {index["name"] for index in inspect(empty_engine).get_indexes("messages")}
    added = {worklist.WORKLIST_INDEX.name, worklist.RECEIVED_INDEX.name}
    assert not added & indexes

    assert upgraded(empty_engine, before, "0002", versions_up_to(tmp_path, "0003")) == "0003"
    indexes = {index["name"] for index in inspect(empty_engine).get_indexes("messages")}
    assert added <= indexes


def test_revision_0004_adds_the_claims_table_to_a_0003_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    filled_at(empty_engine, tmp_path, "0003")
    before = contents(empty_engine)
    assert "claims" not in inspect(empty_engine).get_table_names()

    assert upgraded(empty_engine, before, "0003", versions_up_to(tmp_path, "0004")) == "0004"
    assert "claims" in inspect(empty_engine).get_table_names()
    ledger = Ledger(empty_engine, FakeClock(START))
    with ledger.reading() as tx:
        (item,) = worklist.page(tx, desks={"sirene"})
    assert (item.reference, item.work, item.holder) == (RECEIVED.reference, "new", None)
    with ledger.transaction() as tx:
        assert claims.take_in(tx, item.id, "ana", START)
    with ledger.reading() as tx:
        (item,) = worklist.page(tx, desks={"sirene"})
    assert (item.work, item.holder, item.since) == ("claimed", "ana", START)
    assert contents(empty_engine) == before  # the claim is a row of its own table
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_the_migrations_at_head_make_the_schema_of_ledger_py_from_any_revision(
    empty_engine: Engine, tmp_path: Path
) -> None:
    schema.upgrade(empty_engine, versions_up_to(tmp_path, "0002"))
    fill(empty_engine)
    schema.upgrade(empty_engine)
    assert differences(empty_engine) == []


def test_revision_0006_lets_the_deadlines_of_a_0003_ledger_holding_data_pause(
    empty_engine: Engine, tmp_path: Path
) -> None:
    filled_at(empty_engine, tmp_path, "0003")
    before = contents(empty_engine)
    columns = {column["name"] for column in inspect(empty_engine).get_columns("deadlines")}
    assert not {"paused_at", "paused_seconds"} & columns

    done = schema.upgrade(empty_engine, versions_up_to(tmp_path, "0006"))

    assert (done.before.current, done.after) == ("0003", "0006")
    after = contents(empty_engine)
    assert {name: rows for name, rows in after.items() if name != "deadlines"} == {
        name: rows for name, rows in before.items() if name != "deadlines"
    }
    names = [column["name"] for column in inspect(empty_engine).get_columns("deadlines")]
    [old] = before["deadlines"]
    [new] = after["deadlines"]
    kept = dict(zip(names, new, strict=True))
    assert (kept["paused_at"], kept["paused_seconds"]) == (None, 0)
    assert tuple(value for name, value in kept.items() if not name.startswith("paused")) == old
    # The deadline the ledger held pauses and resumes with the time it had left.
    ledger = Ledger(empty_engine, FakeClock(START))
    [message] = [int(str(row[0])) for row in after["messages"]]
    with ledger.transaction() as tx:
        paused = deadline_rows.pause_in(tx, message, "reply", START + timedelta(hours=2))
        assert paused is not None and paused.left == timedelta(hours=10)
        resumed = deadline_rows.resume_in(tx, message, "reply", START + timedelta(hours=5))
        assert resumed is not None and resumed.due == START + timedelta(hours=15)


def test_revision_0005_adds_the_idempotency_keys_to_a_0003_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    filled_at(empty_engine, tmp_path, "0003")
    before = contents(empty_engine)
    assert "idempotency_keys" not in inspect(empty_engine).get_table_names()

    assert upgraded(empty_engine, before, "0003", versions_up_to(tmp_path, "0005")) == "0005"
    ledger = Ledger(empty_engine, FakeClock(START))
    with empty_engine.connect() as connection:  # the columns of 0005 (not the alert article)
        [message] = connection.execute(select(messages.c.id)).scalars().all()
    with ledger.transaction() as tx:
        idempotency.store_in(
            tx,
            owner="key:cms",
            key="k-1",
            body_sha256="c" * 64,
            message_id=message,
            answer='{"id": 1}',
            now=START,
        )
    with ledger.transaction() as tx, pytest.raises(idempotency.KeyTaken):
        idempotency.store_in(
            tx,
            owner="key:cms",
            key="k-1",
            body_sha256="d" * 64,
            message_id=message,
            answer="{}",
            now=START,
        )
    with ledger.reading() as tx:
        found = idempotency.stored(tx, "key:cms", "k-1")
        other = idempotency.stored(tx, "key:other", "k-1")
    assert found is not None and other is None
    assert (found.body_sha256, found.message_id, found.created_at) == ("c" * 64, message, START)
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_revision_0007_adds_the_drafts_table_to_a_0006_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    filled_at(empty_engine, tmp_path, "0006")
    before = contents(empty_engine)
    assert "drafts" not in inspect(empty_engine).get_table_names()

    assert upgraded(empty_engine, before, "0006", versions_up_to(tmp_path, "0007")) == "0007"
    assert "drafts" in inspect(empty_engine).get_table_names()
    ledger = Ledger(empty_engine, FakeClock(START))
    with empty_engine.connect() as connection:  # the columns of 0007 (not the alert article)
        [message] = connection.execute(select(messages.c.id)).scalars().all()
    with ledger.transaction() as tx:
        kept = drafts.save(
            tx,
            draft_id=None,
            user_name="ana",
            desk="sirene",
            form="M",
            partner="NO-SIRENE",
            reply_to=message,
            values={"Information": "Text é"},
            now=START,
        )
    with ledger.reading() as tx:
        found = drafts.get(tx, kept, "ana")
        other = drafts.get(tx, kept, "ben")
    assert found is not None and other is None
    assert (found.reply_to, found.values, found.created_at) == (
        message,
        {"Information": "Text é"},
        START,
    )
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_revision_0008_adds_the_search_index_to_a_0007_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    filled_at(empty_engine, tmp_path, "0007")
    before = contents(empty_engine)
    assert "search_entries" not in inspect(empty_engine).get_table_names()

    assert upgraded(empty_engine, before, "0007", versions_up_to(tmp_path, "0008")) == "0008"
    assert "search_entries" in inspect(empty_engine).get_table_names()
    schema.upgrade(empty_engine)  # the later revisions, for the ledger's queries below
    assert differences(empty_engine) == []
    ledger = Ledger(empty_engine, FakeClock(START))
    message = ledger.by_reference(RECEIVED.reference)[0].id
    where = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
    with ledger.transaction() as tx:
        written = index.write_in(
            tx, where, [Entity("person", "name", "Jürgen MÜLLER", "1970-01-01", "DE")], START
        )
    assert written == 1
    with ledger.reading() as tx:
        typo = matching.search(tx, matching.Query("person", "Jurgen Mulller"), desks=None)
        variant = matching.search(tx, matching.Query("person", "Mueller Juergen"), desks=None)
    assert typo.fuzzy_index  # FTS5 on SQLite; the parts' trigram table on PostgreSQL
    assert [hit.candidate.row.shown for hit in typo.hits] == ["Jürgen MÜLLER"]
    assert [hit.candidate.where for hit in variant.hits] == [where]
    with ledger.transaction() as tx:
        assert search_rows.delete_of_message_in(tx, message) == 1
    with ledger.reading() as tx:
        gone = matching.search(tx, matching.Query("person", "Jurgen Muller"), desks=None)
    assert gone.hits == ()
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_a_ledger_at_a_revision_this_gateway_does_not_know_is_refused(
    empty_engine: Engine, tmp_path: Path
) -> None:
    schema.upgrade(empty_engine, versions_with_next_revision(tmp_path))
    found = schema.state(empty_engine)
    assert (found.current, found.known) == (NEXT, False)
    for attempt in (schema.require_current, schema.upgrade):
        with pytest.raises(LedgerOutdated, match=f"{NEXT}, which this gateway does not know") as no:
            attempt(empty_engine)
        assert not no.value.upgradable
        assert "db upgrade" not in no.value.line("gw.toml")
    assert schema.state(empty_engine).current == NEXT


def test_an_empty_ledger_is_refused_and_names_the_upgrade(empty_engine: Engine) -> None:
    with pytest.raises(
        LedgerOutdated, match=f"has no tables yet, this gateway needs {schema.head()}"
    ) as no:
        schema.require_current(empty_engine)
    assert no.value.line(None).endswith(": run `gateway db upgrade`")
    assert inspect(empty_engine).get_table_names() == []  # the check made nothing


def test_a_pre_migration_ledger_lacking_tables_is_not_stamped(empty_engine: Engine) -> None:
    make_pre_migration_ledger(empty_engine)
    with empty_engine.begin() as connection:
        connection.execute(text("DROP TABLE refusals"))
    with pytest.raises(LedgerOutdated, match="lacks refusals") as no:
        schema.upgrade(empty_engine)
    assert not no.value.upgradable
    assert "alembic_version" not in inspect(empty_engine).get_table_names()


def test_the_refusal_never_shows_the_password_of_the_url(empty_engine: Engine) -> None:
    if empty_engine.dialect.name != "postgresql":
        pytest.skip("a SQLite URL holds no password")
    url = empty_engine.url.set(password="s3cret-word")
    with_password = make_engine(url.render_as_string(hide_password=False))
    try:
        with_password.connect().close()
    except Exception:  # a server that checks passwords: the URL above is all that can be shown
        pytest.skip("the test server checks passwords")
    try:
        with pytest.raises(LedgerOutdated) as no:
            schema.require_current(with_password)
    finally:
        with_password.dispose()
    assert "s3cret-word" not in no.value.line("gw.toml")
    assert "***" in no.value.detail


def test_revision_0009_adds_the_alert_article_and_the_report_indexes_to_a_0008_ledger(
    empty_engine: Engine, tmp_path: Path
) -> None:
    filled_at(empty_engine, tmp_path, "0008")
    before = contents(empty_engine)
    assert "alert_article" not in {c["name"] for c in inspect(empty_engine).get_columns("messages")}

    upgraded(empty_engine, before, "0008")
    indexes = {
        index["name"]
        for table in ("messages", "events", "deadlines")
        for index in inspect(empty_engine).get_indexes(table)
    }
    assert set(REPORT_INDEXES) <= indexes
    ledger = Ledger(empty_engine, FakeClock(START))
    with ledger.reading() as tx:
        [old] = ledger.by_reference(RECEIVED.reference)
    assert old.alert_article is None  # the row kept: no article known for it
    with ledger.transaction() as tx:
        new = ledger.record_in(
            tx, replace(RECEIVED, reference="NO-2026-000124", alert_article="26"), "spooled"
        )
    assert ledger.get(new).alert_article == "26"
    scope = Scope(START - timedelta(days=1), START + timedelta(days=1), START)
    with ledger.reading() as tx:
        assert reportfigures.gather(tx, scope).hits == [
            ("inbound", "26", 1),
            ("inbound", "none", 1),
        ]
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_revision_0010_adds_the_cases_to_a_0009_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    filled_at(empty_engine, tmp_path, "0009")
    before = contents(empty_engine)
    assert "cases" not in inspect(empty_engine).get_table_names()

    upgraded(empty_engine, before, "0009")
    clock = FakeClock(START)
    ledger = Ledger(empty_engine, clock)
    [old] = ledger.by_reference(RECEIVED.reference)
    with ledger.transaction() as tx:
        assert case_rows.case_of_message(tx, old.id) is None  # in no case until regrouped
        reply = ledger.record_in(
            tx, replace(RECEIVED, reference="NO-2026-000124", in_reply_to=old.reference), "x"
        )
    assert Cases(ledger, AuditLog(empty_engine, clock)).regroup() == 1
    with ledger.reading() as tx:
        assert case_rows.case_of_message(tx, old.id) == case_rows.case_of_message(tx, reply)
    assert AuditLog(empty_engine, clock).check(None).intact


def test_revision_0011_adds_the_shredding_stub_to_a_0010_ledger(
    empty_engine: Engine, tmp_path: Path
) -> None:
    ledger = filled_at(empty_engine, tmp_path, "0010")
    with empty_engine.connect() as connection:  # the columns of 0010 only
        old_id = connection.execute(select(messages.c.id)).scalar_one()
    with ledger.transaction() as tx:  # purged by the retention of that time
        ledger.event_in(tx, old_id, retention_rows.PURGED, "kept P30D: 1 spooled item(s)")
    before = contents(empty_engine)

    upgraded(empty_engine, before, "0010")
    assert ledger.get(old_id).shredded_at is None
    # A message purged before is due again: its shredding finds what that purge left.
    rules = (RetentionRule(keep=timedelta(days=30)),)
    later = START + timedelta(days=31)
    with ledger.reading() as tx:
        assert [row.id for row in retention_rows.past_retention(tx, rules, later, limit=10)] == [
            old_id
        ]
    copy = shred_rows.Copy("desk", "sirene cur/1.NO-2026-000123:2,S", "e" * 64, 9)
    with ledger.transaction() as tx:
        shred_rows.record_in(tx, old_id, [copy], later)
        shred_rows.record_in(tx, old_id, [copy], later)  # once more, as a run done again
        assert shred_rows.mark_in(tx, old_id, later)
        assert not shred_rows.mark_in(tx, old_id, later)
    with ledger.reading() as tx:
        assert shred_rows.copies_of(tx, old_id) == [copy]
        assert retention_rows.past_retention(tx, rules, later, limit=10) == []
    assert ledger.get(old_id).shredded_at == later
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_revision_0012_adds_the_alert_register_to_a_0011_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    """The register's alerts come from what a ledger already holds: after the upgrade an alert
    a form named before it is listed (no mark of its own), and marks can be kept."""
    ledger = filled_at(empty_engine, tmp_path, "0011")
    with ledger.transaction() as tx:
        hit = ledger.record_in(
            tx, replace(RECEIVED, reference="NO-2026-000124", alert_article="26"), "spooled"
        )
        where = Where(hit, "inbound", "NO-SIRENE", "sirene", "G")
        alert = Entity("reference", "sis-alert", "RO0000000000123456", element="AlertRef")
        index.write_in(tx, where, [alert], START)
    before = contents(empty_engine)
    assert "alert_register" not in inspect(empty_engine).get_table_names()

    upgraded(empty_engine, before, "0011")
    with ledger.reading() as tx:
        [found] = alert_rows.exchanges(tx)
        assert alert_rows.marks(tx) == {}
    assert (found.shown, found.message_id, found.article) == ("RO0000000000123456", hit, "26")
    with ledger.transaction() as tx:
        alert_rows.set_status_in(
            tx, found.alert, found.register, status="deleted", told_by=hit, by="sue", at=START
        )
    with ledger.reading() as tx:
        assert alert_rows.marks(tx)[found.alert].status == "deleted"


def test_revision_0014_adds_the_crosscheck_hits_to_a_0012_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    ledger = filled_at(empty_engine, tmp_path, "0012")
    [old] = ledger.by_reference(RECEIVED.reference)
    where = Where(old.id, "inbound", "NO-SIRENE", "sirene", "G")
    passport = Entity("document", "passport", "AB 123-456", None, "RO")
    person = Entity("person", "name", "Jan NOWAK", "1980-01-01", "PL")
    with ledger.transaction() as tx:
        index.write_in(tx, where, [passport, person], START)
    before = contents(empty_engine)
    assert "crosscheck_hits" not in inspect(empty_engine).get_table_names()

    upgraded(empty_engine, before, "0012")
    indexes = {index["name"] for index in inspect(empty_engine).get_indexes("search_entries")}
    assert "ix_search_entries_kind_key_born" in indexes
    assert "ix_search_entries_kind_key" not in indexes
    with ledger.transaction() as tx:
        new = ledger.record_in(tx, replace(RECEIVED, reference="NO-2026-000124"), "spooled")
        # The same passport written otherwise; the same person spelled otherwise.
        same = [
            Entity("document", "passport", "ab123456", None, "RO"),
            Entity("person", "name", "Jan Novák", "1980-01-01", "PL"),
        ]
        index.write_in(tx, replace(where, message_id=new), same, START)
    with ledger.reading() as tx:
        hits = crosscheck.check(tx, new)
        assert crosscheck.check(tx, old.id) == []  # nothing earlier than the first
    assert [(hit.earlier_id, hit.kind, hit.shown) for hit in hits] == [
        (old.id, "document", "AB 123-456"),
        (old.id, "person", "Jan NOWAK"),
    ]
    with ledger.transaction() as tx:
        crosscheck_rows.add_in(tx, [(new, hits)], START)
    with ledger.reading() as tx:
        assert crosscheck_rows.of_message(tx, new) == hits
    with ledger.transaction() as tx:  # the earlier message's retention ended
        assert crosscheck_rows.delete_of_message_in(tx, old.id) == 2
    with ledger.reading() as tx:
        assert crosscheck_rows.of_message(tx, new) == []
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_revision_0015_adds_the_bodies_nodes_and_leases_to_a_0014_ledger_holding_data(
    empty_engine: Engine, tmp_path: Path
) -> None:
    filled_at(empty_engine, tmp_path, "0014")
    before = contents(empty_engine)
    assert "message_bodies" not in inspect(empty_engine).get_table_names()

    upgraded(empty_engine, before, "0014")
    assert {"message_bodies", "nodes", "leases"} <= set(inspect(empty_engine).get_table_names())
    ledger = Ledger(empty_engine, FakeClock(START))
    [old] = ledger.by_reference(RECEIVED.reference)
    with ledger.transaction() as tx:  # a body stored for a message the ledger held before
        bodies.add_in(tx, bodies.body_rows([old.id], [bodies.NewBody(b"raw" + b"entity", 3)]))
    with ledger.reading() as tx:
        assert bodies.read_rows_in(tx, [old.id]) == {old.id: bodies.Spooled(b"raw", b"entity")}
    leases.register(ledger, "node-a", "host-a", 1, START)
    assert [node.name for node in leases.listing(ledger)] == ["node-a"]
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def test_revision_0016_fills_the_case_references_of_a_0015_ledger_holding_cases(
    empty_engine: Engine, tmp_path: Path
) -> None:
    """The grouping's look-up table is filled from the index and the membership, and the
    grouping reads it: a message joins the open case of its reference, not a closed one, and
    gathers the messages in no case."""
    ledger = filled_at(empty_engine, tmp_path, "0015")

    def reference(role: str, key: str) -> IndexRow:
        return IndexRow("reference", role, key, key, key, None, None)

    held: dict[str, int] = {}
    with writing(empty_engine) as tx:
        for name, partner, form, refs in (
            (
                "open",
                "NO-SIRENE",
                "G",
                [reference("sis-alert", "A"), reference("national-case", "N")],
            ),
            ("closed", "FR-SIRENE", "G", [reference("sis-alert", "B")]),
            ("none", "DE-SIRENE", "G", [reference("sis-alert", "C"), reference("warrant", "W")]),
            ("receipt", "DE-SIRENE", "ACK", [reference("sis-alert", "D")]),
        ):
            new = replace(RECEIVED, partner=partner, form=form, reference=f"X-{name}")
            held[name] = ledger.record_in(tx, new, "spooled")
            where = Where(held[name], "inbound", partner, "sirene", form)
            search_rows.add_in(tx, where, refs, START)
        cases_of = {}
        for name in ("open", "closed"):
            cases_of[name] = case_rows.open_in(
                tx, desk="sirene", title=name, actor="gateway", reason="r", now=START
            )
            tx.connection.execute(
                case_members.insert().values(
                    message_id=held[name],
                    case_id=cases_of[name],
                    how="by-hand",
                    by_user="ana",
                    at=START,
                )
            )
        tx.connection.execute(
            cases.update().where(cases.c.id == cases_of["closed"]).values(status="closed")
        )
    before = contents(empty_engine)

    upgraded(empty_engine, before, "0015")
    with empty_engine.connect() as connection:
        rows = set(connection.execute(select(case_references)).all())
    assert rows == {
        (held["open"], "sis-alert", "A", "", "open", cases_of["open"]),
        (held["open"], "national-case", "N", "NO-SIRENE", "open", cases_of["open"]),
        (held["closed"], "sis-alert", "B", "", "closed", cases_of["closed"]),
        (held["none"], "sis-alert", "C", "", "none", None),
    }
    group = GroupCommit(ledger, AuditLog(empty_engine, FakeClock(START)), FakeClock(START))

    def take(number: int, partner: str, *refs: IndexRow) -> int | None:
        new = replace(RECEIVED, partner=partner, reference=f"Y-{number}", spool_key=f"y{number}")
        audit_fields = {"partner": partner, "form": "G", "reference": new.reference}
        message_id = group.commit(Received(new, "spooled", audit_fields, index=refs))
        with ledger.reading() as tx:
            return case_rows.case_of_message(tx, message_id)

    assert take(1, "SE-SIRENE", reference("sis-alert", "A")) == cases_of["open"]
    assert take(2, "SE-SIRENE", reference("sis-alert", "B")) is None  # only open cases gather
    assert take(3, "FR-SIRENE", reference("national-case", "N")) is None  # another partner's
    assert take(4, "NO-SIRENE", reference("national-case", "N")) == cases_of["open"]
    gathered = take(5, "SE-SIRENE", reference("sis-alert", "C"))
    assert gathered not in (None, cases_of["open"], cases_of["closed"])
    with ledger.reading() as tx:
        assert case_rows.case_of_message(tx, held["none"]) == gathered
    assert take(6, "SE-SIRENE", reference("sis-alert", "D")) is None  # a receipt groups nothing


def test_revision_0017_gathers_hits_per_case_on_a_0016_ledger_holding_hits(
    empty_engine: Engine, tmp_path: Path
) -> None:
    ledger = filled_at(empty_engine, tmp_path, "0016")
    [old] = ledger.by_reference(RECEIVED.reference)
    with ledger.transaction() as tx:
        new = ledger.record_in(tx, replace(RECEIVED, reference="NO-2026-000124"), "spooled")
    with empty_engine.begin() as connection:  # hits as revision 0014 recorded them
        for kind, shown in (("document", "AB 123-456"), ("person", "Jan NOWAK")):
            connection.execute(
                text(
                    "INSERT INTO crosscheck_hits (message_id, earlier_id, kind, role, shown,"
                    " born, earlier_direction, earlier_partner, earlier_desk, earlier_form,"
                    " earlier_at, created_at) VALUES (:new, :old, :kind, 'passport', :shown,"
                    " NULL, 'inbound', 'NO-SIRENE', 'sirene', 'G', :at, :at)"
                ),
                {"new": new, "old": old.id, "kind": kind, "shown": shown, "at": START},
            )
    before = contents(empty_engine)

    upgraded(empty_engine, before, "0016")
    with ledger.reading() as tx:
        hits = crosscheck_rows.of_message(tx, new)
    assert [(hit.kind, hit.shown, hit.earlier_id, hit.messages) for hit in hits] == [
        ("document", "AB 123-456", old.id, 1),
        ("person", "Jan NOWAK", old.id, 1),
    ]
    assert [(hit.earlier_first, hit.earlier_case_id) for hit in hits] == [(old.id, None)] * 2
    assert crosscheck.describe(hits[0]).endswith(f"ledger {old.id}")
    with ledger.transaction() as tx:  # the earlier message's retention ended
        assert crosscheck_rows.delete_of_message_in(tx, old.id) == 2
    with ledger.reading() as tx:
        assert crosscheck_rows.of_message(tx, new) == []
    assert AuditLog(empty_engine, FakeClock(START)).check(None).intact


def part_grams(engine: Engine) -> set[tuple[str, str]]:
    """(trigram, part) of PostgreSQL's trigram table, whose rows carry their part's text and
    consonants as search_parts holds them (asserted)."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                f"SELECT g.gram, p.part, g.part, p.sound, g.sound"  # noqa: S608
                f" FROM {search_ddl.PARTS_GRAMS} g JOIN search_parts p ON p.id = g.part_id"
            )
        ).all()
    assert [(row[1], row[3]) for row in rows] == [(row[2], row[4]) for row in rows]
    return {(row[0], row[1]) for row in rows}


def parts_read_from_the_index_alone(engine: Engine) -> bool:
    """Whether the parts of trigrams are read by an index-only scan of the trigram table's
    B-tree, with no look-up into search_parts (the planner kept off the scans a small table
    invites). How many heap fetches it makes depends on what VACUUM could mark all-visible,
    which other transactions on a shared server hold back: not asserted."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM {search_ddl.PARTS_GRAMS}")
        connection.exec_driver_sql("SET enable_seqscan = off")
        connection.exec_driver_sql("SET enable_bitmapscan = off")
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(
            f"EXPLAIN (ANALYZE, COSTS OFF) {search_rows._PG_GRAMMED}",
            {"grams": ["mul", "ude"], "least": 1, "most": 20},
        )
        plan = "\n".join(str(row[0]) for row in cursor.fetchall())
    return (
        f"Index Only Scan using {search_ddl.PARTS_GRAMS}_pkey" in plan
        and "search_parts" not in plan
    )


def test_revision_0018_fills_the_trigram_table_of_a_0017_ledger_holding_index_entries(
    empty_engine: Engine, tmp_path: Path
) -> None:
    if empty_engine.dialect.name == "sqlite":
        pytest.skip("SQLite's trigrams are its FTS5 table: revision 0018 changes nothing there")
    ledger = filled_at(empty_engine, tmp_path, "0017")
    message = ledger.by_reference(RECEIVED.reference)[0].id
    where = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
    held = [
        Entity("person", "name", "Jürgen MÜLLER", "1970-01-01", "DE"),
        Entity("person", "name", "Anna MÜLLER-LÜDENSCHEIDT", "1981-02-03", "DE"),
        Entity("person", "name", "Li WU", None, "CN"),
    ]
    with ledger.transaction() as tx:
        index.write_in(tx, where, held, START)
    with empty_engine.begin() as connection:  # as revision 0015's code left it: a GiST index
        search_ddl.drop_part_grams(connection)
    assert search_ddl.TRGM_INDEX in {
        found["name"] for found in inspect(empty_engine).get_indexes("search_parts")
    }
    before = contents(empty_engine)

    upgraded(empty_engine, before, "0017")
    assert search_ddl.TRGM_INDEX not in {
        found["name"] for found in inspect(empty_engine).get_indexes("search_parts")
    }
    assert parts_read_from_the_index_alone(empty_engine)
    with empty_engine.connect() as connection:
        parts = [row[0] for row in connection.execute(text("SELECT part FROM search_parts"))]
    assert {"muler", "ludensheit", "vu"} <= set(parts)  # skeletons; "vu" has no trigram
    expected = {(part[at : at + 3], part) for part in parts for at in range(len(part) - 2)}
    assert part_grams(empty_engine) == expected
    with ledger.reading() as tx:
        typo = matching.search(tx, matching.Query("person", "Jurgen Mulller"), desks=None)
        long = matching.search(tx, matching.Query("person", "Ana Mueller-Ludenscheid"), desks=None)
    assert [hit.candidate.row.shown for hit in typo.hits] == ["Jürgen MÜLLER"]
    assert long.hits[0].candidate.row.shown == "Anna MÜLLER-LÜDENSCHEIDT"
    with ledger.transaction() as tx:  # the parts only this message held go, with their rows
        assert search_rows.delete_of_message_in(tx, message) == 3
    assert part_grams(empty_engine) == set()


def test_revision_0019_records_what_the_hits_of_a_0018_ledger_gathered(
    empty_engine: Engine, tmp_path: Path
) -> None:
    """The hits a ledger holds get the messages of their case that hold their key, from their
    first to their latest; a purge of one of them then counts its hit down by that record."""
    ledger = filled_at(empty_engine, tmp_path, "0018")
    passport = Entity("document", "passport", "AB 123-456", None, "RO")
    recorded = []
    with ledger.transaction() as tx:
        for number in range(1, 5):
            row = replace(RECEIVED, reference=f"NO-2026-{number:06d}", spool_key=f"k{number}")
            message = ledger.record_in(tx, row, "spooled")
            where = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
            index.write_in(tx, where, [passport], START)
            recorded.append(message)
        first, alone, latest, arriving = recorded
        case_id = case_rows.open_in(
            tx, desk="sirene", title="G", actor="sam", reason="test", now=START
        )
        case_rows.link_in(
            tx, case_id, [first, latest], how="by-hand", by="sam", reason="", now=START
        )
    with empty_engine.begin() as connection:  # a hit as revision 0017 recorded it
        connection.execute(
            text(
                "INSERT INTO crosscheck_hits (message_id, earlier_id, kind, role, shown, born,"
                " earlier_direction, earlier_partner, earlier_desk, earlier_form, earlier_at,"
                " created_at, messages, earlier_first, earlier_case_id, key)"
                " SELECT :arriving, message_id, kind, role, shown, born, direction, partner,"
                " desk, form, created_at, created_at, 2, :first, :case_id, key"
                " FROM search_entries WHERE message_id = :latest"
            ),
            {"arriving": arriving, "first": first, "latest": latest, "case_id": case_id},
        )
    before = contents(empty_engine)

    upgraded(empty_engine, before, "0018")

    with empty_engine.connect() as connection:
        gathered = connection.execute(
            text("SELECT message_id FROM crosscheck_gathered ORDER BY message_id")
        ).all()
    assert [row[0] for row in gathered] == [first, latest]
    with ledger.transaction() as tx:
        assert crosscheck_rows.delete_of_message_in(tx, alone) == 0
        assert crosscheck_rows.delete_of_message_in(tx, first) == 0
    with ledger.reading() as tx:
        [hit] = crosscheck_rows.of_message(tx, arriving)
    assert (hit.earlier_id, hit.messages) == (latest, 1)
    with ledger.transaction() as tx:
        assert crosscheck_rows.delete_of_message_in(tx, latest) == 1
    with empty_engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM crosscheck_gathered")).scalar() == 0


def gram_counts(engine: Engine) -> dict[str, int]:
    """SQLite's table of how many parts hold each trigram."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT gram, parts FROM {search_ddl.GRAM_COUNTS}")  # noqa: S608
        ).all()
    return {str(row[0]): int(row[1]) for row in rows}


def counted(engine: Engine) -> dict[str, int]:
    """How many parts hold each trigram, counted from the parts held."""
    with engine.connect() as connection:
        parts = [row[0] for row in connection.execute(text("SELECT part FROM search_parts"))]
    found: dict[str, int] = {}
    for part in parts:
        for gram in {part[at : at + 3] for at in range(len(part) - 2)}:
            found[gram] = found.get(gram, 0) + 1
    return found


def test_revision_0020_counts_the_trigrams_of_a_0019_ledger_holding_index_entries(
    empty_engine: Engine, tmp_path: Path
) -> None:
    if empty_engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL counts a trigram's parts in its trigram table: 0020 adds nothing")
    assert schema.upgrade(empty_engine, versions_up_to(tmp_path, "0019")).after == "0019"
    with empty_engine.begin() as connection:  # as revision 0019's code left it: no counts
        search_ddl.drop_gram_counts(connection)
    fill(empty_engine)
    ledger = Ledger(empty_engine, FakeClock(START))
    message = ledger.by_reference(RECEIVED.reference)[0].id
    where = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
    held = [
        Entity("person", "name", "Jürgen MÜLLER", "1970-01-01", "DE"),
        Entity("person", "name", "Anna MÜLLER-LÜDENSCHEIDT", "1981-02-03", "DE"),
        Entity("person", "name", "Banana ANANAS", None, "DE"),  # a trigram twice in a part
        Entity("person", "name", "Li WU", None, "CN"),
    ]
    with ledger.transaction() as tx:
        index.write_in(tx, where, held, START)
    before = contents(empty_engine)

    done = schema.upgrade(empty_engine)

    assert (done.before.current, done.after) == ("0019", schema.head())
    assert contents(empty_engine) == before
    assert differences(empty_engine) == []
    expected = counted(empty_engine)
    assert expected["ana"] == 3  # anna (skeleton ana), banana and ananas: each once
    assert gram_counts(empty_engine) == expected
    with ledger.reading() as tx:
        typo = matching.search(tx, matching.Query("person", "Jurgen Mulller"), desks=None)
    assert [hit.candidate.row.shown for hit in typo.hits] == ["Jürgen MÜLLER"]
    later = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
    with ledger.transaction() as tx:  # kept by the triggers: a new part, then deletes
        index.write_in(tx, later, [Entity("person", "name", "Hanna MULLERSON", None, "DE")], START)
    assert gram_counts(empty_engine) == counted(empty_engine)
    with ledger.transaction() as tx:
        assert search_rows.delete_of_message_in(tx, message) == 5
    assert gram_counts(empty_engine) == {}  # no trigram of a deleted name is left behind


def alert_index_definition(engine: Engine) -> str:
    """How the database itself states ix_search_entries_alerts."""
    statement = (
        "SELECT sql FROM sqlite_master WHERE name = 'ix_search_entries_alerts'"
        if engine.dialect.name == "sqlite"
        else "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_search_entries_alerts'"
        " AND schemaname = current_schema()"
    )
    with engine.connect() as connection:
        return str(connection.exec_driver_sql(statement).scalar_one())


def test_revision_0021_states_the_alert_index_by_role_on_a_0020_ledger_holding_alerts(
    empty_engine: Engine, tmp_path: Path
) -> None:
    """The register's partial index made again on the role alone: the same entries, listed
    the same way, and a predicate that no longer names ``kind``."""
    ledger = filled_at(empty_engine, tmp_path, "0020")
    alert = Entity("reference", "sis-alert", "RO0000000000123456", element="AlertRef")
    notice = Entity("reference", "interpol-notice", "A-1234/5-2026", element="NoticeReference")
    case = Entity("reference", "national-case", "OSLO-2026-1", element="NationalReference")
    with ledger.transaction() as tx:
        message = ledger.by_reference(RECEIVED.reference)[0].id
        where = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
        index.write_in(tx, where, [alert, notice, case], START)
    with ledger.reading() as tx:
        listed = alert_rows.exchanges(tx)
    assert "kind" in alert_index_definition(empty_engine).split("WHERE", 1)[1]
    before = contents(empty_engine)

    upgraded(empty_engine, before, "0020")

    stated = alert_index_definition(empty_engine)
    assert "kind" not in stated.split("WHERE", 1)[1] and "interpol-notice" in stated
    with ledger.reading() as tx:
        assert alert_rows.exchanges(tx) == listed
    assert [exchange.register for exchange in listed] == ["sis-alert", "interpol-notice"]
