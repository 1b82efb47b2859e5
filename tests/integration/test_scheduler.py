"""The scheduled jobs: retention purge, partner-key check, daily report, once per slot across
gateways, caught up at start; and the APScheduler timer that triggers them (no test waits for a
deadline: the FakeClock reaches it, the timer only has to fire)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpgkit
import pytest
from sqlalchemy import Engine, select, update
from trackingkit import CATALOGUE, START, Tracking, url_of, write_config

from gateway.access.roles import Principal, Role
from gateway.crypto.openpgp import GnuPG
from gateway.service.cases import Cases
from gateway.store import idempotency, shred_rows
from gateway.store.ledger import deadlines, idempotency_keys, job_runs
from gateway.store.states import DeadlineState
from gateway.store.unit import writing
from gateway.tracking.deadlines import reply_deadline
from gateway.tracking.retention import PurgeResult
from gateway.tracking.scheduler import Schedule

H = timedelta(hours=1)
HANDLER = Principal("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}))
D = timedelta(days=1)
RETENTION = """
[[retention]]
form = "G"
keep = "P90D"

[[retention]]
channel = "sirene"
keep = "P30D"
"""


@pytest.fixture
def tracking(tmp_path: Path, ledger_engine: Engine) -> Tracking:
    return Tracking.make(tmp_path, ledger_engine, extra=RETENTION)


def schedule(tracking: Tracking, node: str = "a", **options: object) -> Schedule:
    return Schedule(
        tracking,
        node=node,
        catalogue=CATALOGUE,
        **options,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------ retention


def received(tracking: Tracking, form: str, reference: str, *, done: bool = True) -> int:
    """A received message: its spooled original (handed off: in done/) and desk copies."""
    key = f"NO-SIRENE.{reference}.0123456789abcdef"
    tracking.inbound.put(key, b"raw message and entity", {"raw_length": 11})
    if done:
        assert tracking.inbound.finish(tracking.inbound.claim([key])) == []
    message = tracking.record(form=form, reference=reference, spool_key=key)
    maildir = tracking.config.desk("sirene").maildir
    for folder, name in (("new", f"{message}.{reference}"), ("cur", f"{message}.{reference}:2,S")):
        (maildir / folder).mkdir(parents=True, exist_ok=True)
        (maildir / folder / name).write_bytes(b"desk copy")
    return message


def test_retention_purge_deletes_files_and_keeps_the_ledger(tracking: Tracking) -> None:
    h_form = received(tracking, "H", "NO-2026-000001")
    g_form = received(tracking, "G", "NO-2026-000002")  # first rule: 90 days
    ip_msg = tracking.record(
        form="IP-MSG", reference="RS-2026-000003", partner="RS-NCB", channel="interpol"
    )  # no rule: kept for ever
    waiting = received(tracking, "I", "NO-2026-000004", done=False)  # hand-off not done yet
    tracking.outbound.put("out.RO-2026-000005", b"sealed", {"kind": "form"})
    tracking.outbound.put("out.RO-2026-000005.resend.1", b"sealed", {"kind": "resend"})
    claimed = tracking.outbound.claim(["out.RO-2026-000005", "out.RO-2026-000005.resend.1"])
    assert len(claimed) == 2 and tracking.outbound.finish(claimed) == []
    sent = tracking.record(
        direction="outbound", form="H", reference="RO-2026-000005", spool_key="out.RO-2026-000005"
    )
    jobs = schedule(tracking)
    sirene = tracking.desk("sirene")

    tracking.clock.set(START + 30 * D - 9 * H)  # 23:00 the day before
    assert jobs.purge_once() == PurgeResult()
    assert jobs.purge_once() is None  # today's slot ran
    tracking.clock.set(START + 30 * D + H)
    assert jobs.purge_once() == PurgeResult(messages=2, spool_items=3, desk_copies=2, waiting=1)
    assert not tracking.inbound.exists("NO-SIRENE.NO-2026-000001.0123456789abcdef")
    assert not tracking.outbound.exists("out.RO-2026-000005")
    assert not tracking.outbound.exists("out.RO-2026-000005.resend.1")
    assert tracking.inbound.exists("NO-SIRENE.NO-2026-000002.0123456789abcdef")
    assert sirene.names() == sorted(
        [
            f"{g_form}.NO-2026-000002",
            f"{g_form}.NO-2026-000002:2,S",
            f"{waiting}.NO-2026-000004",
            f"{waiting}.NO-2026-000004:2,S",
        ]
    )
    row = tracking.ledger.get(h_form)
    assert (row.content_sha256, row.raw_sha256, row.state) == ("c" * 64, "d" * 64, "delivered")
    assert tracking.ledger.events_of(h_form)[-1][1:] == (
        "purged",
        "kept P30D: shredded 1 spooled item(s), 2 desk copy(ies), 0 outbox file(s), "
        "0 index entry(ies), 0 draft(s)",
    )
    assert row.shredded_at == START + 30 * D + H
    with tracking.ledger.reading() as tx:
        stub = shred_rows.copies_of(tx, h_form)
    assert [(copy.place, copy.name, copy.size) for copy in stub] == [
        ("desk", f"sirene cur/{h_form}.NO-2026-000001:2,S", 9),
        ("desk", f"sirene new/{h_form}.NO-2026-000001", 9),
        ("inbound-spool", "done/NO-SIRENE.NO-2026-000001.0123456789abcdef.msg", 40),
    ]
    assert stub[0].sha256 == hashlib.sha256(b"desk copy").hexdigest()
    assert tracking.ledger.events_of(sent)[-1][1] == "purged"
    assert tracking.ledger.events_of(ip_msg)[-1][1] != "purged"
    assert tracking.audit_kinds("retention.") == ["retention.purged"] * 2
    assert tracking.audit.verify() == []

    tracking.clock.set(START + 31 * D + H)  # the next day: nothing again, the waiting one now
    [(key, _)] = tracking.inbound.queued()
    assert tracking.inbound.finish(tracking.inbound.claim([key])) == []
    assert jobs.purge_once() == PurgeResult(messages=1, spool_items=1, desk_copies=2)
    tracking.clock.set(START + 91 * D)
    assert jobs.purge_once() == PurgeResult(messages=1, spool_items=1, desk_copies=2)
    tracking.clock.set(START + 92 * D)
    assert jobs.purge_once() == PurgeResult()
    assert sirene.names() == []
    assert tracking.audit.verify() == []


def test_retention_purge_of_a_case_waits_for_its_closure_and_its_longest_rule(
    tracking: Tracking,
) -> None:
    """The purge job with cases: a message in an open case is kept past its own rule; once the
    case is closed, all its messages go when the longest of their rules has run from the
    closure (G: 90 days, beside an H of 30)."""
    lone = received(tracking, "H", "NO-2026-000001")
    hit = received(tracking, "G", "NO-2026-000002")
    answer = received(tracking, "H", "NO-2026-000003")
    cases = Cases(tracking.ledger, tracking.audit)
    case = cases.open_around(HANDLER, tracking.ledger.get(hit), "a hit")
    cases.link(HANDLER, case.number, tracking.ledger.get(answer), "its answer")
    jobs = schedule(tracking)

    tracking.clock.set(START + 100 * D)
    assert jobs.purge_once() == PurgeResult(messages=1, spool_items=1, desk_copies=2)
    assert tracking.ledger.events_of(lone)[-1][1] == "purged"
    cases.close(HANDLER, case.number, "answered")  # closed at START + 100 days
    for day in (101, 129, 189):  # H's 30 days have run from the closure, G's 90 not
        tracking.clock.set(START + day * D + H)
        assert jobs.purge_once() == PurgeResult(), day
    tracking.clock.set(START + 190 * D + H)
    assert jobs.purge_once() == PurgeResult(messages=2, spool_items=2, desk_copies=4)
    assert tracking.ledger.events_of(hit)[-1][1] == "purged"
    assert tracking.ledger.events_of(answer)[-1][1] == "purged"
    assert tracking.audit.verify() == []


# ------------------------------------------------------------------ idempotency keys


def test_idempotency_keys_older_than_their_retention_are_purged_hourly(
    tmp_path: Path, ledger_engine: Engine
) -> None:
    tracking = Tracking.make(tmp_path, ledger_engine, extra="[api]\nidempotency_hours = 2\n")
    message = tracking.record(direction="outbound", form="G", reference="RO-2026-000050")
    for key, age in (("old", 3 * H), ("edge", 2 * H), ("young", H + timedelta(minutes=59))):
        with writing(tracking.ledger.engine) as tx:
            idempotency.store_in(
                tx,
                owner="key:cms",
                key=key,
                body_sha256="e" * 64,
                message_id=message,
                answer="{}",
                now=START - age,
            )
    jobs = schedule(tracking)

    def kept() -> list[str]:
        with tracking.ledger.engine.connect() as connection:
            rows = connection.execute(select(idempotency_keys.c.idempotency_key)).scalars()
            return sorted(rows)

    assert jobs.purge_idempotency_once() == 1  # "old": 3 h > 2 h; "edge" is exactly 2 h old
    assert kept() == ["edge", "young"]
    assert jobs.purge_idempotency_once() is None  # this hour's slot ran
    tracking.clock.set(START + H)
    assert jobs.purge_idempotency_once() == 2
    assert kept() == []
    assert tracking.ledger.get(message).reference == "RO-2026-000050"  # the form stays
    with tracking.ledger.engine.connect() as connection:
        runs = connection.execute(
            select(job_runs.c.slot, job_runs.c.outcome).where(job_runs.c.job == "idempotency")
        ).all()
    assert sorted(runs) == [
        ("2026-11-25T08", "done: 1 deleted"),
        ("2026-11-25T09", "done: 2 deleted"),
    ]


# ------------------------------------------------------------------ partner keys


@pytest.fixture(scope="module")
def keyring() -> Iterator[tuple[GnuPG, str, str]]:
    """Our keyring with NO-SIRENE's key expiring in 10 days and RS-NCB's valid for 2 years."""
    ours, partner = gpgkit.new_home(), gpgkit.new_home()
    soon = gpgkit.make_key(partner, "NO <sirene@no.example>", expire="10d")
    later = gpgkit.make_key(partner, "RS <ncb@rs.example>", expire="2y")
    gpg = GnuPG(ours)
    for fingerprint in (soon, later):
        gpg.import_partner_key(gpgkit.export(partner, fingerprint))
    yield gpg, soon, later
    gpg.close()


def test_a_partner_key_expiring_soon_is_told_once_a_day(
    tmp_path: Path, ledger_engine: Engine, keyring: tuple[GnuPG, str, str]
) -> None:
    gpg, soon, later = keyring
    now = datetime.now(UTC).replace(microsecond=0)
    tracking = Tracking.make(tmp_path, ledger_engine, start=now)
    config = write_config(
        tmp_path,
        url_of(ledger_engine),
        no_fingerprint=soon,
        rs_fingerprint=later,
        gnupg_home=gpg.home,
    )
    jobs = Schedule(replace(tracking, config=config), catalogue=CATALOGUE)
    found = jobs.check_keys_once()
    assert found is not None
    assert [(w.partner, w.fingerprint, w.problem) for w in found] == [
        ("NO-SIRENE", soon, "expires")
    ]
    assert jobs.check_keys_once() is None
    supervisor = tracking.desk("supervisor")
    day = now.date().isoformat()
    assert supervisor.notices() == [f"notice.key-expiry.NO-SIRENE.{soon[-16:]}.{day}"]
    text = supervisor.read(supervisor.notices()[0])
    assert "Partner key: the key of NO-SIRENE expires" in text
    assert "(in 9 d 23 h)" in text or "(in 10 d 00 h)" in text
    assert soon in text
    tracking.clock.set(now + D)  # the next day: told again, once
    assert jobs.check_keys_once() is not None
    assert jobs.check_keys_once() is None
    assert len(supervisor.notices("key-expiry")) == 2
    tracking.clock.set(now + 11 * D)
    found = jobs.check_keys_once()
    assert found is not None and [w.problem for w in found] == ["expired"]
    assert tracking.audit_kinds("key.") == ["key.warning"] * 3


# ------------------------------------------------------------------ the daily report


def test_the_daily_report_counts_the_previous_utc_day(tracking: Tracking) -> None:
    clock = tracking.clock
    day = START.replace(hour=0)  # 2026-11-25 00:00 UTC
    # Reply deadlines falling due on the day, opened the day before.
    clock.set(day - 12 * H)
    on_time = tracking.record(form="H", reference="NO-2026-000010", priority="normal")
    late = tracking.record(form="H", reference="NO-2026-000011", priority="normal")
    never = tracking.record(form="I", reference="NO-2026-000012", priority="normal")
    ours = tracking.record(
        direction="outbound", form="G", reference="RO-2026-000013", state="acknowledged"
    )
    planned = reply_deadline(
        CATALOGUE.get("H"), "normal", {}, clock.now(), tracking.config.deadlines
    )
    assert planned is not None  # due at 00:00 on the day
    for message in (on_time, late, never):
        tracking.open_reply(message, planned)
    tracking.open_reply(ours, planned, owed_by="partner")
    with writing(tracking.ledger.engine) as tx:
        clock.set(day - H)
        tracking.ledger.close_deadline_in(tx, on_time, "reply", DeadlineState.MET, "answered")
        tracking.ledger.close_deadline_in(tx, ours, "reply", DeadlineState.CLOSED, "by phone")
        clock.set(day + H)
        tracking.ledger.close_deadline_in(tx, late, "reply", DeadlineState.MET, "answered")
    # The day's traffic.
    clock.set(day + 8 * H)
    tracking.record(form="G", reference="NO-2026-000020")
    tracking.record(form="G", reference="NO-2026-000021")
    tracking.record(form="IP-MSG", reference="RS-2026-000022", partner="RS-NCB", channel="interpol")
    resent = tracking.record(direction="outbound", form="G", reference="RO-2026-000023")
    missed = tracking.record(direction="outbound", form="G", reference="RO-2026-000024")
    fine = tracking.record(direction="outbound", form="H", reference="RO-2026-000025")
    tracking.record(direction="outbound", form="ACK", reference="RO-2026-000026")
    for message in (resent, missed, fine):
        tracking.open_receipt(message, timedelta(minutes=15))
    with writing(tracking.ledger.engine) as tx:
        tx.connection.execute(
            update(deadlines)
            .where(deadlines.c.message_id == resent, deadlines.c.kind == "receipt")
            .values(resends=1)
        )
        tracking.ledger.close_deadline_in(tx, missed, "receipt", DeadlineState.MISSED, "no receipt")
        tracking.ledger.close_deadline_in(tx, fine, "receipt", DeadlineState.MET, "receipt")
    clock.set(day + D - timedelta(seconds=1))
    tracking.record(form="G", reference="NO-2026-000027")  # the last second of the day
    clock.set(day + D)
    tracking.record(form="G", reference="NO-2026-000028")  # the next day: not counted

    clock.set(day + D + 5 * H)  # before 06:00: the last report due covers the day before
    jobs = schedule(tracking)
    earlier = jobs.report_once()
    assert earlier is not None and earlier.name == "notice.report.2026-11-24"
    clock.set(day + D + 6 * H)
    path = jobs.report_once()
    assert path is not None and path.name == "notice.report.2026-11-25"
    assert jobs.report_once() is None
    assert schedule(tracking, node="b").report_once() is None  # another gateway: done already
    text = tracking.desk("supervisor").read(path.name)
    assert (
        "Subject: [NOTICE] Daily report 2026-11-25: 4 received, 3 sent, 2 late receipt(s), "
        "2 reply deadline(s) missed"
    ) in text
    lines = text.splitlines()
    assert "  NO-SIRENE    G             3         2" in lines
    assert "  NO-SIRENE    H             0         1" in lines
    assert "  RS-NCB       IP-MSG        1         0" in lines
    assert "Receipts: 0 received, 1 sent" in lines
    assert "  NO-SIRENE    2 of 3" in lines
    desk_line = next(line for line in lines if "owed by our desks" in line)
    partner_line = next(line for line in lines if "owed by partners" in line)
    assert desk_line.split()[-3:] == ["1", "0", "2"]
    assert partner_line.split()[-3:] == ["0", "1", "0"]
    # the statistics report's daily cut: the receipt that came 0 s after sending (the clock
    # stood still), our reply late by an hour, the outbound forms of the day
    assert "  receipt              1         0         0         0" in lines
    assert "Worst overdue replies (ledger id, reference, overdue seconds)" in lines
    assert any(line.endswith("      3600") for line in lines)
    assert "  NO-SIRENE          3         0         0" in lines
    with tracking.ledger.engine.connect() as connection:
        runs = connection.execute(
            select(job_runs.c.slot, job_runs.c.node, job_runs.c.outcome).where(
                job_runs.c.job == "report"
            )
        ).all()
    assert sorted(run.slot for run in runs) == ["2026-11-24", "2026-11-25"]
    assert all(run.node == "a" and run.outcome.startswith("done") for run in runs)


# ------------------------------------------------------------------ at start, and the timer


async def test_a_gateway_that_was_down_catches_up_once_at_start(tracking: Tracking) -> None:
    message = tracking.record(reference="NO-2026-000030")
    planned = reply_deadline(CATALOGUE.get("G"), "urgent", {}, START, tracking.config.deadlines)
    assert planned is not None
    deadline = tracking.open_reply(message, planned)
    tracking.clock.set(START + 11 * H)  # down over both reminders; the report of the 24th due
    jobs = schedule(tracking)
    await jobs.run_due_now()
    await schedule(tracking, node="b").run_due_now()  # a second gateway starting too
    assert tracking.desk("sirene").notices() == [f"notice.reminder.{deadline}.2"]
    supervisor = tracking.desk("supervisor")
    assert supervisor.notices("report") == ["notice.report.2026-11-24"]
    assert len(supervisor.notices("key-expiry")) == 2  # the test's partner keys are not there
    # nothing listens on the partners' port 25 here: each failed check is told once a day
    assert len(supervisor.notices("cert-expiry")) == 2
    with tracking.ledger.engine.connect() as connection:
        jobs_run = connection.execute(select(job_runs.c.job, job_runs.c.node)).all()
    assert sorted(jobs_run) == [
        ("cert-notice", "a"),
        ("cert-notice", "a"),
        ("idempotency", "a"),
        ("keys", "a"),
        ("purge", "a"),
        ("report", "a"),
    ]


async def wait_for(condition: object, seconds: float = 10.0) -> None:
    """Poll until the timer has done its part (it fires on the wall clock)."""
    limit = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > limit:
            raise AssertionError("the timer did not fire")
        await asyncio.sleep(0.02)


async def test_the_timer_sweeps_at_start_and_plans_the_next_due_instant(
    tracking: Tracking,
) -> None:
    message = tracking.record(reference="NO-2026-000040")
    planned = reply_deadline(CATALOGUE.get("G"), "urgent", {}, START, tracking.config.deadlines)
    assert planned is not None
    deadline = tracking.open_reply(message, planned)
    tracking.clock.set(START + 6 * H)
    woken: list[int] = []
    jobs = schedule(
        tracking,
        wake_outbound=lambda: woken.append(1),
        outbound_next_due=tracking.clock.now,  # something is due now
    )
    jobs.start()
    try:
        sirene = tracking.desk("sirene")
        await wait_for(lambda: sirene.notices() == [f"notice.reminder.{deadline}.1"])
        await wait_for(lambda: "sweep-next" in jobs.next_runs())
        # The next reminder is 4 h 48 min away on the FakeClock: so on the wall clock too.
        expected = datetime.now(UTC) + timedelta(hours=4, minutes=48)
        assert abs(jobs.next_runs()["sweep-next"] - expected) < timedelta(seconds=5)
        assert set(jobs.next_runs()) >= {
            "sweep",
            "purge",
            "keys",
            "report",
            "idempotency",
            "sweep-next",
        }
        await wait_for(lambda: bool(woken))  # the outbound wake-up, a second later
    finally:
        await jobs.stop()
    assert jobs.next_runs() == {}
    assert tracking.row(message).reminders_sent == 1
