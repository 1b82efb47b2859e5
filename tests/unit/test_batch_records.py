"""The batch forms of the ledger, audit and spool calls that delivery records with: the same
results as the one-at-a-time calls, in fewer statements, system calls and directory syncs."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from gateway.core.clock import FakeClock
from gateway.store import ledger as ledger_module
from gateway.store import lookups
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, MessageHead, NewMessage, deadlines
from gateway.store.spool import Spool
from gateway.store.states import OutboundState
from gateway.store.unit import LedgerConflict, writing

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def new_message(n: int, state: OutboundState = OutboundState.QUEUED) -> NewMessage:
    return NewMessage(
        direction="outbound",
        partner="NO-SIRENE",
        channel="sirene",
        form="G",
        reference=f"RO-2026-{n:06d}",
        in_reply_to="NO-2026-000001" if n == 2 else None,
        message_id=f"<{n}@x>",
        priority="normal",
        content_sha256="c" * 64,
        raw_sha256="d" * 64,
        state=state,
        spool_key=f"form.RO-2026-{n:06d}",
        desk="sirene",
    )


@pytest.fixture
def ledger(ledger_engine: Engine) -> Ledger:
    return Ledger(ledger_engine, FakeClock(START))


def record(ledger: Ledger, *news: NewMessage) -> list[int]:
    with writing(ledger.engine) as tx:
        return [ledger.record_in(tx, new) for new in news]


# ---------------------------------------------------------------------------------- ledger


def test_heads_by_spool_keys(ledger: Ledger) -> None:
    first, second = record(ledger, new_message(1), new_message(2))
    heads = ledger.heads_by_spool_keys(["form.RO-2026-000002", "form.RO-2026-000001", "nope"])
    assert heads == {
        "form.RO-2026-000001": MessageHead.of(ledger.get(first)),
        "form.RO-2026-000002": MessageHead.of(ledger.get(second)),
    }
    assert heads["form.RO-2026-000002"].in_reply_to == "NO-2026-000001"
    assert ledger.heads_by_spool_keys([]) == {}


def test_record_many_is_record_in_for_each(ledger: Ledger) -> None:
    with writing(ledger.engine) as tx:
        rows = ledger.record_many_in(tx, [(new_message(n), f"queued {n}") for n in (3, 1, 2)])
    assert [row.reference for row in rows] == ["RO-2026-000003", "RO-2026-000001", "RO-2026-000002"]
    for row in rows:
        assert ledger.get(row.id) == row, "the rows returned are the rows recorded"
        assert ledger.events_of(row.id) == [(START, "queued", f"queued {row.reference[-1]}")]
    assert len({row.id for row in rows}) == 3
    with writing(ledger.engine) as tx:
        assert ledger.record_many_in(tx, []) == []
        (alone,) = ledger.record_many_in(tx, [(new_message(4), "one")])
    assert ledger.get(alone.id) == alone


def test_record_many_refuses_them_all_when_one_is_taken(ledger: Ledger) -> None:
    record(ledger, new_message(2))
    with pytest.raises(LedgerConflict), writing(ledger.engine) as tx:
        ledger.record_many_in(tx, [(new_message(n), "") for n in (1, 2, 3)])
    assert ledger.find("outbound", "NO-SIRENE", "RO-2026-000001") is None
    assert ledger.find("outbound", "NO-SIRENE", "RO-2026-000003") is None


def test_next_references_are_gap_free_in_batches(ledger: Ledger) -> None:
    with writing(ledger.engine) as tx:
        first = ledger.next_references_in(tx, "RO", 2026, 3)
        one = ledger.next_reference_in(tx, "RO", 2026)
        more = ledger.next_references_in(tx, "RO", 2026, 2)
        assert ledger.next_references_in(tx, "RO", 2026, 0) == []
        other_year = ledger.next_references_in(tx, "RO", 2027, 2)
    assert first == ["RO-2026-000001", "RO-2026-000002", "RO-2026-000003"]
    assert one == "RO-2026-000004"
    assert more == ["RO-2026-000005", "RO-2026-000006"]
    assert other_year == ["RO-2027-000001", "RO-2027-000002"]
    with pytest.raises(RuntimeError), writing(ledger.engine) as tx:
        ledger.next_references_in(tx, "RO", 2026, 5)
        raise RuntimeError("the batch failed")
    with writing(ledger.engine) as tx:
        assert ledger.next_reference_in(tx, "RO", 2026) == "RO-2026-000007", "rolled back"


def test_by_spool_keys_reads_many_in_chunks(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = record(ledger, *(new_message(n) for n in range(1, 8)))
    monkeypatch.setattr(ledger_module, "KEYS_PER_QUERY", 3)
    keys = [f"form.RO-2026-{n:06d}" for n in range(1, 8)]
    with ledger.reading() as tx:
        found = ledger.by_spool_keys_in(tx, [*keys, "nope", keys[0]])
        assert ledger.by_spool_keys_in(tx, []) == {}
    assert found == {key: ledger.get(ledger_id) for key, ledger_id in zip(keys, ids, strict=True)}


def test_answer_ids_and_deadlines_due_for_many(ledger: Ledger) -> None:
    asked, answered_elsewhere, answer = record(
        ledger,
        new_message(1),
        new_message(5),
        replace(new_message(2), form="ACK", in_reply_to="NO-2026-000001"),
    )
    record(
        ledger,
        replace(new_message(3), form="ACK", partner="SE-SIRENE", in_reply_to="NO-2026-000009"),
    )
    due = START + timedelta(hours=12)
    with writing(ledger.engine) as tx:
        ledger.open_deadline_in(tx, asked, kind="reply", owed_by="desk", due=due)
        ledger.open_deadline_in(tx, answered_elsewhere, kind="receipt", owed_by="partner", due=due)
    with ledger.reading() as tx:
        found = lookups.answer_ids(
            tx,
            "outbound",
            "ACK",
            [("NO-SIRENE", "NO-2026-000001"), ("NO-SIRENE", "NO-2026-000009"), ("X", "Y")],
        )
        dues = lookups.deadlines_due(tx, [asked, answered_elsewhere, answer], "reply")
        assert lookups.answer_ids(tx, "outbound", "ACK", []) == {}
        assert lookups.deadlines_due(tx, [], "reply") == {}
    assert found == {("NO-SIRENE", "NO-2026-000001"): answer}, "the partner must match too"
    assert dues == {asked: due}


def test_move_many_moves_only_from_the_expected_states(ledger: Ledger) -> None:
    ids = record(ledger, new_message(1), new_message(2), new_message(3, state=OutboundState.SENT))
    with writing(ledger.engine) as tx:
        moved = ledger.move_many_in(
            tx,
            [(i, f"250 for {i}") for i in ids],
            OutboundState.SENT,
            expected=(OutboundState.QUEUED,),
        )
    assert moved == set(ids[:2])
    assert [ledger.get(i).state for i in ids] == ["sent", "sent", "sent"]
    for i in ids[:2]:
        assert ledger.events_of(i)[-1][1:] == ("sent", f"250 for {i}")
    assert [kind for _, kind, _ in ledger.events_of(ids[2])] == ["sent"]  # its first only
    with writing(ledger.engine) as tx:  # a second time: nothing moves
        assert (
            ledger.move_many_in(
                tx, [(ids[0], "")], OutboundState.SENT, expected=(OutboundState.QUEUED,)
            )
            == set()
        )
        assert (
            ledger.move_many_in(tx, [], OutboundState.SENT, expected=(OutboundState.QUEUED,))
            == set()
        )


def test_open_deadlines_opens_each_once(ledger: Ledger) -> None:
    first, second = record(ledger, new_message(1), new_message(2))
    due = START + timedelta(minutes=15)
    with writing(ledger.engine) as tx:
        ledger.open_deadline_in(tx, first, kind="receipt", owed_by="partner", due=due)
        ledger.open_deadlines_in(
            tx,
            [(first, due + timedelta(hours=1)), (second, due), (second, due)],
            kind="receipt",
            owed_by="partner",
        )
        rows = tx.connection.execute(
            select(deadlines.c.message_id, deadlines.c.due, deadlines.c.state).order_by(
                deadlines.c.message_id
            )
        ).all()
    assert [(row.message_id, row.state) for row in rows] == [(first, "open"), (second, "open")]
    assert {row.due.replace(tzinfo=UTC) for row in rows} == {due}  # the first stays as it was


# ---------------------------------------------------------------------------------- audit


def entries() -> list[tuple[str, dict[str, str]]]:
    return [
        (
            "sent",
            {
                "partner": "NO-SIRENE",
                "form": "G",
                "reference": f"RO-2026-{n:06d}",
                "digest": f"{n:064x}",
                "reason": f"form form.RO-2026-{n:06d}",
            },
        )
        for n in range(1, 4)
    ]


def test_append_many_chains_exactly_as_appends_one_by_one(ledger_engine: Engine) -> None:
    one = AuditLog(ledger_engine, FakeClock(START))
    one.append("queued", reference="RO-2026-000000")
    with one.begin() as connection:
        made = one.append_many_in(connection, entries())
    assert [entry.seq for entry in made] == [2, 3, 4]
    assert one.verify() == []
    stored = one.entries()
    assert stored[1:] == made
    # The same entries appended one at a time give the same hashes (same clock, same chain).
    with ledger_engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM audit WHERE seq > 1")
    with one.begin() as connection:
        singles = [one.append_in(connection, kind, **fields) for kind, fields in entries()]
    assert [entry.hash for entry in singles] == [entry.hash for entry in made]


def test_append_many_refuses_before_writing_anything(ledger_engine: Engine) -> None:
    log = AuditLog(ledger_engine, FakeClock(START))
    bad = [*entries(), ("sent", {"reason": "two\nlines"})]
    with pytest.raises(ValueError, match="single line"), log.begin() as connection:
        log.append_many_in(connection, bad)
    assert log.entries() == []
    with log.begin() as connection:
        assert log.append_many_in(connection, []) == []


# ---------------------------------------------------------------------------------- spool


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "outbound")


def put(spool: Spool, key: str, payload: bytes = b"payload\r\n", **meta: Any) -> None:
    spool.put(key, payload, {"kind": "form", **meta})


def test_waiting_skips_what_cannot_be_read(spool: Spool) -> None:
    for n, key in enumerate(["b", "a", "c"]):
        put(spool, key, n=n)
        os.utime(spool.new / f"{key}.msg", ns=(n, n))
    (spool.new / "broken.msg").write_bytes(b"no metadata line")
    os.utime(spool.new / "broken.msg", ns=(9, 9))
    assert [item.key for item in spool.waiting()] == ["b", "a", "c"]


def test_claim_claims_once_and_reads_once(spool: Spool) -> None:
    put(spool, "a", b"first\r\n\r\nbody\n")
    put(spool, "b")
    (spool.new / "bad.msg").write_bytes(b"[1]\nx")
    claimed = spool.claim(["a", "bad", "missing", "b"])
    assert [(item.key, item.payload()) for item in claimed] == [
        ("a", b"first\r\n\r\nbody\n"),
        ("b", b"payload\r\n"),
    ]
    assert claimed[0] == spool.get("a")  # the same item as found in cur/
    assert claimed[0].path == spool.cur / "a.msg"
    assert sorted(path.name for path in spool.quarantine.iterdir()) == ["bad.msg"]
    assert spool.claim(["a"]) == []  # already claimed


def test_finish_moves_what_it_can(spool: Spool) -> None:
    for key in ("a", "b", "c"):
        put(spool, key)
    items = spool.claim(["a", "b"])
    stranger = spool.get("c")  # not claimed
    assert spool.finish([*items, stranger]) == [stranger]
    assert sorted(path.name for path in spool.done.iterdir()) == ["a.msg", "b.msg"]
    assert list(spool.cur.iterdir()) == []
    assert spool.finish([]) == []
