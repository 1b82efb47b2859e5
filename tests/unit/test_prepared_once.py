"""SQLite prepares the search index's statements once per connection: none is prepared again
at each execution because of a partial index's predicate (revision 0021); the alert register's
reads walk an index in their order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dbkit import RECEIVED, sqlite_plan, statements_run
from sqlalchemy import Engine

from gateway.core.clock import FakeClock
from gateway.forms.entities import REFERENCE, Entity
from gateway.search import crosscheck, index, matching
from gateway.store import alert_rows, schema
from gateway.store.ledger import Ledger, make_engine
from gateway.store.search_rows import Where
from gateway.store.unit import Transaction

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
FOUND = [
    Entity("person", "name", "Jan NOWAK", "1980-01-01", "PL"),
    Entity("document", "passport", "AB 123-456", None, "RO"),
    Entity("reference", "sis-alert", "RO0000000000123456", element="AlertRef"),
    Entity("phone", "phone", "+47 22 00 00 00"),
]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    made = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    schema.upgrade(made)
    made.dispose()  # no connection that prepared a statement before the schema's last change
    return made


def filled(engine: Engine, count: int) -> tuple[Ledger, list[int]]:
    ledger = Ledger(engine, FakeClock(START))
    recorded = []
    for number in range(count):
        with ledger.transaction() as tx:
            new = replace(RECEIVED, reference=f"NO-2026-{number:06d}", spool_key=f"k{number}")
            message = ledger.record_in(tx, new, "spooled")
            where = Where(message, "inbound", "NO-SIRENE", "sirene", "G")
            index.write_in(tx, where, FOUND[number % 2 :], START)
        recorded.append(message)
    return ledger, recorded


def prepared_again(tx: Transaction) -> dict[str, int]:
    """The statements of this connection SQLite prepared again since it first prepared them
    (its sqlite_stmt table), by their text."""
    rows = tx.connection.exec_driver_sql("SELECT sql, reprep FROM sqlite_stmt WHERE reprep > 0")
    return {row[0]: row[1] for row in rows}


def test_the_cross_check_search_and_register_statements_are_prepared_once(
    engine: Engine,
) -> None:
    ledger, recorded = filled(engine, 6)
    with ledger.reading() as tx:
        if not tx.connection.exec_driver_sql(
            "SELECT count(*) FROM pragma_module_list WHERE name = 'sqlite_stmt'"
        ).scalar():
            pytest.skip("this SQLite is built without SQLITE_ENABLE_STMTVTAB: no sqlite_stmt")
        # Each statement runs several times with other values bound, as the hand-off and the
        # console run them.
        hits = [crosscheck.check(tx, message) for message in recorded]
        searches = [
            matching.search(tx, matching.Query(kind, value), desks=None)
            for kind, value in [
                ("person", "Jan Nowak"),
                ("person", "Iwan Iwanow"),
                ("document", "AB123456"),
                ("document", "XY999"),
                ("phone", "+47 22 00 00 00"),
                ("phone", "+33 1 00 00 00 00"),
            ]
        ]
        register = [alert_rows.exchanges(tx), alert_rows.exchanges(tx, desks={"sirene"})]
        register += [alert_rows.exchanges(tx, desks={"duty"})]
        again = prepared_again(tx)

    assert hits[0] == [] and all(hits[1:])  # the statements found rows
    assert [len(found.hits) for found in searches] == [3, 0, 6, 0, 6, 0]  # a hit a message
    assert [len(found) for found in register] == [6, 6, 0]
    assert again == {}


def test_the_alert_register_walks_an_index_in_its_order(engine: Engine) -> None:
    """The listing walks the partial index (by id), one alert its own range of (kind, key,
    born, message_id): neither sorts, neither reads every alert's entries."""
    ledger, _ = filled(engine, 4)
    with statements_run(engine, "search_entries") as statements, ledger.reading() as tx:
        assert len(alert_rows.exchanges(tx)) == 4
        alert = index.fold(REFERENCE, FOUND[2].value)[1]
        assert len(alert_rows.exchanges(tx, alert=alert)) == 4
    with ledger.reading() as tx:
        plans = [sqlite_plan(tx.connection, *run) for run in statements]
    listing, one = plans
    assert "USING INDEX ix_search_entries_alerts (kind=?)" in listing, listing
    assert "USING INDEX ix_search_entries_kind_key_born (kind=? AND key=? AND born=?)" in one, one
    assert "TEMP B-TREE" not in listing + one, plans
