"""The worklist's reads on SQLite and PostgreSQL: pages by keyset, desks merged, filters, the
reply deadline; and on SQLite, every page read in index order (no sort of a whole desk)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from dbkit import RECEIVED
from sqlalchemy import Engine, event, text

from gateway.core.clock import FakeClock
from gateway.store import worklist
from gateway.store.ledger import Ledger

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def fill(engine: Engine, count: int) -> Ledger:
    """``count`` received messages, their desks in turn sirene, interpol, duty; forms G then M;
    every third one with a reply deadline."""
    ledger = Ledger(engine, FakeClock(START))
    with ledger.transaction() as tx:
        for n in range(count):
            ledger_id = ledger.record_in(
                tx,
                replace(
                    RECEIVED,
                    reference=f"NO-2026-{n:06d}",
                    spool_key=f"k{n}",
                    desk=("sirene", "interpol", "duty")[n % 3],
                    form="G" if n % 2 == 0 else "M",
                ),
            )
            if n % 3 == 0:
                ledger.open_deadline_in(
                    tx, ledger_id, kind="reply", owed_by="desk", due=START + timedelta(hours=n)
                )
    return ledger


def references(items: list[worklist.WorkItem]) -> list[int]:
    return [int(item.reference[-6:]) for item in items]


def test_pages_by_keyset_merge_desks_and_filter(ledger_engine: Engine) -> None:
    ledger = fill(ledger_engine, 30)
    with ledger.reading() as tx:
        first = worklist.page(tx, desks=None, limit=4)
        after = worklist.page(tx, desks=None, before=first[-1].id, limit=4)
        two = worklist.page(tx, desks={"sirene", "duty"}, limit=5)
        two_next = worklist.page(tx, desks={"sirene", "duty"}, before=two[-1].id, limit=5)
        one = worklist.page(tx, desks={"interpol"}, form="M", limit=50)
        none = worklist.page(tx, desks=frozenset(), limit=50)
        partner = worklist.page(tx, desks=None, partner="RS-NCB", limit=50)
        no_g = worklist.page(tx, desks={"sirene"}, leave_out_form="G", limit=50)
    assert references(first) == [29, 28, 27, 26] and references(after) == [25, 24, 23, 22]
    assert references(two) == [29, 27, 26, 24, 23] and references(two_next) == [21, 20, 18, 17, 15]
    assert references(one) == [25, 19, 13, 7, 1]
    assert none == [] and partner == []
    assert references(no_g) == [27, 21, 15, 9, 3]
    by_ref = {int(item.reference[-6:]): item for item in first + after}
    assert by_ref[27].reply_due == START + timedelta(hours=27) and by_ref[27].reply_state == "open"
    assert by_ref[28].reply_due is None and by_ref[28].reply_state is None
    with ledger.reading() as tx:
        deadline = worklist.reply_deadline(tx, by_ref[27].id)
        assert worklist.reply_deadline(tx, by_ref[28].id) is None
    assert deadline == worklist.ReplyDeadline(START + timedelta(hours=27), "open", "desk")


def test_sqlite_reads_every_page_in_index_order(tmp_path: Any) -> None:
    """The plan of each page's query, as SQLite would run it: an index read in order, never a
    temporary B-tree for the ORDER BY (which would sort the whole desk on every page)."""
    from gateway.store import schema  # noqa: PLC0415
    from gateway.store.ledger import make_engine  # noqa: PLC0415

    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    schema.upgrade(engine)
    ledger = fill(engine, 300)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    with ledger.reading() as tx:
        for desks in (None, {"sirene"}, {"sirene", "duty"}):
            worklist.page(tx, desks=desks, limit=51, leave_out_form="ACK")
            worklist.page(tx, desks=desks, before=200, limit=51, form="G")
            # The time-left filter keeps the walk in index order (the join stays a LEFT JOIN).
            worklist.page(
                tx, desks=desks, limit=51, priority="urgent", due_by=START + timedelta(hours=5)
            )
    event.remove(engine, "before_cursor_execute", record)
    assert len(statements) == 12
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, parameters in statements:
            plan = " | ".join(
                row[3] for row in cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert "TEMP B-TREE" not in plan, plan
            assert any(
                way in plan
                for way in ("ix_messages_desk_id", "ix_messages_direction_id", "PRIMARY KEY")
            ), plan
    finally:
        raw.close()
        engine.dispose()


def test_the_change_token_moves_with_each_write_a_worklist_shows(ledger_engine: Engine) -> None:
    from gateway.store import claims  # noqa: PLC0415
    from gateway.store.audit import AuditLog  # noqa: PLC0415
    from gateway.store.states import InboundState  # noqa: PLC0415

    ledger = Ledger(ledger_engine, FakeClock(START))

    def token() -> str:
        with ledger.reading() as tx:
            return worklist.change_token(tx)

    empty = token()
    assert empty == "0.0"
    fill(ledger_engine, 3)
    recorded = token()
    with ledger.reading() as tx:
        [newest] = worklist.page(tx, desks=None, limit=1)
    ledger_id = newest.id
    assert recorded != empty and token() == recorded  # a read changes nothing
    with ledger.transaction() as tx:
        claims.take_in(tx, ledger_id, "ana", START)
        ledger.event_in(tx, ledger_id, "claimed", "by ana")
    claimed = token()
    assert claimed != recorded
    with ledger.transaction() as tx:
        ledger.set_state_in(tx, ledger_id, InboundState.DELIVERED, "desk sirene")
    moved = token()
    assert moved != claimed
    AuditLog(ledger_engine, FakeClock(START)).append("access.viewed", reason="user=ana")
    assert token() not in (moved, claimed, recorded)
