"""The audit chain on SQLite and PostgreSQL: appends, tampering of every kind, refusals, races."""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select, text, update

from gateway.cli import audit as cli_audit
from gateway.core.clock import FakeClock
from gateway.store.audit import (
    GENESIS,
    AuditEntry,
    AuditLog,
    AuditProblem,
    entry_hash,
    format_instant,
    parse_anchor,
)
from gateway.store.ledger import audit
from gateway.store.unit import Transaction

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
CONTENT = ("at", "kind", "partner", "form", "reference", "digest", "reason")


@pytest.fixture
def log(ledger_engine: Engine) -> AuditLog:
    return AuditLog(ledger_engine, FakeClock(START))


def fill(log: AuditLog, count: int = 5) -> list[AuditEntry]:
    clock = log.clock
    assert isinstance(clock, FakeClock)
    entries = []
    for n in range(1, count + 1):
        clock.advance(timedelta(seconds=1, microseconds=n))
        entries.append(
            log.append(
                "inbound.received",
                partner="NO-SIRENE",
                form="G",
                reference=f"NO-2026-{n:06d}",
                digest=f"{n:064x}",
                reason=f"spooled as k{n}",
            )
        )
    return entries


def faults(problems: list[AuditProblem]) -> list[tuple[int, str]]:
    return [(problem.seq, problem.fault) for problem in problems]


def row(engine: Engine, seq: int) -> dict[str, Any]:
    with engine.connect() as connection:
        found = connection.execute(select(audit).where(audit.c.seq == seq)).one()
    values = dict(found._mapping)
    at: datetime = values["at"]  # SQLite hands back naive UTC
    values["at"] = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return values


def rehash(values: dict[str, Any]) -> str:
    fields = ("kind", "partner", "form", "reference", "digest", "reason", "prev_hash")
    return entry_hash(
        values["seq"], format_instant(values["at"]), **{key: values[key] for key in fields}
    )


# Appending


def test_append_chains_entries_and_verify_finds_them_intact(log: AuditLog) -> None:
    assert log.head() == (0, GENESIS)
    assert log.verify() == []
    entries = fill(log, 3)
    assert [entry.seq for entry in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS
    assert entries[1].prev_hash == entries[0].hash and entries[2].prev_hash == entries[1].hash
    assert entries[0].at == START + timedelta(seconds=1, microseconds=1)
    assert log.entries() == entries  # what was stored reads back exactly, microseconds and all
    assert log.head() == (3, entries[2].hash)
    assert log.verify() == [] and log.verify(anchor=log.head()) == []
    report = log.check()
    assert (report.entries, report.head, report.intact) == (3, (3, entries[2].hash), True)


def test_an_entry_is_stored_as_sqlalchemy_stores_it(log: AuditLog) -> None:
    """On SQLite the chain's statements are said to the driver: the instant's text, and every
    other column, are what SQLAlchemy's own insert writes for the same values."""
    entry = fill(log, 1)[0]
    values = dict(vars(entry), seq=99, hash="f" * 64)
    with log.begin() as tx:
        tx.connection.execute(insert(audit), values)
    with log.engine.connect() as connection:
        stored = [
            tuple(found)
            for found in connection.execute(
                text(
                    "SELECT at, kind, partner, form, reference, digest, reason, prev_hash "
                    "FROM audit ORDER BY seq"
                )
            )
        ]
    assert stored[0] == stored[1]
    assert log.entries()[0] == entry


def test_the_hash_is_sha256_of_compact_sorted_json(log: AuditLog) -> None:
    entry = log.append("outbound.sent", form="A", reason="tabs\tand  spaces\tcollapse")
    assert entry.reason == "tabs and spaces collapse"
    canonical = (
        '{"at":"2026-11-25T08:00:00.000000Z","digest":"","form":"A","kind":"outbound.sent",'
        f'"partner":"","prev_hash":"{GENESIS}","reason":"tabs and spaces collapse",'
        '"reference":"","seq":1}'
    )
    assert entry.hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_append_in_commits_and_rolls_back_with_the_callers_transaction(log: AuditLog) -> None:
    with log.begin() as tx:
        first = log.append_in(tx, "inbound.received", reference="NO-2026-000001")
    assert first.seq == 1
    with pytest.raises(RuntimeError), log.begin() as tx:
        log.append_in(tx, "inbound.received", reference="NO-2026-000002")
        raise RuntimeError("the spool failed after the ledger insert")
    with log.begin() as tx:
        second = log.append_in(tx, "inbound.received", reference="NO-2026-000003")
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert [entry.reference for entry in log.entries()] == ["NO-2026-000001", "NO-2026-000003"]
    assert log.verify() == []


def test_a_naive_clock_is_refused(ledger_engine: Engine) -> None:
    class NaiveClock:
        def now(self) -> datetime:
            return datetime(2026, 1, 1)  # no timezone: the point of the test

    with pytest.raises(ValueError, match="timezone-aware"):
        AuditLog(ledger_engine, NaiveClock()).append("x")
    assert AuditLog(ledger_engine, FakeClock()).head() == (0, GENESIS)


# Refusals: nothing that looks like personal data is ever stored


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("Inbound", {}),
        ("inbound received", {}),
        ("x" * 33, {}),
        ("ok", {"partner": "Jan Kowalski"}),
        ("ok", {"partner": "no-sirene"}),
        ("ok", {"form": "g"}),
        ("ok", {"reference": "NO-2026-1 Jan"}),
        ("ok", {"reference": "<msg@no.example>"}),
        ("ok", {"reference": "R" * 65}),
        ("ok", {"digest": "A" * 64}),
        ("ok", {"digest": "a" * 63}),
        ("ok", {"digest": "sha256:" + "a" * 64}),
        ("ok", {"reason": "bad signature\nName: Jan Kowalski"}),
        ("ok", {"reason": "carriage\rreturn"}),
        ("ok", {"reason": "line\u2028separator"}),
        ("ok", {"reason": "nul\x00byte"}),
        ("ok", {"reason": "r" * 301}),
    ],
)
def test_personal_data_looking_values_are_refused(
    log: AuditLog, kind: str, fields: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="audit"):
        log.append(kind, **fields)
    with pytest.raises(ValueError, match="audit"), log.begin() as tx:
        log.append_in(tx, kind, **fields)
    assert log.head() == (0, GENESIS)


def test_codes_references_and_message_ids_are_accepted(log: AuditLog) -> None:
    entry = log.append(
        "inbound.rejected",
        partner="NO-SIRENE",
        form="M",
        reference="<20261125080000.ABC-1@NO.EXAMPLE>",
        digest="f" * 64,
        reason="550 5.7.7 bad signature: " + "x" * 275,
    )
    assert len(entry.reason) == 300 and log.verify() == []


# Tampering: each kind is found and named at its seq


def test_an_edited_reason_is_found_at_its_seq(log: AuditLog) -> None:
    fill(log)
    with log.engine.begin() as connection:
        connection.execute(update(audit).where(audit.c.seq == 3).values(reason="nothing here"))
    assert faults(log.verify()) == [(3, "edited")]
    assert str(log.verify()[0]) == (
        "seq 3: its hash does not match its content (the entry was edited)"
    )


def test_an_edited_timestamp_is_found(log: AuditLog) -> None:
    fill(log)
    with log.engine.begin() as connection:
        connection.execute(
            update(audit).where(audit.c.seq == 2).values(at=START + timedelta(hours=1))
        )
    assert faults(log.verify()) == [(2, "edited")]


def test_an_unreadable_timestamp_is_a_finding_not_a_crash(log: AuditLog) -> None:
    if log.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite stores any text in a timestamp column")
    fill(log)
    with log.engine.begin() as connection:
        connection.execute(text("UPDATE audit SET at = 'yesterday' WHERE seq = 4"))
    problems = log.verify()
    assert faults(problems) == [(4, "edited")] and "timestamp" in problems[0].detail


def test_a_deleted_middle_entry_is_found(log: AuditLog) -> None:
    fill(log)
    with log.engine.begin() as connection:
        connection.execute(delete(audit).where(audit.c.seq == 3))
    problems = log.verify()
    assert faults(problems) == [(3, "missing")]
    assert str(problems[0]) == "seq 3: entry 3 is missing from the chain (deleted)"


def test_deleted_first_entries_are_found(log: AuditLog) -> None:
    fill(log)
    with log.engine.begin() as connection:
        connection.execute(delete(audit).where(audit.c.seq <= 2))
    assert [str(problem) for problem in log.verify()] == [
        "seq 1: entries 1 to 2 are missing from the chain (deleted)"
    ]


def test_a_deleted_last_entry_is_found_only_against_an_anchor(log: AuditLog) -> None:
    entries = fill(log)
    anchor = log.head()
    assert anchor == (5, entries[-1].hash)
    with log.engine.begin() as connection:
        connection.execute(delete(audit).where(audit.c.seq == 5))
    assert log.verify() == []  # what is left is a valid chain
    problems = log.verify(anchor=anchor)
    assert faults(problems) == [(5, "anchor-missing")]
    assert "chain now ends at seq 4" in problems[0].detail
    assert log.verify(anchor=(4, entries[3].hash)) == []  # an older anchor is still there


def test_a_rewritten_tail_is_found_against_an_anchor(log: AuditLog) -> None:
    entries = fill(log)
    anchor = log.head()
    # Someone with write access rewrites entries 3..5 and recomputes every hash after them.
    prev_hash = entries[1].hash
    with log.engine.begin() as connection:
        for seq in (3, 4, 5):
            values = row(log.engine, seq) | {"reason": "rewritten", "prev_hash": prev_hash}
            values["hash"] = prev_hash = rehash(values)
            connection.execute(update(audit).where(audit.c.seq == seq).values(**values))
    assert log.verify() == []
    assert faults(log.verify(anchor=anchor)) == [(5, "anchor-altered")]


def test_swapped_entries_are_found_as_reordered(log: AuditLog) -> None:
    fill(log)
    second, third = row(log.engine, 2), row(log.engine, 3)
    moved = ("at", "kind", "partner", "form", "reference", "digest", "reason", "prev_hash", "hash")
    with log.engine.begin() as connection:
        connection.execute(
            update(audit).where(audit.c.seq == 2).values({key: third[key] for key in moved})
        )
        connection.execute(
            update(audit).where(audit.c.seq == 3).values({key: second[key] for key in moved})
        )
    problems = log.verify()
    assert faults(problems) == [(2, "moved"), (3, "moved")]
    assert str(problems[0]) == (
        "seq 2: it holds the entry that belongs at seq 3 (entries reordered or renumbered)"
    )


def test_swapped_contents_under_the_same_hashes_are_found_as_edited(log: AuditLog) -> None:
    fill(log)
    second, third = row(log.engine, 2), row(log.engine, 3)
    with log.engine.begin() as connection:
        connection.execute(
            update(audit).where(audit.c.seq == 2).values({key: third[key] for key in CONTENT})
        )
        connection.execute(
            update(audit).where(audit.c.seq == 3).values({key: second[key] for key in CONTENT})
        )
    assert faults(log.verify()) == [(2, "edited"), (3, "edited")]


def test_a_forged_replacement_breaks_the_link_of_the_next_entry(log: AuditLog) -> None:
    entries = fill(log)
    forged = row(log.engine, 3) | {"reason": "forged", "prev_hash": entries[1].hash}
    forged["hash"] = rehash(forged)  # a valid entry of its own
    with log.engine.begin() as connection:
        connection.execute(delete(audit).where(audit.c.seq == 3))
        connection.execute(insert(audit).values(**forged))
    problems = log.verify()
    assert faults(problems) == [(4, "broken-link")]
    assert "does not match the hash of entry 3 (entry 3 was replaced or forged" in str(problems[0])


def test_a_forged_entry_appended_with_its_own_hash_breaks_the_link(log: AuditLog) -> None:
    entries = fill(log)
    forged = row(log.engine, 5) | {"seq": 6, "reason": "forged", "prev_hash": entries[3].hash}
    forged["hash"] = rehash(forged)
    with log.engine.begin() as connection:
        connection.execute(insert(audit).values(**forged))
    assert faults(log.verify()) == [(6, "broken-link")]
    assert log.append("after.forgery").seq == 7  # later appends do not hide it
    assert faults(log.verify()) == [(6, "broken-link")]


def test_a_forged_first_entry_is_found(log: AuditLog) -> None:
    fill(log)
    forged = row(log.engine, 1) | {"reason": "forged", "prev_hash": "1" * 64}
    forged["hash"] = rehash(forged)
    with log.engine.begin() as connection:
        connection.execute(update(audit).where(audit.c.seq == 1).values(**forged))
    problems = faults(log.verify())
    assert problems == [(1, "broken-link"), (2, "broken-link")]


def test_an_entry_inserted_by_renumbering_is_found(log: AuditLog) -> None:
    entries = fill(log)
    with log.engine.begin() as connection:
        for seq in (5, 4, 3):
            connection.execute(update(audit).where(audit.c.seq == seq).values(seq=seq + 1))
        forged = row(log.engine, 1) | {
            "seq": 3,
            "reason": "forged",
            "prev_hash": entries[1].hash,
        }
    forged["hash"] = rehash(forged)
    with log.engine.begin() as connection:
        connection.execute(insert(audit).values(**forged))
    assert faults(log.verify()) == [(4, "moved"), (5, "moved"), (6, "moved")]


def test_anchors_are_checked(log: AuditLog) -> None:
    assert parse_anchor(f"12:{'A' * 64}") == (12, "a" * 64)
    for bad in ("12", "x:" + "a" * 64, "12:abc", f"-1:{'a' * 64}"):
        with pytest.raises(ValueError):
            parse_anchor(bad)
    with pytest.raises(ValueError):
        log.verify(anchor=(1, "nothex"))
    assert log.verify(anchor=(0, GENESIS)) == []
    assert faults(log.verify(anchor=(0, "1" * 64))) == [(0, "anchor-altered")]


# Concurrency: one chain, never a fork


def race(workers: int, each: int, append: Any) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def work(worker: int) -> None:
        try:
            start.wait()
            for n in range(each):
                append(worker, n)
        except BaseException as error:  # the test reports it below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_four_threads_appending_make_one_chain(log: AuditLog) -> None:
    race(4, 50, lambda worker, n: log.append("race", reference=f"W{worker}-{n}"))
    entries = log.entries()
    assert [entry.seq for entry in entries] == list(range(1, 201))
    assert len({entry.reference for entry in entries}) == 200
    assert log.verify() == [] and log.head() == (200, entries[-1].hash)


def test_threads_appending_in_their_own_transactions_make_one_chain(log: AuditLog) -> None:
    def append(worker: int, n: int) -> None:
        # A plain (deferred) transaction that has read already: the append takes the lock.
        with log.engine.begin() as connection:
            connection.execute(select(audit.c.seq).limit(1)).all()
            log.append_in(Transaction(connection), "race", reference=f"W{worker}-{n}")

    race(4, 25, append)
    assert [entry.seq for entry in log.entries()] == list(range(1, 101))
    assert log.verify() == []


# The command


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="gateway")
    parser.add_argument("-c", "--config")
    cli_audit.register(parser.add_subparsers())
    parsed = parser.parse_args(["-c", str(config), "audit", "verify", *args])
    code: int = parsed.run(parsed)
    return code, capsys.readouterr().out


@pytest.fixture
def config(log: AuditLog, tmp_path: Path) -> Path:
    url = log.engine.url
    if url.get_backend_name() == "postgresql":
        with log.engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[identity]\ncountry = "RO"\naddress = "sirene@ro.example"\n'
        'bureaux = { sirene = "RO-SIRENE" }\n\n'
        f"[database]\nurl = {json.dumps(url.render_as_string(hide_password=False))}\n"
    )
    return path


def test_verify_command_reports_an_intact_chain(
    log: AuditLog, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = fill(log, 3)
    code, out = run(capsys, config)
    assert code == 0
    assert out.splitlines()[0] == f"audit chain intact: 3 entries, head {entries[-1].hash}"
    code, out = run(capsys, config, "--json", "--anchor", f"3:{entries[-1].hash}")
    report = json.loads(out)
    assert code == 0 and report["intact"] and report["entries"] == 3
    assert report["head"] == {
        "seq": 3,
        "hash": entries[-1].hash,
        "anchor": f"3:{entries[-1].hash}",
    }


def test_verify_command_lists_problems_and_exits_1(
    log: AuditLog, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = fill(log)
    with log.engine.begin() as connection:
        connection.execute(update(audit).where(audit.c.seq == 2).values(partner="SE-SIRENE"))
        connection.execute(delete(audit).where(audit.c.seq >= 4))
    code, out = run(capsys, config, "--anchor", f"5:{entries[-1].hash}")
    assert code == 1
    assert out.splitlines() == [
        "seq 2: its hash does not match its content (the entry was edited)",
        "seq 5: the anchored entry is missing (the chain now ends at seq 3: entries were removed)",
    ]
    code, out = run(capsys, config, "--json")
    assert code == 1
    assert json.loads(out)["problems"] == [
        {
            "seq": 2,
            "fault": "edited",
            "detail": "its hash does not match its content (the entry was edited)",
        }
    ]


def test_verify_command_refuses_a_bad_anchor(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, config, "--anchor", "5:xyz")
    assert exit_info.value.code == 2
