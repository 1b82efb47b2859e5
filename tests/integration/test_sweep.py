"""The deadline sweep on a real ledger (SQLite file and PostgreSQL): notices in the desks'
Maildirs at the right moments, once each, across restarts, outages, clock jumps and two
sweepers at once; missing receipts re-sent then unacknowledged; closing by Reference."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from trackingkit import CATALOGUE, START, Tracking, url_of

from gateway.store.ledger import deadlines, events, make_engine
from gateway.store.states import OutboundState
from gateway.tracking.deadlines import reply_deadline
from gateway.tracking.sweep import SweepResult

H = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def tracking(tmp_path: Path, ledger_engine: Engine) -> Tracking:
    return Tracking.make(tmp_path, ledger_engine)


def received_g(tracking: Tracking, reference: str = "NO-2026-000123") -> tuple[int, int]:
    """An urgent SIRENE G received now, its 12-hour reply deadline owed by desk sirene."""
    message = tracking.record(reference=reference)
    planned = reply_deadline(
        CATALOGUE.get("G"), "urgent", {}, tracking.clock.now(), tracking.config.deadlines
    )
    assert planned is not None
    return message, tracking.open_reply(message, planned)


def test_reminders_then_escalations_each_once(tracking: Tracking) -> None:
    message, deadline = received_g(tracking)
    sirene, duty = tracking.desk("sirene"), tracking.desk("duty")
    sweeper = tracking.sweeper()
    assert sweeper.next_due() == START + 6 * H

    tracking.clock.set(START + 6 * H - MINUTE)
    assert sweeper.sweep().actions == 0
    tracking.clock.set(START + 6 * H)
    assert sweeper.sweep() == SweepResult(reminders=1)
    assert sirene.notices() == [f"notice.reminder.{deadline}.1"]
    text = sirene.read(f"notice.reminder.{deadline}.1")
    assert "Subject: [NOTICE] [URGENT] Reminder: reply to NO-SIRENE G NO-2026-000123 due" in text
    assert "(6 h 00 min left)" in text
    assert sweeper.sweep().actions == 0  # the same moment again: nothing

    tracking.clock.set(START + timedelta(hours=10, minutes=48))
    assert sweeper.sweep() == SweepResult(reminders=1)
    tracking.clock.set(START + 12 * H)
    assert sweeper.sweep() == SweepResult(escalations=1)
    assert duty.notices() == [f"notice.escalation.{deadline}.1"]
    assert f"notice.escalation.{deadline}.1" in sirene.notices()  # the owning desk knows too
    tracking.clock.set(START + timedelta(hours=12, minutes=30))
    assert sweeper.sweep().actions == 0
    tracking.clock.set(START + 13 * H)
    assert sweeper.sweep() == SweepResult(escalations=1)

    row = tracking.row(message)
    assert (row.reminders_sent, row.escalations, row.state) == (2, 2, "open")
    assert sweeper.next_due() == START + 14 * H
    assert tracking.audit_kinds() == ["deadline.reminder"] * 2 + ["deadline.escalation"] * 2
    kinds = [kind for _, kind, _ in tracking.ledger.events_of(message)]
    assert kinds == ["delivered", "reminder", "reminder", "escalation", "escalation"]
    assert tracking.audit.verify() == []


def test_a_restart_sends_nothing_twice(tracking: Tracking) -> None:
    _, deadline = received_g(tracking)
    tracking.clock.set(START + 6 * H)
    assert tracking.sweeper().sweep().reminders == 1
    for _ in range(3):  # three restarts at the same moment, and later ones
        assert tracking.sweeper().sweep().actions == 0
    tracking.clock.set(START + 8 * H)
    assert tracking.sweeper().sweep().actions == 0
    assert tracking.desk("sirene").notices() == [f"notice.reminder.{deadline}.1"]
    assert tracking.audit_kinds() == ["deadline.reminder"]


def test_a_gateway_down_over_two_reminders_sends_the_latest_once(tracking: Tracking) -> None:
    message, deadline = received_g(tracking)
    tracking.clock.set(START + 11 * H)  # down since START: both reminder instants passed
    assert tracking.sweeper().sweep() == SweepResult(reminders=1)
    assert tracking.sweeper().sweep().actions == 0
    assert tracking.desk("sirene").notices() == [f"notice.reminder.{deadline}.2"]
    assert tracking.row(message).reminders_sent == 2


def test_a_gateway_down_over_the_breach_escalates_once(tracking: Tracking) -> None:
    message, deadline = received_g(tracking)
    tracking.clock.set(START + timedelta(hours=17, minutes=10))
    sweeper = tracking.sweeper()
    assert sweeper.sweep() == SweepResult(escalations=1)
    assert sweeper.sweep().actions == 0
    assert tracking.desk("duty").notices() == [f"notice.escalation.{deadline}.1"]
    assert tracking.desk("sirene").notices("reminder") == []
    assert sweeper.next_due() == START + 18 * H
    tracking.clock.set(START + 18 * H)
    assert sweeper.sweep() == SweepResult(escalations=1)
    assert tracking.row(message).escalations == 2


def test_the_clock_jumping_back_and_forward(tracking: Tracking) -> None:
    message, _ = received_g(tracking)
    sweeper = tracking.sweeper()
    tracking.clock.set(START + 13 * H)
    assert sweeper.sweep() == SweepResult(escalations=1)  # nothing before: the breach passed
    for back in (START + 2 * H, START + 6 * H, START + 11 * H, START + 13 * H):
        tracking.clock.set(back)
        assert sweeper.sweep().actions == 0, back
    tracking.clock.set(START + 5 * 24 * H)  # forward by days: one escalation, not a burst
    assert sweeper.sweep() == SweepResult(escalations=1)
    assert sweeper.sweep().actions == 0
    row = tracking.row(message)
    assert (row.reminders_sent, row.escalations) == (0, 2)
    assert tracking.audit_kinds() == ["deadline.escalation"] * 2


def test_a_partner_reply_reminds_our_desk_and_escalates_to_duty(tracking: Tracking) -> None:
    message = tracking.record(
        direction="outbound",
        form="IP-QUERY",
        reference="RO-2026-000001",
        partner="RS-NCB",
        channel="interpol",
        priority="normal",
        state="acknowledged",
    )
    planned = reply_deadline(
        CATALOGUE.get("IP-QUERY"), "normal", {}, START, tracking.config.deadlines
    )
    assert planned is not None
    deadline = tracking.open_reply(message, planned, owed_by="partner")
    tracking.clock.set(START + 12 * H)
    assert tracking.sweeper().sweep().reminders == 1
    text = tracking.desk("sirene").read(f"notice.reminder.{deadline}.1")
    assert "Reminder: no reply yet from RS-NCB to our IP-QUERY RO-2026-000001 due" in text
    assert "owed by RS-NCB" in text
    tracking.clock.set(START + 24 * H)
    assert tracking.sweeper().sweep().escalations == 1
    assert tracking.desk("duty").notices() == [f"notice.escalation.{deadline}.1"]


def sent_form(tracking: Tracking, key: str = "out.RO-2026-000007") -> int:
    """A form we sent (state sent), its spooled item in the outbound done/, as after a 250."""
    tracking.outbound.put(
        key,
        b"the sealed message",
        {"to": "sirene@no.example", "kind": "form", "attempts": 2, "last_error": "451"},
    )
    claimed = tracking.outbound.claim([key])
    assert len(claimed) == 1 and tracking.outbound.finish(claimed) == []
    return tracking.record(
        direction="outbound",
        reference="RO-2026-000007",
        state="sent",
        spool_key=key,
        priority="normal",
    )


def test_a_missing_receipt_is_sent_again_then_unacknowledged(tracking: Tracking) -> None:
    message = sent_form(tracking)
    deadline = tracking.open_receipt(message, timedelta(minutes=15))
    sweeper = tracking.sweeper()
    tracking.clock.set(START + 15 * MINUTE)
    assert sweeper.sweep() == SweepResult(resends=1)
    copy = tracking.outbound.get("out.RO-2026-000007.resend.1")
    assert copy.path.parent.name == "new"
    assert copy.payload() == b"the sealed message"
    assert copy.meta == {"to": "sirene@no.example", "kind": "resend", "ledger_id": message}
    row = tracking.row(message, "receipt")
    assert (row.resends, row.state) == (1, "open")
    assert sweeper.next_due() == START + 30 * MINUTE

    tracking.clock.set(START + 30 * MINUTE)
    assert sweeper.sweep() == SweepResult(resends=1)
    assert tracking.outbound.exists("out.RO-2026-000007.resend.2")
    tracking.clock.set(START + 45 * MINUTE)
    assert sweeper.sweep() == SweepResult(unacknowledged=1)
    assert sweeper.sweep().actions == 0
    assert tracking.ledger.get(message).state == "unacknowledged"
    row = tracking.row(message, "receipt")
    assert (row.state, row.resends, row.next_action_at) == ("missed", 2, None)
    assert tracking.desk("sirene").notices() == [f"notice.unacknowledged.{deadline}.2"]
    kinds = [kind for _, kind, _ in tracking.ledger.events_of(message)]
    assert kinds == ["sent", "resend", "resend", "unacknowledged"]
    assert tracking.audit_kinds() == ["deadline.resend"] * 2 + ["deadline.unacknowledged"]
    assert tracking.audit.verify() == []


def test_a_receipt_recorded_but_not_closed_is_met(tracking: Tracking) -> None:
    message = sent_form(tracking)
    tracking.open_receipt(message, timedelta(minutes=15))
    assert tracking.ledger.set_state(
        message, OutboundState.ACKNOWLEDGED, expected=OutboundState.SENT
    )
    tracking.clock.set(START + H)
    assert tracking.sweeper().sweep() == SweepResult(settled=1)
    assert tracking.row(message, "receipt").state == "met"
    assert not tracking.outbound.exists("out.RO-2026-000007.resend.1")


def test_without_the_original_the_message_is_unacknowledged_at_once(tracking: Tracking) -> None:
    message = tracking.record(direction="outbound", state="sent", spool_key="out.gone")
    tracking.open_receipt(message, timedelta(minutes=15))
    tracking.clock.set(START + H)
    assert tracking.sweeper().sweep() == SweepResult(unacknowledged=1)
    assert tracking.ledger.get(message).state == "unacknowledged"


def test_close_by_reference(tracking: Tracking) -> None:
    message, _ = received_g(tracking)
    sweeper = tracking.sweeper()
    assert sweeper.close("NO-2026-000123", "answered by telephone", "alice") == 1
    assert sweeper.close("NO-2026-000123", "again", "alice") == 0
    row = tracking.row(message)
    assert (row.state, row.close_reason, row.next_action_at) == (
        "closed",
        "answered by telephone",
        None,
    )
    tracking.clock.set(START + 13 * H)
    assert sweeper.sweep().actions == 0
    assert sweeper.next_due() is None
    entry = tracking.audit.entries()[-1]
    assert (entry.kind, entry.reference, entry.form) == ("deadline.closed", "NO-2026-000123", "G")
    assert entry.reason == "reply deadline closed by alice: answered by telephone"


def test_a_failing_desk_leaves_the_deadline_for_the_next_sweep(tracking: Tracking) -> None:
    message, deadline = received_g(tracking)
    maildir = tracking.config.desk("sirene").maildir
    maildir.parent.mkdir(parents=True, exist_ok=True)
    maildir.write_text("not a folder")  # the Maildir cannot be made
    tracking.clock.set(START + 6 * H)
    assert tracking.sweeper().sweep() == SweepResult(failed=1)
    assert tracking.row(message).reminders_sent == 0
    maildir.unlink()
    assert tracking.sweeper().sweep() == SweepResult(reminders=1)
    assert tracking.desk("sirene").notices() == [f"notice.reminder.{deadline}.1"]


def test_two_sweepers_at_the_same_moment_send_each_reminder_once(
    tracking: Tracking, ledger_engine: Engine
) -> None:
    """Two threads, each with its own engine (as two gateways on one ledger)."""
    count = 40
    for n in range(count):
        received_g(tracking, reference=f"NO-2026-{n:06d}")
    engines = [make_engine(url_of(ledger_engine)) for _ in range(2)]
    sweepers = [tracking.sweeper(engine) for engine in engines]
    for sweeper in sweepers:
        sweeper.batch = 7  # several batches each, interleaved
    tracking.clock.set(START + 6 * H)
    barrier = threading.Barrier(2)
    results: list[SweepResult] = []

    def sweep(index: int) -> None:
        barrier.wait()
        results.append(sweepers[index].sweep())

    threads = [threading.Thread(target=sweep, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert sum(result.reminders for result in results) == count
    assert sum(result.failed for result in results) == 0
    assert len(tracking.desk("sirene").notices("reminder")) == count
    with ledger_engine.connect() as connection:
        sent = connection.execute(select(func.sum(deadlines.c.reminders_sent))).scalar()
        reminder_events = connection.execute(
            select(func.count()).where(events.c.kind == "reminder")
        ).scalar()
    assert sent == count and reminder_events == count
    assert tracking.audit_kinds() == ["deadline.reminder"] * count
    assert tracking.audit.verify() == []
