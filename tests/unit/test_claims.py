"""Claims on SQLite and PostgreSQL: one holder at a time (two threads on two engines claiming the
same messages at once: exactly one wins each, the other is told who), release, hand-over (to an
enabled user of the desk only), close (with the reply deadline), first seen; each change an event
and an audit entry with names and the ledger id only; the worklist's state of a message."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from accesskit import PASSWORD, START, Kit, make_kit
from dbkit import RECEIVED
from sqlalchemy import Engine

from gateway.access.roles import Principal, Role
from gateway.core.clock import FakeClock
from gateway.service.claims import ClaimRefused, Claims, HeldByOther
from gateway.store import claims, worklist
from gateway.store.audit import AuditLog
from gateway.store.claims import WorkState, work_state
from gateway.store.ledger import Ledger, MessageRow, make_engine
from gateway.store.states import DeadlineState, InboundState, OutboundState

ANA = Principal("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}))
BEN = Principal("ben", frozenset({Role.HANDLER}), frozenset({"sirene"}))
IDA = Principal("ida", frozenset({Role.HANDLER}), frozenset({"interpol"}))
SUE = Principal("sue", frozenset({Role.SUPERVISOR}))
OLAF = Principal("olaf", frozenset({Role.OPERATOR}))


def people(kit: Kit) -> None:
    for who in (ANA, BEN, IDA, SUE, OLAF):
        kit.accounts.add(who.name, who.roles, who.desks, PASSWORD)
    kit.accounts.add("dan", frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
    kit.accounts.disable("dan")


def received(kit: Kit, number: int, *, reply_in: timedelta | None = None) -> MessageRow:
    ledger = kit.ledger
    with ledger.transaction() as tx:
        ledger_id = ledger.record_in(
            tx, replace(RECEIVED, reference=f"NO-2026-{number:06d}", spool_key=f"k{number}")
        )
        if reply_in is not None:
            ledger.open_deadline_in(
                tx, ledger_id, kind="reply", owed_by="desk", due=kit.clock.now() + reply_in
            )
    return ledger.get(ledger_id)


@pytest.fixture
def kit(ledger_engine: Engine, tmp_path: Path) -> Kit:
    made = make_kit(ledger_engine, tmp_path)
    people(made)
    return made


def claim_entries(kit: Kit) -> list[tuple[str, str, str]]:
    return [
        (entry.kind, entry.reference, entry.reason)
        for entry in kit.audit.entries()
        if entry.kind.startswith("claim.")
    ]


def test_claim_release_hand_over_close_each_audited_with_names_only(kit: Kit) -> None:
    service = Claims(kit.ledger, kit.audit)
    row = received(kit, 1, reply_in=timedelta(hours=12))
    assert service.current(row.id) is None
    done = service.claim(ANA, row)
    assert (done.claim.holder, done.claim.since) == ("ana", START)
    assert service.claim(ANA, row).claim.holder == "ana"  # again: nothing changes
    kit.clock.advance(timedelta(minutes=5))
    with pytest.raises(HeldByOther) as lost:
        service.claim(BEN, row)
    assert (lost.value.holder, lost.value.since) == ("ana", START)
    assert str(lost.value) == "already claimed by ana"
    with pytest.raises(HeldByOther):
        service.release(BEN, row)  # a handler cannot release another's claim
    handed = service.hand_over(ANA, row, "ben")
    assert (handed.claim.holder, handed.claim.since) == ("ben", START + timedelta(minutes=5))
    released = service.release(SUE, row)  # a supervisor may, whoever holds it
    assert released.claim.holder is None and released.claim.since is None
    assert service.claim(BEN, row).claim.holder == "ben"
    closed = service.close(BEN, row)
    assert closed.claim.holder is None and closed.claim.closed_by == "ben"
    assert closed.claim.closed_at == START + timedelta(minutes=5)
    with kit.ledger.reading() as tx:
        deadline = worklist.reply_deadline(tx, row.id)
    assert deadline is not None and deadline.state == "closed"  # nothing more owed
    acts: list[Callable[[], object]] = [
        lambda: service.claim(ANA, row),
        lambda: service.release(BEN, row),
        lambda: service.close(BEN, row),
        lambda: service.hand_over(BEN, row, "ana"),
    ]
    for act in acts:
        with pytest.raises(ClaimRefused, match="it is closed"):
            act()
    ref = "NO-2026-000001"
    assert claim_entries(kit) == [
        ("claim.claimed", ref, f"user=ana ledger={row.id}"),
        ("claim.handed-over", ref, f"user=ana ledger={row.id} holder=ana to=ben"),
        ("claim.released", ref, f"user=sue ledger={row.id} holder=ben"),
        ("claim.claimed", ref, f"user=ben ledger={row.id}"),
        ("claim.closed", ref, f"user=ben ledger={row.id} holder=ben"),
    ]
    timeline = [(kind, detail) for _, kind, detail in kit.ledger.events_of(row.id)]
    assert (
        timeline[1:]
        == [
            ("claimed", "by ana"),
            ("handed-over", "to ben by ana"),
            ("released", "by sue (held by ben)"),
            ("claimed", "by ben"),
            ("deadline-closed", "reply deadline closed on the desk by ben"),
            ("closed", "by ben"),
        ][-7:]
    )
    assert kit.audit.verify() == []


def test_a_hand_over_goes_to_an_enabled_user_of_the_desk_only(kit: Kit) -> None:
    service = Claims(kit.ledger, kit.audit)
    row = received(kit, 1)
    with pytest.raises(ClaimRefused, match="nobody holds it"):
        service.hand_over(ANA, row, "ben")
    service.claim(ANA, row)
    for to, why in (
        ("nobody", "there is no active user nobody"),
        ("dan", "there is no active user dan"),  # disabled
        ("ida", "ida does not work on desk sirene"),
        ("olaf", "olaf does not work on desk sirene"),  # an operator claims nothing
        ("ana", "ana already holds it"),
        ("Not A Name", "name the user to hand it over to"),
        ("", "name the user to hand it over to"),
    ):
        with pytest.raises(ClaimRefused, match=why):
            service.hand_over(ANA, row, to)
    assert service.hand_over(ANA, row, "sue").claim.holder == "sue"  # every desk is hers
    assert [kind for kind, _, _ in claim_entries(kit)] == ["claim.claimed", "claim.handed-over"]


def test_who_may_claim(kit: Kit) -> None:
    service = Claims(kit.ledger, kit.audit)
    row = received(kit, 1)
    for who in (IDA, OLAF):  # another desk's handler; an operator (metadata only)
        with pytest.raises(ClaimRefused, match="may not claim"):
            service.claim(who, row)
    with kit.ledger.transaction() as tx:
        outbound = kit.ledger.record_in(
            tx,
            replace(
                RECEIVED,
                direction="outbound",
                reference="RO-2026-000001",
                state=OutboundState.QUEUED,
            ),
        )
    with pytest.raises(ClaimRefused, match="may not claim"):
        service.claim(ANA, kit.ledger.get(outbound))
    assert claim_entries(kit) == [] and service.current(row.id) is None


def test_two_threads_on_two_engines_claim_at_once_and_exactly_one_wins(
    ledger_engine: Engine, tmp_path: Path
) -> None:
    """Each thread has its own engine (as two console processes would): on SQLite they meet in
    SQLite's write lock, on PostgreSQL in the row's lock; the conditional write decides."""
    kit = make_kit(ledger_engine, tmp_path)
    people(kit)
    rows = [received(kit, n) for n in range(1, 21)]
    other = make_engine(ledger_engine.url.render_as_string(hide_password=False))
    try:
        services = {
            ANA.name: Claims(kit.ledger, kit.audit),
            BEN.name: Claims(Ledger(other, kit.clock), AuditLog(other, kit.clock)),
        }
        outcomes: dict[tuple[str, int], str] = {}
        for row in rows:
            barrier = threading.Barrier(2)

            def claim(
                who: Principal, row: MessageRow = row, barrier: threading.Barrier = barrier
            ) -> None:
                barrier.wait()
                try:
                    services[who.name].claim(who, row)
                    outcomes[who.name, row.id] = "won"
                except HeldByOther as lost:
                    outcomes[who.name, row.id] = f"told {lost.holder}"

            threads = [threading.Thread(target=claim, args=(who,)) for who in (ANA, BEN)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        for row in rows:
            got = {outcomes[ANA.name, row.id], outcomes[BEN.name, row.id]}
            holder = services[ANA.name].current(row.id)
            assert holder is not None and holder.holder in ("ana", "ben")
            loser = "ben" if holder.holder == "ana" else "ana"
            assert outcomes[holder.holder, row.id] == "won", got
            assert outcomes[loser, row.id] == f"told {holder.holder}", got
        assert len(claim_entries(kit)) == len(rows)  # one claim audited per message
        assert kit.audit.verify() == []
    finally:
        other.dispose()


def test_the_store_claims_only_where_nobody_holds(kit: Kit) -> None:
    row = received(kit, 1)
    ledger = kit.ledger
    with ledger.transaction() as tx:
        assert claims.take_in(tx, row.id, "ana", START)
    with ledger.transaction() as tx:
        assert not claims.take_in(tx, row.id, "ben", START)
        assert not claims.release_in(tx, row.id, "ben", START)
        assert not claims.hand_over_in(tx, row.id, "ben", "ida", START)
        assert not claims.close_in(tx, row.id, None, "ben", START)
        assert claims.hand_over_in(tx, row.id, "ana", "ben", START)
        assert claims.close_in(tx, row.id, "ben", "ben", START)
        assert not claims.take_in(tx, row.id, "ana", START)  # closed
    with ledger.reading() as tx:
        found = claims.get(tx, row.id)
    assert found is not None and found.holder is None and found.closed_by == "ben"


def test_first_seen_is_kept(kit: Kit) -> None:
    row = received(kit, 1)
    with kit.ledger.transaction() as tx:
        claims.mark_seen_in(tx, row.id, START)
    with kit.ledger.transaction() as tx:
        claims.mark_seen_in(tx, row.id, START + timedelta(hours=1))
    with kit.ledger.reading() as tx:
        found = claims.get(tx, row.id)
    assert found is not None and found.seen_at == START and found.holder is None


def test_the_worklist_state_of_a_message(kit: Kit) -> None:
    service = Claims(kit.ledger, kit.audit)
    new, seen, held, answered, closed = (
        received(kit, n, reply_in=timedelta(hours=1)) for n in range(1, 6)
    )
    with kit.ledger.transaction() as tx:
        claims.mark_seen_in(tx, seen.id, START)
        kit.ledger.set_state_in(tx, answered.id, InboundState.ANSWERED, "reply sent")
    service.claim(ANA, held)
    service.close(ANA, closed)
    with kit.ledger.reading() as tx:
        items = {item.id: item for item in worklist.page(tx, desks={"sirene"}, limit=10)}
    assert [items[row.id].work for row in (new, seen, held, answered, closed)] == [
        WorkState.NEW,
        WorkState.SEEN,
        WorkState.CLAIMED,
        WorkState.ANSWERED,
        WorkState.CLOSED,
    ]
    assert (items[held.id].holder, items[held.id].since) == ("ana", START)
    # The order of precedence: closed, answered (also by the deadline met), claimed, seen.
    assert work_state("delivered", "met", holder="ana", seen_at=START, closed_at=None) == "answered"
    assert work_state("answered", None, holder=None, seen_at=None, closed_at=START) == "closed"


def test_the_worklist_filters_by_priority_and_time_left(kit: Kit) -> None:
    clock: FakeClock = kit.clock
    soon = received(kit, 1, reply_in=timedelta(hours=2))
    later = received(kit, 2, reply_in=timedelta(hours=30))
    late = received(kit, 3, reply_in=timedelta(minutes=-5))
    none = received(kit, 4)
    with kit.ledger.transaction() as tx:
        normal = kit.ledger.record_in(
            tx, replace(RECEIVED, reference="NO-2026-000005", spool_key="k5", priority="normal")
        )
        kit.ledger.close_deadline_in(
            tx, late.id, "reply", DeadlineState.MET, "answered"
        )  # not open
    overdue = received(kit, 6, reply_in=timedelta(minutes=-1))
    now = clock.now()

    def ids(**wanted: object) -> list[int]:
        with kit.ledger.reading() as tx:
            return [item.id for item in worklist.page(tx, desks={"sirene"}, **wanted)]  # type: ignore[arg-type]

    assert ids(due_by=now) == [overdue.id]
    assert ids(due_by=now + timedelta(hours=4)) == [overdue.id, soon.id]
    assert ids(due_by=now + timedelta(days=2)) == [overdue.id, later.id, soon.id]
    assert ids(priority="normal") == [normal]
    assert ids(priority="urgent", due_by=now + timedelta(hours=4), before=overdue.id) == [soon.id]
    assert none.id in ids()
