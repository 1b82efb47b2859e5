"""Reply deadlines that wait for a clarification, on a real ledger (SQLite file and PostgreSQL) and
a FakeClock: paused when a request for clarification is received or sent, never reminded nor
escalated while paused, resumed with the time it had left when the clarification is answered, in
both directions; a reply or a handler's close while paused; the listing, the audit chain and the
daily figures."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from trackingkit import CATALOGUE, START, Tracking

from gateway.store import deadline_rows, statistics
from gateway.store.ledger import MessageHead, as_utc
from gateway.store.states import DeadlineState
from gateway.store.unit import writing
from gateway.tracking.deadlines import reply_deadline
from gateway.tracking.matching import Matcher
from gateway.tracking.sweep import SweepResult, close

H = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def tracking(tmp_path: Path, ledger_engine: Engine) -> Tracking:
    return Tracking.make(tmp_path, ledger_engine)


def matcher(tracking: Tracking) -> Matcher:
    return Matcher(tracking.ledger, tracking.audit, CATALOGUE)


def opened(tracking: Tracking, message: int, form: str, priority: str, owed_by: str) -> int:
    """The reply deadline of ``form``'s policy, opened at the clock's now."""
    planned = reply_deadline(
        CATALOGUE.get(form), priority, {}, tracking.clock.now(), tracking.config.deadlines
    )
    assert planned is not None
    return tracking.open_reply(message, planned, owed_by=owed_by)


def sent(tracking: Tracking, message: int) -> None:
    """What delivery does at the 250 of our form: the matcher in its transaction."""
    row = tracking.ledger.get(message)
    with writing(tracking.ledger.engine) as tx:
        matcher(tracking).reply_sent_in(tx, MessageHead.of(row))


def received(tracking: Tracking, message: int) -> None:
    """What the hand-off does with a partner's form that names one of ours."""
    matcher(tracking).reply_received(tracking.ledger.get(message))


def event_kinds(tracking: Tracking, message: int) -> list[str]:
    return [kind for _, kind, _ in tracking.ledger.events_of(message)]


def test_the_partner_asks_our_request_waits_then_runs_with_the_time_it_had_left(
    tracking: Tracking,
) -> None:
    # Our urgent Art. 40 request: the partner owes the answer within 4 hours.
    request = tracking.record(
        direction="outbound", form="ART40-REQUEST", reference="RO-2026-000210"
    )
    deadline = opened(tracking, request, "ART40-REQUEST", "urgent", "partner")
    assert as_utc(tracking.row(request).due) == START + 4 * H
    sweeper = tracking.sweeper()

    # One hour in, the partner asks for clarification: our clock stops with 3 hours left.
    tracking.clock.set(START + H)
    question = tracking.record(
        form="CLARIFICATION", in_reply_to="RO-2026-000210", reference="NO-2026-000414"
    )
    received(tracking, question)
    row = tracking.row(request)
    assert row.state == DeadlineState.PAUSED
    assert tracking.ledger.get(request).state == "sent"  # a clarification answers nothing
    assert tracking.audit_kinds() == ["deadline.paused"]
    paused = tracking.audit.entries()[-1]
    assert (paused.reference, paused.form) == ("RO-2026-000210", "ART40-REQUEST")
    assert "paused by CLARIFICATION NO-2026-000414: 3 h 00 min left" in paused.reason
    assert "deadline-paused" in event_kinds(tracking, request)

    # Reminders (2 h, 3 h 36) and the breach (4 h) pass while paused: nothing fires.
    for at in (2 * H, 3 * H + 36 * MINUTE, 4 * H, 5 * H + 59 * MINUTE):
        tracking.clock.set(START + at)
        assert sweeper.sweep() == SweepResult()
    assert tracking.desk("sirene").notices() == [] and tracking.desk("duty").notices() == []
    assert sweeper.next_due() is None  # the sweep's index holds nothing to do

    # Six hours in, our answer to the clarification goes out: 3 hours left again, due at 9 h.
    tracking.clock.set(START + 6 * H)
    answer = tracking.record(
        direction="outbound",
        form="CLARIFICATION-ANSWER",
        reference="RO-2026-000212",
        in_reply_to="NO-2026-000414",
    )
    sent(tracking, answer)
    row = tracking.row(request)
    assert row.state == DeadlineState.OPEN
    assert tracking.ledger.get(question).state == "answered"  # the clarification is answered
    assert tracking.audit_kinds() == ["deadline.paused", "deadline.resumed"]
    assert "after 5 h 00 min, due 2026-11-25T17:00:00Z" in tracking.audit.entries()[-1].reason
    assert row.paused_seconds == 5 * 3600 and row.paused_at is None

    # The window [opened + 5 h, 9 h]: reminders at 7 h and 8 h 36, escalation at 9 h.
    assert sweeper.next_due() == START + 7 * H
    tracking.clock.set(START + 7 * H - MINUTE)
    assert sweeper.sweep() == SweepResult()
    tracking.clock.set(START + 7 * H)
    assert sweeper.sweep() == SweepResult(reminders=1)
    text = tracking.desk("sirene").read(f"notice.reminder.{deadline}.1")
    assert "(2 h 00 min left)" in text
    tracking.clock.set(START + 8 * H + 36 * MINUTE)
    assert sweeper.sweep() == SweepResult(reminders=1)
    tracking.clock.set(START + 9 * H)
    assert sweeper.sweep() == SweepResult(escalations=1)
    assert tracking.desk("duty").notices() == [f"notice.escalation.{deadline}.1"]
    assert tracking.audit.verify() == []


def test_we_ask_the_partner_s_request_waits_then_our_reply_meets_it(tracking: Tracking) -> None:
    # The partner's Art. 40(2) notification: our desk owes the answer within the 5 hours.
    request = tracking.record(form="ART40-URGENT", reference="SE-2026-004512", partner="NO-SIRENE")
    deadline = opened(tracking, request, "ART40-URGENT", "urgent", "desk")
    sweeper = tracking.sweeper()

    # 30 minutes in, our request for clarification goes out: 4 h 30 left, our clock stops.
    tracking.clock.set(START + 30 * MINUTE)
    question = tracking.record(
        direction="outbound",
        form="CLARIFICATION",
        reference="RO-2026-000400",
        in_reply_to="SE-2026-004512",
    )
    sent(tracking, question)
    assert tracking.row(request).state == DeadlineState.PAUSED
    assert tracking.ledger.get(request).state == "delivered"  # not answered by a question
    tracking.clock.set(START + 10 * H)
    assert sweeper.sweep() == SweepResult()
    with tracking.ledger.reading() as tx:
        [listed] = [item for item in deadline_rows.listed(tx) if item.reference == "SE-2026-004512"]
        assert deadline_rows.listed(tx, due_by=START + 10 * H) == []  # paused: never overdue
    assert (listed.state, listed.paused_at) == ("paused", START + 30 * MINUTE)
    assert listed.due - (START + 30 * MINUTE) == 4 * H + 30 * MINUTE  # the time it has left

    # The partner's answer to our clarification arrives at 10 h: due at 14 h 30.
    tracking.clock.set(START + 10 * H)
    answer = tracking.record(
        form="CLARIFICATION-ANSWER", reference="NO-2026-000420", in_reply_to="RO-2026-000400"
    )
    received(tracking, answer)
    row = tracking.row(request)
    assert row.state == DeadlineState.OPEN
    assert tracking.ledger.get(question).state == "answered"
    assert as_utc(row.due) == START + 14 * H + 30 * MINUTE
    # Reminders of the shifted window: 50 % at 12 h, not at the old 2 h 30 (long passed).
    tracking.clock.set(START + 10 * H + MINUTE)
    assert sweeper.sweep() == SweepResult()
    tracking.clock.set(START + 12 * H)
    assert sweeper.sweep() == SweepResult(reminders=1)
    assert tracking.desk("sirene").notices() == [f"notice.reminder.{deadline}.1"]

    # Our reply meets it.
    tracking.clock.set(START + 13 * H)
    reply = tracking.record(
        direction="outbound", form="M", reference="RO-2026-000401", in_reply_to="SE-2026-004512"
    )
    sent(tracking, reply)
    assert tracking.row(request).state == DeadlineState.MET
    assert tracking.ledger.get(request).state == "answered"
    assert tracking.audit_kinds() == ["deadline.paused", "deadline.resumed", "deadline.reminder"]
    assert tracking.audit.verify() == []


def test_a_reply_while_paused_meets_the_deadline_on_time(tracking: Tracking) -> None:
    request = tracking.record(direction="outbound", form="I", reference="RO-2026-000500")
    opened(tracking, request, "I", "normal", "partner")  # 12 hours
    tracking.clock.set(START + 11 * H)
    question = tracking.record(
        form="CLARIFICATION", reference="NO-2026-000501", in_reply_to="RO-2026-000500"
    )
    received(tracking, question)
    # The partner answers anyway, well after the old due instant: met, and on time.
    tracking.clock.set(START + 20 * H)
    refusal = tracking.record(
        form="REFUSAL", reference="NO-2026-000502", in_reply_to="RO-2026-000500"
    )
    received(tracking, refusal)
    row = tracking.row(request)
    assert row.state == DeadlineState.MET
    assert tracking.ledger.get(request).state == "answered"
    assert as_utc(row.closed_at) <= as_utc(row.due) == START + 21 * H
    assert row.paused_seconds == 9 * 3600
    assert "deadline-resumed" in event_kinds(tracking, request)
    with tracking.ledger.reading() as tx:
        day = statistics.gather(tx, (START + 21 * H).date())
    assert day.replies.get(("partner", "met")) == 1


def test_a_paused_deadline_is_not_counted_missed_and_a_handler_can_close_it(
    tracking: Tracking,
) -> None:
    request = tracking.record(form="ART41-NOTICE", reference="NO-2026-000430")
    opened(tracking, request, "ART41-NOTICE", "urgent", "desk")  # 2 hours
    tracking.clock.set(START + H)
    question = tracking.record(
        direction="outbound",
        form="CLARIFICATION",
        reference="RO-2026-000431",
        in_reply_to="NO-2026-000430",
    )
    sent(tracking, question)
    with tracking.ledger.reading() as tx:
        day = statistics.gather(tx, START.date())
    assert day.replies == {}  # due at 10:00 but paused: neither met nor missed

    # A second clarification while paused changes nothing.
    again = tracking.record(
        direction="outbound",
        form="CLARIFICATION",
        reference="RO-2026-000432",
        in_reply_to="NO-2026-000430",
    )
    sent(tracking, again)
    assert tracking.audit_kinds() == ["deadline.paused"]
    assert event_kinds(tracking, request)[-1] == "clarification"

    tracking.clock.set(START + 5 * H)
    assert close(tracking.ledger, tracking.audit, "NO-2026-000430", "by phone", "ana") == 1
    row = tracking.row(request)
    assert row.state == DeadlineState.CLOSED
    assert as_utc(row.due) == START + 6 * H  # 1 h was left: resumed at 5 h, then closed
    assert tracking.audit_kinds() == ["deadline.paused", "deadline.closed"]


def test_only_an_open_reply_deadline_pauses_and_only_a_paused_one_resumes(
    tracking: Tracking,
) -> None:
    message = tracking.record(form="G", reference="NO-2026-000600")
    opened(tracking, message, "G", "urgent", "desk")
    with writing(tracking.ledger.engine) as tx:
        assert deadline_rows.resume_in(tx, message, "reply", START) is None  # not paused
        assert deadline_rows.pause_in(tx, message, "receipt", START) is None  # no such deadline
        tracking.ledger.close_deadline_in(tx, message, "reply", DeadlineState.MET, "answered")
        assert deadline_rows.pause_in(tx, message, "reply", START) is None  # met: final
    assert tracking.row(message).state == DeadlineState.MET


def test_a_clarification_of_a_message_we_do_not_have_pauses_nothing(tracking: Tracking) -> None:
    question = tracking.record(
        form="CLARIFICATION", reference="NO-2026-000700", in_reply_to="RO-2026-999999"
    )
    received(tracking, question)
    assert tracking.audit_kinds() == []
