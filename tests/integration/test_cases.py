"""Cases on SQLite and PostgreSQL: the automatic grouping at acceptance (reply chains, alert and
national references; a fault in it refuses nothing and `regroup` catches up), the actions by hand
with their roles, timeline and audit entries, and retention counted from a case's closure."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from dbkit import RECEIVED, sqlite_plan, statements_run
from sqlalchemy import Engine, select, text

from gateway.access.roles import Principal, Role
from gateway.core.clock import FakeClock
from gateway.core.config import RetentionRule
from gateway.service.cases import REASON_LIMIT, CaseNotFound, CaseRefused, Cases
from gateway.store import case_refs, case_rows, retention_rows
from gateway.store.audit import AuditLog
from gateway.store.groupcommit import GroupCommit, Received
from gateway.store.ledger import Ledger, MessageRow, case_events, case_members, case_references
from gateway.store.search_rows import IndexRow

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
DIGEST = "c" * 64
HANDLER = Principal("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}))
OTHER_HANDLER = Principal("ion", frozenset({Role.HANDLER}), frozenset({"interpol"}))
SUPERVISOR = Principal("sam", frozenset({Role.SUPERVISOR}))
OPERATOR = Principal("ops", frozenset({Role.OPERATOR}))
AUDITOR = Principal("aud", frozenset({Role.AUDITOR}))


def ref(role: str, key: str) -> IndexRow:
    return IndexRow("reference", role, key, key, key, None, None)


def received(
    number: int,
    *,
    partner: str = "NO-SIRENE",
    in_reply_to: str | None = None,
    refs: Sequence[IndexRow] = (),
    form: str = "G",
    desk: str = "sirene",
    channel: str = "sirene",
) -> Received:
    reference = f"{partner[:2]}-2026-{number:06d}"
    return Received(
        dataclasses.replace(
            RECEIVED,
            partner=partner,
            reference=reference,
            in_reply_to=in_reply_to,
            spool_key=f"k{partner}{number}",
            form=form,
            desk=desk,
            channel=channel,
        ),
        event_detail="spooled",
        audit={"partner": partner, "form": form, "reference": reference, "digest": DIGEST},
        index=tuple(refs),
    )


class World:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.clock = FakeClock(START)
        self.ledger = Ledger(engine, self.clock)
        self.audit = AuditLog(engine, self.clock)
        self.group = GroupCommit(self.ledger, self.audit, self.clock)
        self.cases = Cases(self.ledger, self.audit)

    def take(self, record: Received) -> MessageRow:
        return self.ledger.get(self.group.commit(record))

    def case_of(self, row: MessageRow) -> int | None:
        with self.ledger.reading() as tx:
            return case_rows.case_of_message(tx, row.id)

    def how(self, row: MessageRow) -> str:
        with self.engine.connect() as connection:
            return str(
                connection.execute(
                    select(case_members.c.how).where(case_members.c.message_id == row.id)
                ).scalar_one()
            )

    def due(self, rules: Sequence[RetentionRule], now: datetime) -> set[int]:
        with self.ledger.reading() as tx:
            return {row.id for row in retention_rows.past_retention(tx, rules, now, limit=100)}


@pytest.fixture
def world(ledger_engine: Engine) -> World:
    return World(ledger_engine)


def test_a_reply_opens_a_case_with_the_message_it_answers_and_the_chain_joins_it(
    world: World,
) -> None:
    request = world.take(received(1))
    assert world.case_of(request) is None  # related to nothing: in no case
    reply = world.take(received(2, in_reply_to=request.reference))
    again = world.take(received(3, in_reply_to=reply.reference))
    other_partner = world.take(received(4, partner="FR-SIRENE", in_reply_to=request.reference))
    case_id = world.case_of(request)
    assert case_id is not None
    assert world.case_of(reply) == case_id == world.case_of(again)
    assert world.case_of(other_partner) is None  # a reply names a message of its own partner
    assert world.how(reply) == "reply-chain"
    view = world.cases.view(HANDLER, str(case_id))
    assert view.case.number == f"C2026-{case_id:06d}"
    assert view.case.desk == "sirene"
    assert view.case.title == f"G {request.reference}"
    assert [member.message_id for member in view.members] == [request.id, reply.id, again.id]
    assert [(event.kind, event.actor) for event in view.timeline] == [
        ("opened", "gateway"),
        ("linked", "gateway"),
        ("linked", "gateway"),
        ("linked", "gateway"),
    ]


def test_alert_references_group_across_partners_national_ones_within_a_partner(
    world: World,
) -> None:
    alert = ref("sis-alert", "SE12345678901")
    first = world.take(received(1, refs=[alert]))
    second = world.take(received(2, partner="FR-SIRENE", refs=[alert]))
    third = world.take(received(3, partner="DE-SIRENE", refs=[ref("sis-alert", "SE12345678901")]))
    case_id = world.case_of(first)
    assert case_id is not None
    assert world.case_of(second) == case_id == world.case_of(third)
    assert world.how(third) == "alert-reference"
    national = ref("national-case", "12342026")
    mine = world.take(received(5, refs=[national]))
    theirs = world.take(received(6, partner="FR-SIRENE", refs=[national]))
    assert world.case_of(mine) is None and world.case_of(theirs) is None
    same_partner = world.take(received(7, refs=[national]))
    assert world.case_of(same_partner) == world.case_of(mine) is not None
    assert world.how(same_partner) == "national-reference"
    warrant = world.take(received(8, refs=[ref("warrant", "W1"), ref("warrant", "W1")]))
    assert world.case_of(warrant) is None  # warrants do not group


def test_a_reply_to_a_closed_case_reopens_it_and_an_alert_finds_only_open_cases(
    world: World,
) -> None:
    alert = ref("sis-alert", "SE1")
    request = world.take(received(1, refs=[alert]))
    reply = world.take(received(2, in_reply_to=request.reference))
    case_id = world.case_of(request)
    assert case_id is not None
    world.cases.close(HANDLER, str(case_id), "answered in full")
    later_alert = world.take(received(3, partner="FR-SIRENE", refs=[alert]))
    assert world.case_of(later_alert) is None  # only open cases gather by reference
    late_reply = world.take(received(4, in_reply_to=reply.reference))
    assert world.case_of(late_reply) == case_id
    view = world.cases.view(HANDLER, str(case_id))
    assert view.case.status == "open" and view.case.closed_at is None
    assert [event.kind for event in view.timeline][-3:] == ["closed", "reopened", "linked"]


def test_a_fault_in_grouping_refuses_nothing_and_regroup_catches_up(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    request = world.take(received(1))
    with world.engine.begin() as connection:
        connection.execute(text("DROP TABLE case_events"))
    with caplog.at_level(logging.ERROR, logger="gateway.cases"):
        reply = world.take(received(2, in_reply_to=request.reference))
    assert world.ledger.get(reply.id).reference == reply.reference  # accepted and recorded
    assert world.case_of(reply) is None and world.case_of(request) is None
    assert f"ledger {reply.id} not grouped" in caplog.text
    assert request.reference not in caplog.text
    assert world.audit.verify() == []
    case_events.create(world.engine)
    assert world.cases.regroup() == 1
    assert world.case_of(reply) == world.case_of(request) is not None
    assert world.cases.regroup() == 0  # nothing left to group


def look_up_rows(world: World) -> set[tuple[object, ...]]:
    with world.engine.connect() as connection:
        return set(connection.execute(select(case_references)).all())


def assert_look_up_kept(world: World) -> None:
    """The grouping's look-up table, as the changes kept it, is what the index and the
    membership make of it from scratch."""
    kept = look_up_rows(world)
    with world.ledger.transaction() as tx:
        case_refs.refill_in(tx)
    assert kept == look_up_rows(world)


def test_an_open_case_beyond_a_hundred_holders_in_a_closed_case_is_found(world: World) -> None:
    """A reference held by more messages in closed cases than a bounded read of holders takes:
    the messages in no case holding it and the open case they form are still found."""
    alert = ref("sis-alert", "SE77")
    first = world.take(received(1, refs=[alert]))
    for number in range(2, 103):
        world.take(received(number, refs=[alert]))
    closed = world.case_of(first)
    assert closed is not None
    assert world.cases.view(HANDLER, str(closed)).case.members == 102
    world.cases.close(HANDLER, str(closed), "done")
    lone = world.take(received(103, partner="FR-SIRENE", refs=[alert]))
    assert world.case_of(lone) is None  # only closed cases hold it
    gathering = world.take(received(104, partner="DE-SIRENE", refs=[alert]))
    opened = world.case_of(gathering)
    assert opened not in (None, closed)
    assert world.case_of(lone) == opened
    joining = world.take(received(105, partner="SE-SIRENE", refs=[alert]))
    assert world.case_of(joining) == opened
    assert_look_up_kept(world)


def test_the_look_up_follows_unlink_merge_close_reopen_and_regroup(world: World) -> None:
    alert = ref("sis-alert", "SE88")
    request = world.take(received(1, refs=[alert]))
    reply = world.take(received(2, in_reply_to=request.reference))
    first = world.case_of(request)
    assert first is not None and world.case_of(reply) == first
    assert_look_up_kept(world)
    world.cases.unlink(HANDLER, str(first), request, "not this matter")
    assert_look_up_kept(world)
    gathering = world.take(received(3, partner="FR-SIRENE", refs=[alert]))
    second = world.case_of(gathering)
    assert second not in (None, first)  # the unlinked request, in no case, is gathered
    assert world.case_of(request) == second
    world.cases.close(HANDLER, str(second), "answered")
    assert_look_up_kept(world)
    late = world.take(received(4, partner="DE-SIRENE", refs=[alert]))
    assert world.case_of(late) is None  # only a closed case holds it
    world.cases.reopen(HANDLER, str(second), "new facts")
    assert_look_up_kept(world)
    assert world.case_of(world.take(received(5, partner="SE-SIRENE", refs=[alert]))) == second
    world.cases.merge(HANDLER, str(second), str(first), "one matter")
    assert_look_up_kept(world)
    assert world.case_of(world.take(received(6, partner="PL-SIRENE", refs=[alert]))) == first
    assert world.case_of(late) is None
    assert world.cases.regroup() == 1  # the late message finds the open case now holding it
    assert world.case_of(late) == first
    assert_look_up_kept(world)


def test_a_reason_over_its_limit_or_not_one_printable_line_is_refused_and_changes_nothing(
    world: World,
) -> None:
    request = world.take(received(1))
    world.take(received(2, in_reply_to=request.reference))
    lone = world.take(received(3))
    case = world.cases.find(HANDLER, str(world.case_of(request)))
    before = world.cases.view(HANDLER, case.number)
    for reason in ("x" * (REASON_LIMIT + 1), "first line\x00second"):
        with pytest.raises(CaseRefused, match=f"1 to {REASON_LIMIT} characters"):
            world.cases.link(HANDLER, case.number, lone, reason)
    after = world.cases.view(HANDLER, case.number)
    assert (len(after.members), len(after.timeline)) == (len(before.members), len(before.timeline))
    assert world.cases.link(HANDLER, case.number, lone, "x" * REASON_LIMIT).members == 3


def test_actions_by_hand_with_roles_reasons_timeline_and_audit(world: World) -> None:
    request = world.take(received(1))
    reply = world.take(received(2, in_reply_to=request.reference))
    lone = world.take(received(3))
    elsewhere = world.take(received(4, desk="interpol"))
    case = world.cases.find(HANDLER, str(world.case_of(request)))
    with pytest.raises(CaseRefused, match="reason is required"):
        world.cases.link(HANDLER, case.number, lone, "   ")
    with pytest.raises(CaseNotFound):
        world.cases.find(OTHER_HANDLER, case.number)  # another desk's case: not found
    with pytest.raises(CaseNotFound):
        world.cases.link(HANDLER, case.number, elsewhere, "related")  # a message out of scope
    with pytest.raises(CaseRefused, match="sees no cases"):
        world.cases.listed(OPERATOR)
    assert [found.id for found in world.cases.listed(AUDITOR)] == [case.id]
    with pytest.raises(CaseRefused, match="may not change"):
        world.cases.close(AUDITOR, case.number, "read only")
    linked = world.cases.link(HANDLER, case.number.lower(), lone, "same subject NO-2026-000003")
    assert linked.members == 3
    with pytest.raises(CaseRefused, match="already"):
        world.cases.link(HANDLER, case.number, lone, "twice")
    assert world.cases.unlink(HANDLER, case.number, lone, "not related").members == 2
    other = world.cases.open_around(HANDLER, lone, "a new matter")
    merged = world.cases.merge(HANDLER, other.number, case.number, "one matter after all")
    assert merged.members == 3
    gone = world.cases.find(HANDLER, other.number)
    assert (gone.status, gone.merged_into, gone.members) == ("closed", case.id, 0)
    with pytest.raises(CaseRefused, match="supervisor"):
        world.cases.set_desk(HANDLER, case.number, "interpol", "their matter")
    moved = world.cases.set_desk(SUPERVISOR, case.number, "interpol", "their matter")
    assert moved.desk == "interpol"
    with pytest.raises(CaseNotFound):
        world.cases.close(HANDLER, case.number, "no longer mine")
    closed = world.cases.close(OTHER_HANDLER, case.number, "done")
    assert (closed.status, closed.closed_by) == ("closed", "ion")
    with pytest.raises(CaseRefused, match="is closed"):
        world.cases.close(OTHER_HANDLER, case.number, "again")
    with pytest.raises(CaseRefused, match="reopen it first"):
        world.cases.link(OTHER_HANDLER, case.number, elsewhere, "late")
    assert world.cases.reopen(OTHER_HANDLER, case.number, "new facts").status == "open"
    kinds = [entry.kind for entry in world.audit.entries() if entry.kind.startswith("case.")]
    assert kinds == [
        "case.linked",
        "case.unlinked",
        "case.opened",
        "case.merged",
        "case.desk",
        "case.closed",
        "case.reopened",
    ]
    assert all(entry.reference for entry in world.audit.entries() if entry.kind in kinds)
    timeline = [event.kind for event in world.cases.view(SUPERVISOR, case.number).timeline]
    assert timeline[-6:] == ["linked", "unlinked", "merged", "desk", "closed", "reopened"]
    assert world.audit.verify() == []
    assert reply.id in {member.message_id for member in world.cases.view(AUDITOR, "1").members}


def test_the_listing_counts_each_case_s_members_in_its_own_range(world: World) -> None:
    """Each listed case with its members counted (none for one merged away), by a count over
    that case's range of ix_case_members_case, never over every membership of the ledger."""
    request = world.take(received(1))
    world.take(received(2, in_reply_to=request.reference))
    world.take(received(3, in_reply_to=request.reference))
    lone = world.take(received(4))
    other = world.take(received(5))
    chained = world.cases.find(HANDLER, str(world.case_of(request)))
    alone = world.cases.open_around(HANDLER, lone, "a matter of its own")
    merged = world.cases.open_around(HANDLER, other, "the same matter")
    world.cases.merge(HANDLER, merged.number, chained.number, "one matter after all")
    with statements_run(world.engine, "case_members") as statements:
        listed = world.cases.listed(SUPERVISOR)

    counted = {case.number: case.members for case in listed}
    assert counted == {chained.number: 4, alone.number: 1, merged.number: 0}
    if world.engine.dialect.name != "sqlite":
        return
    [(statement, parameters)] = statements
    with world.engine.connect() as connection:
        plan = sqlite_plan(connection, statement, parameters)
    assert "SEARCH case_members USING COVERING INDEX ix_case_members_case (case_id=?)" in plan
    assert "SCAN case_members" not in plan, plan


def test_retention_runs_from_the_closure_of_a_case_by_its_longest_rule(world: World) -> None:
    rules = (
        RetentionRule(keep=timedelta(days=10), form="G"),
        RetentionRule(keep=timedelta(days=30), channel="sirene"),
    )
    request = world.take(received(1))  # G: 10 days
    reply = world.take(received(2, in_reply_to=request.reference, form="M"))  # 30 days
    lone = world.take(received(3))
    forever = world.take(received(4, channel="interpol", form="IP-MSG"))  # no rule: kept
    case_id = world.case_of(request)
    assert case_id is not None
    years_later = START + timedelta(days=400)
    assert world.due(rules, years_later) == {lone.id}  # an open case: not due
    world.clock.set(START + timedelta(days=100))
    world.cases.close(HANDLER, str(case_id), "done")
    closed_at = START + timedelta(days=100)
    assert world.due(rules, closed_at + timedelta(days=29)) == {lone.id}
    assert world.due(rules, closed_at + timedelta(days=30)) == {lone.id, request.id, reply.id}
    # A member that no rule matches keeps its whole case.
    world.cases.reopen(HANDLER, str(case_id), "one more")
    world.cases.link(HANDLER, str(case_id), forever, "same matter")
    world.cases.close(HANDLER, str(case_id), "done again")
    assert world.due(rules, years_later) == {lone.id}
    assert forever.id not in world.due(rules, years_later)
