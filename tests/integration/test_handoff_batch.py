"""The hand-off in batches: many items in one read, one transaction and one sync give the same
desk copies, receipts, ledger rows and audit lines as one at a time, and a batch whose
transaction fails is handed off item by item, nothing lost."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbkit import postgres_schema, upgraded
from integration.inboundkit import FORM, World, desk_messages, gateway_config, message
from sqlalchemy import exc

from gateway.core import config as configuration
from gateway.crypto import pgpmime
from gateway.desks import maildir
from gateway.inbound import handoff as handoff_module
from gateway.inbound.carryover import Carryover
from gateway.service.server import Gateway
from gateway.service.services import open_services
from gateway.store.ledger import Ledger

COUNT = 6


@pytest.fixture(params=["sqlite", "postgresql"])
def idle(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """A gateway that is built but not started: its hand-off runs only when a test says so."""
    with contextlib.ExitStack() as stack:
        url = None if request.param == "sqlite" else stack.enter_context(postgres_schema())
        config = configuration.load(gateway_config(world, tmp_path, database_url=url))
        upgraded(config.database_url)
        services = stack.enter_context(open_services(config))
        yield Gateway(services)


def accept_many(world: World, gateway: Gateway, count: int = COUNT) -> list[str]:
    """``count`` forms of the partner, each with its own Reference, accepted (not handed off)."""
    references = [f"NO-2026-{900 + n:06d}" for n in range(count)]
    for reference in references:
        form = FORM.replace(b"NO-2026-000123", reference.encode())
        accepted = gateway.pipeline.accept("sirene@no.example", message(world, form))
        assert accepted.reference == reference and not accepted.duplicate
    return references


def assert_handed_off(gateway: Gateway, references: list[str]) -> None:
    rows = [gateway.ledger.find("inbound", "NO-SIRENE", ref) for ref in references]
    assert all(row is not None and row.state == "delivered" for row in rows)
    subjects = sorted(str(copy["Subject"]) for copy in desk_messages(gateway, "duty"))
    assert len(subjects) == len(references)
    assert all(any(ref in subject for subject in subjects) for ref in references)
    receipts = []
    for row in rows:
        assert row is not None
        item = gateway.outbound.get(f"receipt.{row.id}")
        envelope, _ = pgpmime.parse_outer(item.payload())
        receipt = gateway.ledger.find("outbound", "NO-SIRENE", item.meta["reference"])
        assert receipt is not None and receipt.in_reply_to == row.reference
        assert envelope.message_id == receipt.message_id
        receipts.append(receipt.reference)
    assert len(set(receipts)) == len(references), "one receipt each, each its own Reference"
    numbers = sorted(int(reference.rsplit("-", 1)[1]) for reference in receipts)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "gap-free"
    delivered = [entry for entry in gateway.audit.entries() if entry.kind == "delivered"]
    assert sorted(entry.reference for entry in delivered) == sorted(references)
    assert gateway.audit.check().intact
    assert not any(gateway.inbound.new.iterdir()) and not any(gateway.inbound.cur.iterdir())


def test_one_batch_hands_off_every_item(world: World, idle: Gateway) -> None:
    references = accept_many(world, idle)
    batches: list[int] = []
    handle_many = idle.handoff.handle_many

    def counted(items: list) -> list:  # type: ignore[type-arg]
        batches.append(len(items))
        return handle_many(items)

    idle.handoff.handle_many = counted  # type: ignore[method-assign]
    assert idle.handoff.run_once() == COUNT
    assert batches == [COUNT]
    assert_handed_off(idle, references)
    assert idle.handoff.run_once() == 0, "nothing left, nothing done twice"


def test_a_failed_batch_goes_item_by_item(
    world: World, idle: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's transaction fails (the database refused one move): each item is tried on its
    own, and the one that fails again is put back for a later attempt, counted."""
    references = accept_many(world, idle)
    poisoned = idle.ledger.find("inbound", "NO-SIRENE", references[2])
    assert poisoned is not None
    real_move = Ledger.move_many_in

    def move_many_in(self: Ledger, tx, moves, state, *, expected):  # type: ignore[no-untyped-def]
        if any(message_id == poisoned.id for message_id, _ in moves):
            raise exc.IntegrityError("UPDATE messages", {}, Exception("refused"))
        return real_move(self, tx, moves, state, expected=expected)

    monkeypatch.setattr(Ledger, "move_many_in", move_many_in)
    assert idle.handoff.run_once() == COUNT - 1
    item = idle.inbound.get(poisoned.spool_key or "")
    assert item.path.parent == idle.inbound.new, "put back, not lost"
    assert (
        item.meta["attempts"] == 1
        and item.meta["last_error"] == "RuntimeError: ledger: IntegrityError"
    )
    assert idle.ledger.get(poisoned.id).state == "received"
    assert not idle.outbound.exists(f"receipt.{poisoned.id}"), "no receipt for what failed"
    monkeypatch.undo()
    assert idle.handoff.run_once() == 1
    assert_handed_off(idle, references)


def test_an_unavailable_ledger_counts_no_attempt(
    world: World, idle: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    (reference,) = accept_many(world, idle, 1)

    def move_many_in(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise exc.OperationalError("UPDATE messages", {}, Exception("database is locked"))

    monkeypatch.setattr(Ledger, "move_many_in", move_many_in)
    assert idle.handoff.run_once() == 0
    row = idle.ledger.find("inbound", "NO-SIRENE", reference)
    assert row is not None and row.state == "received"
    item = idle.inbound.get(row.spool_key or "")
    assert item.path.parent == idle.inbound.new and "attempts" not in item.meta
    monkeypatch.undo()
    assert idle.handoff.run_once() == 1
    assert_handed_off(idle, [reference])


def test_a_long_queue_goes_in_batches_of_at_most_handoff_batch(
    world: World, idle: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    references = accept_many(world, idle)
    monkeypatch.setattr(handoff_module, "HANDOFF_BATCH", 4)
    batches: list[int] = []
    handle_many = idle.handoff.handle_many

    def counted(items: list) -> list:  # type: ignore[type-arg]
        batches.append(len(items))
        return handle_many(items)

    idle.handoff.handle_many = counted  # type: ignore[method-assign]
    assert idle.handoff.run_once() == COUNT
    assert batches == [4, COUNT - 4]
    assert_handed_off(idle, references)


def test_what_the_intake_checked_is_not_parsed_again(
    world: World, idle: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    references = accept_many(world, idle, 3)
    assert len(idle.handoff.carried) == 3, "the intake left each form checked"
    parsed: list[bytes] = []
    real_parse = pgpmime.parse_entity

    def parse_entity(entity: bytes) -> pgpmime.Payload:
        parsed.append(entity)
        return real_parse(entity)

    monkeypatch.setattr(pgpmime, "parse_entity", parse_entity)
    assert idle.handoff.run_once() == 3
    assert parsed == [] and len(idle.handoff.carried) == 0
    assert_handed_off(idle, references)


def test_after_a_restart_the_spool_is_read_again(world: World, idle: Gateway) -> None:
    references = accept_many(world, idle, 3)
    idle.handoff.carried = Carryover()  # what a new process starts with
    assert idle.handoff.run_once() == 3
    assert_handed_off(idle, references)


def test_a_first_hand_off_does_not_list_the_desk_and_a_later_one_does(
    world: World, idle: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks: list[Path] = []
    real = maildir._delivered_names

    def counting(folder: Path) -> dict[str, Path]:
        looks.append(folder)
        return real(folder)

    monkeypatch.setattr(maildir, "_delivered_names", counting)
    first = accept_many(world, idle, 3)
    assert idle.handoff.run_once() == 3
    assert looks == [], "carried over from this intake: never handed off, nothing to look for"
    # A crash after the desk copy of the next one was written (and read: moved to cur/), before
    # its ledger record: the new process carries nothing over, looks, and finds the copy.
    later = [f"NO-2026-{950 + n:06d}" for n in range(2)]
    for reference in later:
        form = FORM.replace(b"NO-2026-000123", reference.encode())
        idle.pipeline.accept("sirene@no.example", message(world, form))
    row = idle.ledger.find("inbound", "NO-SIRENE", later[0])
    assert row is not None
    desk = idle.config.desk("duty").maildir
    (desk / "cur" / f"{row.id}.{row.reference}:2,S").write_bytes(b"Subject: delivered before\n\n")
    idle.handoff.carried = Carryover()
    assert idle.handoff.run_once() == 2
    assert looks == [desk]
    subjects = [str(copy["Subject"]) for copy in desk_messages(idle, "duty")]
    assert subjects.count("delivered before") == 1
    assert len(subjects) == len(first) + len(later), "the copy found is not written again"
