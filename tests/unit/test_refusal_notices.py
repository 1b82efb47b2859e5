"""Refusals of partners' messages told to the duty desk: one notice per partner and hour."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select, update
from trackingkit import Tracking

from gateway.core.errors import InvalidForm, StoreUnavailable, UnexpectedSigner
from gateway.store.ledger import refusals
from gateway.tracking.refusal_notices import KEEP, notify_refusals

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DIGEST = "ab" * 32


def refuse(tracking: Tracking, error: Exception, partner: str = "NO-SIRENE") -> int:
    assert isinstance(error, (InvalidForm, StoreUnavailable, UnexpectedSigner))
    return tracking.ledger.record_refusal(partner, DIGEST, error)


def run(tracking: Tracking) -> None:
    notify_refusals(tracking.config, tracking.ledger, tracking.audit, tracking.clock.now())


def pending(tracking: Tracking) -> int:
    with tracking.ledger.engine.connect() as connection:
        rows = connection.execute(select(refusals.c.id).where(refusals.c.notified.is_(None)))
        return len(rows.all())


def test_one_refusal_makes_one_notice_once_its_hour_is_over(
    tmp_path: Path, ledger_engine: Engine
) -> None:
    tracking = Tracking.make(tmp_path, ledger_engine)  # 08:00 UTC
    tracking.clock.advance(12 * MINUTE)
    refuse(tracking, InvalidForm("/FormG/Header/Reference: 'NO-26-1' is not a Reference"))
    run(tracking)
    duty = tracking.desk("duty")
    assert duty.notices() == []  # the hour is not over: more may come
    tracking.clock.advance(48 * MINUTE)  # 09:00
    run(tracking)
    run(tracking)  # a second run tells nothing new
    assert duty.notices() == ["notice.refusals.NO-SIRENE.20261125T08"]
    text = duty.read(duty.notices()[0])
    assert "Subject: [NOTICE] 1 refusal of messages from NO-SIRENE, 2026-11-25 08:00 UTC" in text
    assert "Partner:   NO-SIRENE" in text
    assert "Refusals:  1" in text
    assert "    1  550 5.6.0 InvalidForm" in text
    assert f"2026-11-25T08:12:00Z  {DIGEST}  550 5.6.0 InvalidForm" in text
    assert "550 5.6.0 /FormG/Header/Reference: 'NO-26-1' is not a Reference" in text
    assert pending(tracking) == 0
    assert tracking.desk("sirene").notices() == []
    entry = tracking.audit.entries()[-1]
    assert (entry.kind, entry.partner) == ("refusals.notified", "NO-SIRENE")
    assert "NO-26-1" not in entry.reason  # the reply is never in the audit chain


def test_sixty_refusals_in_an_hour_make_one_notice_saying_sixty(
    tmp_path: Path, ledger_engine: Engine
) -> None:
    tracking = Tracking.make(tmp_path, ledger_engine)
    for minute in range(60):  # a partner retrying every minute, the job running as often
        refuse(tracking, UnexpectedSigner() if minute % 3 else StoreUnavailable())
        run(tracking)
        tracking.clock.advance(MINUTE)
    run(tracking)  # 09:00
    duty = tracking.desk("duty")
    assert duty.notices() == ["notice.refusals.NO-SIRENE.20261125T08"]
    text = duty.read(duty.notices()[0])
    assert "60 refusals of messages from NO-SIRENE" in text
    assert "   40  550 5.7.7 UnexpectedSigner" in text
    assert "   20  451 4.3.0 StoreUnavailable" in text
    assert "... and 40 more" in text
    assert text.count(DIGEST) == 20
    # The next hour makes a notice of its own; another partner's refusals one of theirs.
    for _ in range(3):
        refuse(tracking, UnexpectedSigner())
        refuse(tracking, UnexpectedSigner(), partner="RS-NCB")
        tracking.clock.advance(10 * MINUTE)
    tracking.clock.advance(30 * MINUTE)  # 10:00
    run(tracking)
    assert duty.notices() == [
        "notice.refusals.NO-SIRENE.20261125T08",
        "notice.refusals.NO-SIRENE.20261125T09",
        "notice.refusals.RS-NCB.20261125T09",
    ]
    assert "3 refusals of messages from RS-NCB" in duty.read("notice.refusals.RS-NCB.20261125T09")
    assert pending(tracking) == 0


def test_a_crash_between_the_notice_and_the_mark_leaves_one_notice(
    tmp_path: Path, ledger_engine: Engine
) -> None:
    tracking = Tracking.make(tmp_path, ledger_engine)
    refuse(tracking, UnexpectedSigner())
    refuse(tracking, UnexpectedSigner())
    tracking.clock.advance(HOUR)
    run(tracking)
    with ledger_engine.begin() as connection:  # as if the marking had not been committed
        connection.execute(update(refusals).values(notified=None))
    run(tracking)
    duty = tracking.desk("duty")
    assert duty.notices() == ["notice.refusals.NO-SIRENE.20261125T08"]
    assert "2 refusals" in duty.read(duty.notices()[0])
    assert pending(tracking) == 0


def test_a_refusal_recorded_late_into_a_told_hour_gets_a_notice_of_its_own(
    tmp_path: Path, ledger_engine: Engine
) -> None:
    tracking = Tracking.make(tmp_path, ledger_engine)
    refuse(tracking, UnexpectedSigner())
    tracking.clock.advance(HOUR)
    run(tracking)
    tracking.clock.advance(-30 * MINUTE)  # a session's clock read just before the run's
    late = refuse(tracking, InvalidForm())
    tracking.clock.advance(30 * MINUTE)
    run(tracking)
    duty = tracking.desk("duty")
    assert duty.notices() == [
        "notice.refusals.NO-SIRENE.20261125T08",
        f"notice.refusals.NO-SIRENE.20261125T08.late.{late}",
    ]
    assert "1 refusal of messages" in duty.read(duty.notices()[1])


def test_without_a_duty_desk_the_supervisor_is_told(tmp_path: Path, ledger_engine: Engine) -> None:
    tracking = Tracking.make(tmp_path, ledger_engine)
    config = tracking.config
    tracking.config = replace(config, deadlines=replace(config.deadlines, duty_desk=None))
    refuse(tracking, UnexpectedSigner())
    tracking.clock.advance(HOUR)
    run(tracking)
    assert tracking.desk("duty").notices() == []
    assert tracking.desk("supervisor").notices() == ["notice.refusals.NO-SIRENE.20261125T08"]


def test_rows_older_than_ninety_days_are_purged(tmp_path: Path, ledger_engine: Engine) -> None:
    tracking = Tracking.make(tmp_path, ledger_engine)
    refuse(tracking, UnexpectedSigner())
    tracking.clock.advance(KEEP - MINUTE)
    kept = refuse(tracking, UnexpectedSigner())
    tracking.clock.advance(2 * HOUR)
    run(tracking)
    with ledger_engine.connect() as connection:
        assert connection.execute(select(refusals.c.id)).scalars().all() == [kept]


def test_the_reply_is_cut_to_five_hundred_characters(tmp_path: Path, ledger_engine: Engine) -> None:
    tracking = Tracking.make(tmp_path, ledger_engine)
    refuse(tracking, InvalidForm("x" * 2000))
    with ledger_engine.connect() as connection:
        reply = connection.execute(select(refusals.c.reply)).scalar_one()
    assert len(reply) == 500 and reply.startswith("550 5.6.0 xxx")
