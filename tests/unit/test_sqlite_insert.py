"""INSERTs said to SQLite's driver write the rows SQLAlchemy's own insert writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, text

from gateway.store import schema
from gateway.store.ledger import deadlines, events, make_engine, messages, new_deadline_row
from gateway.store.sqlite_insert import insert_rows, inserted_ids
from gateway.store.unit import LedgerConflict, writing

AT = datetime(2026, 11, 25, 8, 0, 1, 234567, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    made = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    schema.upgrade(made)
    with writing(made) as tx:
        tx.connection.execute(
            insert(messages),
            [
                {
                    "id": n,
                    "direction": "inbound",
                    "partner": "NO-SIRENE",
                    "channel": "sirene",
                    "form": "G",
                    "reference": f"NO-2026-{n:06d}",
                    "message_id": f"<{n}@no.example>",
                    "priority": "normal",
                    "content_sha256": "a" * 64,
                    "raw_sha256": "b" * 64,
                    "state": "received",
                    "created_at": AT,
                    "updated_at": AT,
                }
                for n in (1, 2)
            ],
        )
    return made


def stored(engine: Engine, table: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        found = connection.execute(text(f"SELECT * FROM {table} ORDER BY id"))  # noqa: S608
        return [tuple(row)[1:] for row in found]  # all but the id


def test_rows_are_stored_as_sqlalchemy_stores_them(engine: Engine) -> None:
    event = {"message_id": 1, "at": AT, "kind": "received", "detail": "spooled as k1"}
    deadline = new_deadline_row(
        1,
        kind="reply",
        owed_by="desk",
        opened_at=AT,
        due=AT + timedelta(days=1),
        next_action_at=AT + timedelta(hours=20),
    )
    with writing(engine) as tx:
        insert_rows(tx, events, [event, {**event, "message_id": 2}])
        insert_rows(tx, deadlines, [deadline])
        tx.connection.execute(insert(events), [event, {**event, "message_id": 2}])
        tx.connection.execute(insert(deadlines), {**deadline, "message_id": 2})
    assert stored(engine, "events")[:2] == stored(engine, "events")[2:]
    ours, theirs = stored(engine, "deadlines")
    assert ours[1:] == theirs[1:]  # all but the message's id


def test_a_default_fills_a_key_the_rows_do_not_name(engine: Engine) -> None:
    with writing(engine) as tx:
        insert_rows(tx, events, [{"message_id": 1, "at": AT, "kind": "received"}])
        tx.connection.execute(insert(events), {"message_id": 1, "at": AT, "kind": "received"})
    first, second = stored(engine, "events")
    assert first == second and first[-1] == ""


def test_rows_with_other_keys_are_refused_and_a_conflict_raises_as_sqlalchemy_would(
    engine: Engine,
) -> None:
    row = {"message_id": 1, "at": AT, "kind": "received", "detail": ""}
    with pytest.raises(ValueError, match="same keys"), writing(engine) as tx:
        insert_rows(tx, events, [row, {"message_id": 1, "at": AT, "kind": "received"}])
    with pytest.raises(ValueError, match="no column"), writing(engine) as tx:
        insert_rows(tx, events, [{**row, "colour": "red"}])
    with pytest.raises(LedgerConflict), writing(engine) as tx:
        insert_rows(tx, events, [{**row, "id": 1}, {**row, "id": 1}])
    assert stored(engine, "events") == []


def message_row(n: int) -> dict[str, object]:
    return {
        "direction": "inbound",
        "partner": "NO-SIRENE",
        "channel": "sirene",
        "form": "G",
        "reference": f"NO-2026-{n:06d}",
        "message_id": f"<{n}@no.example>",
        "priority": "normal",
        "content_sha256": "a" * 64,
        "raw_sha256": "b" * 64,
        "state": "received",
        "created_at": AT,
        "updated_at": AT,
    }


def test_inserted_ids_are_the_rows_ids_in_their_order_stored_as_sqlalchemy_stores_them(
    engine: Engine,
) -> None:
    with writing(engine) as tx:
        ours = inserted_ids(tx, messages, [message_row(n) for n in (3, 4, 5)])
        theirs = [
            int(found)
            for found in tx.connection.execute(
                insert(messages).returning(messages.c.id, sort_by_parameter_order=True),
                [message_row(n) for n in (6, 7, 8)],
            ).scalars()
        ]
        assert inserted_ids(tx, messages, []) == []
    assert ours == [3, 4, 5] and theirs == [6, 7, 8]
    with engine.connect() as connection:
        found = connection.execute(text("SELECT * FROM messages WHERE id > 2 ORDER BY id"))
        rows = [dict(row._mapping) for row in found]
    assert [row["reference"] for row in rows[:3]] == [f"NO-2026-00000{n}" for n in (3, 4, 5)]
    for row in rows:
        del row["id"], row["reference"], row["message_id"]
    assert rows[:3] == rows[3:]


def test_inserted_ids_raise_a_conflict_as_sqlalchemy_would_and_write_nothing(
    engine: Engine,
) -> None:
    with pytest.raises(LedgerConflict), writing(engine) as tx:
        inserted_ids(tx, messages, [{**message_row(3), "id": 9}, {**message_row(4), "id": 9}])
    with pytest.raises(ValueError, match="same keys"), writing(engine) as tx:
        inserted_ids(tx, messages, [message_row(3), {**message_row(4), "id": 10}])
    assert len(stored(engine, "messages")) == 2
