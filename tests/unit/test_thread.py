"""A message's thread on SQLite and PostgreSQL: the messages linked by InReplyTo both ways, step
by step, of the same partner only, receipts left out, bounded; and on SQLite every read of it by
an index (never a walk over the partner's messages)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbkit import RECEIVED
from sqlalchemy import Engine, event, text

from gateway.core.clock import FakeClock
from gateway.store import schema, thread
from gateway.store.ledger import Ledger, NewMessage, make_engine, messages
from gateway.store.states import OutboundState

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
OURS = replace(
    RECEIVED,
    direction="outbound",
    form="M",
    state=OutboundState.QUEUED,
    spool_key=None,
)


def record(ledger: Ledger, message: NewMessage) -> int:
    with ledger.transaction() as tx:
        return ledger.record_in(tx, message)


def conversation(ledger: Ledger) -> dict[str, int]:
    """NO's request, our reply, NO's answer to it, our last word; a receipt, RS's message with
    the same Reference and one that answers it, and an unrelated message of NO."""
    return {
        "request": record(ledger, replace(RECEIVED, reference="NO-2026-000001")),
        "reply": record(
            ledger, replace(OURS, reference="RO-2026-000001", in_reply_to="NO-2026-000001")
        ),
        "answer": record(
            ledger,
            replace(
                RECEIVED, reference="NO-2026-000002", in_reply_to="RO-2026-000001", spool_key="k2"
            ),
        ),
        "last": record(
            ledger, replace(OURS, reference="RO-2026-000002", in_reply_to="NO-2026-000002")
        ),
        "receipt": record(
            ledger,
            replace(
                RECEIVED,
                form="ACK",
                reference="NO-2026-000003",
                in_reply_to="RO-2026-000001",
                spool_key="k3",
            ),
        ),
        "other partner": record(
            ledger, replace(RECEIVED, partner="RS-NCB", reference="NO-2026-000001", spool_key="k4")
        ),
        "other reply": record(
            ledger,
            replace(
                OURS, partner="RS-NCB", reference="RO-2026-000003", in_reply_to="NO-2026-000001"
            ),
        ),
        "unrelated": record(ledger, replace(RECEIVED, reference="NO-2026-000009", spool_key="k5")),
    }


def test_the_thread_follows_in_reply_to_both_ways(ledger_engine: Engine) -> None:
    ledger = Ledger(ledger_engine, FakeClock(START))
    ids = conversation(ledger)
    expected = [ids[name] for name in ("request", "reply", "answer", "last")]
    with ledger.reading() as tx:
        for start in ("request", "reply", "answer", "last"):
            found = thread.related(tx, ids[start], leave_out_form="ACK")
            assert [item.id for item in found] == expected, start
        assert [item.id for item in thread.related(tx, ids["unrelated"])] == [ids["unrelated"]]
        with_receipts = thread.related(tx, ids["request"])
        assert ids["receipt"] in {item.id for item in with_receipts}
        rs = thread.related(tx, ids["other partner"], leave_out_form="ACK")
        assert [item.id for item in rs] == [ids["other partner"], ids["other reply"]]
        assert len(thread.related(tx, ids["request"], leave_out_form="ACK", limit=2)) == 2
        assert thread.related(tx, 424242) == []
    first = with_receipts[0]
    assert (first.direction, first.partner, first.form, first.desk) == (
        "inbound",
        "NO-SIRENE",
        "G",
        "sirene",
    )


def test_sqlite_reads_the_thread_by_its_indexes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    schema.upgrade(engine)
    ledger = Ledger(engine, FakeClock(START))
    ids = conversation(ledger)
    # The partner's other messages, answering nothing, as most do: statistics that make the index
    # on (partner, in_reply_to) look poor (bench/console.py's ledger of 100 k made SQLite walk
    # the whole table for the replies before the index was named).
    with engine.begin() as connection:
        connection.execute(
            messages.insert(),
            [
                {
                    **vars(replace(RECEIVED, reference=f"NO-2026-{100 + n:06d}", spool_key=None)),
                    "created_at": START,
                    "updated_at": START,
                }
                for n in range(5_000)
            ],
        )
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    with ledger.reading() as tx:
        thread.related(tx, ids["answer"], leave_out_form="ACK")
    event.remove(engine, "before_cursor_execute", seen)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        plans = [
            " | ".join(row[3] for row in cursor.execute("EXPLAIN QUERY PLAN " + sql, parameters))
            for sql, parameters in statements
            if sql.lstrip().upper().startswith("SELECT")
        ]
    finally:
        raw.close()
        engine.dispose()
    assert len(plans) >= 3
    for plan in plans:
        assert "SCAN" not in plan, plan
