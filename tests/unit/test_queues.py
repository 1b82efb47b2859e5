"""`gateway queue`: list, show, retry, release and drop against real spools and a real ledger."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from trackingkit import Tracking

from gateway.cli.main import main
from gateway.desks.notices import MAIL_KIND
from gateway.inbound.retry import HandoffRetry
from gateway.outbound.retry import iso, not_before
from gateway.store import schema
from gateway.store.ledger import make_engine
from gateway.store.spool import Spool
from gateway.tracking.quarantine_notices import notify_quarantined

SECRET = b"<FamilyName>QUARTZLEWINSKY</FamilyName>"  # stands for the content: never shown
WAITING = "RO-2026-000001.f00d"  # an outbound form deferred for a later attempt
FAILED = "RO-2026-000002.beef"  # an outbound form that failed, in quarantine
STUCK = "NO-SIRENE.NO-2026-000123.0123456789abcdef"  # an inbound message that failed hand-off
ORPHAN = "NO-SIRENE.NO-2026-000124.fedcba9876543210"  # spooled inbound, never recorded


@dataclass
class Seeded:
    tracking: Tracking
    config: Path
    now: datetime


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    """Around the real now (the command reads the system clock)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    schema.upgrade(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    tracking = Tracking.make(tmp_path, engine, start=now - timedelta(hours=2))
    outbound, inbound = tracking.outbound, tracking.inbound
    for key, reference, state in (
        (WAITING, "RO-2026-000001", "queued"),
        (FAILED, "RO-2026-000002", "failed"),
    ):
        ledger_id = tracking.record(
            direction="outbound", reference=reference, state=state, spool_key=key
        )
        outbound.put(
            key,
            SECRET,
            {
                "kind": "form",
                "to": "sirene@no.example",
                "partner": "NO-SIRENE",
                "reference": reference,
                "form": "G",
                "ledger_id": ledger_id,
                "queued_at": iso(tracking.clock.now()),
                "attempts": 3,
                "first_attempt_at": iso(tracking.clock.now()),
                "not_before": iso(now + timedelta(minutes=20)),
                "last_error": "451 4.3.0 mailbox busy",
            },
        )
    [claimed] = outbound.claim([FAILED])
    outbound.set_aside(claimed, "failed")
    tracking.record(reference="NO-2026-000123", state="received", spool_key=STUCK)
    for key, reference in ((STUCK, "NO-2026-000123"), (ORPHAN, "NO-2026-000124")):
        inbound.put(
            key,
            SECRET,
            {"partner": "NO-SIRENE", "reference": reference, "form": "G", "attempts": 4},
        )
        [item] = inbound.claim([key])
        assert not HandoffRetry(inbound).count(item, "cannot deliver into the Maildir: disk full")
    tracking.clock.set(now)
    engine.dispose()
    assert tracking.config.source is not None
    return Seeded(tracking, tracking.config.source, now)


def held(spool: Spool, key: str) -> bool:
    """Whether the spool has this item waiting, claimed or quarantined."""
    try:
        return spool.get(key).path.parent != spool.done
    except KeyError:
        return False


def run(seeded: Seeded, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-c", str(seeded.config), "queue", *args])
    out, err = capsys.readouterr()
    return code, out, err


def listing(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], *args: str
) -> list[dict[str, object]]:
    code, out, _ = run(seeded, capsys, "list", "--json", *args)
    assert code == 0
    found = json.loads(out)
    assert isinstance(found, list)
    return found


def audit_lines(seeded: Seeded) -> list[tuple[str, str, str]]:
    return [
        (entry.kind, entry.reference, entry.reason)
        for entry in seeded.tracking.audit.entries()
        if entry.kind.startswith("queue.")
    ]


def test_list_shows_metadata_only(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    items = listing(seeded, capsys)
    # The command reads the system clock: the seconds since the fixture's now, at most, added.
    late = (datetime.now(UTC) - seeded.now).total_seconds()
    assert [(item["queue"], item["key"], item["folder"]) for item in items] == [
        ("inbound", STUCK, "quarantined"),
        ("inbound", ORPHAN, "quarantined"),
        ("outbound", WAITING, "waiting"),
        ("outbound", FAILED, "quarantined"),
    ]
    waiting = items[2]
    assert waiting["partner"] == "NO-SIRENE" and waiting["form"] == "G"
    assert waiting["reference"] == "RO-2026-000001" and waiting["state"] == "queued"
    assert waiting["attempts"] == 3 and waiting["why"] == "451 4.3.0 mailbox busy"
    assert waiting["next_attempt"] == iso(seeded.now + timedelta(minutes=20)).replace("+00:00", "Z")
    assert 7200 <= int(str(waiting["age_seconds"])) <= 7200 + late
    assert items[0]["state"] == "received" and items[1]["state"] is None
    assert items[0]["why"] == "cannot deliver into the Maildir: disk full"
    assert [item["key"] for item in listing(seeded, capsys, "--quarantined", "--outbound")] == [
        FAILED
    ]
    assert [item["key"] for item in listing(seeded, capsys, "--inbound")] == [STUCK, ORPHAN]
    code, out, _ = run(seeded, capsys, "list")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["QUEUE", "KEY", "FOLDER"]
    assert len(out.splitlines()) == 5 and "2 h 00 min" in out
    assert "QUARTZ" not in out


def test_show_gives_the_item_and_its_events(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(seeded, capsys, "show", FAILED, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["folder"] == "quarantined" and shown["state"] == "failed"
    assert [event["kind"] for event in shown["events"]] == ["failed"]
    code, out, _ = run(seeded, capsys, "show", STUCK)
    assert code == 0 and f"key:          {STUCK}" in out and "events:" in out
    assert "QUARTZ" not in out


def test_an_unknown_id_is_refused_with_exit_1(seeded: Seeded) -> None:
    for action in (["show", "NO-SUCH-ITEM"], ["drop", "NO-SUCH-ITEM", "--reason", "x"]):
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "-c", str(seeded.config), "queue", *action],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr == (
            "gateway: no item NO-SUCH-ITEM waiting or quarantined "
            "in the inbound or outbound queue\n"
        )
    assert audit_lines(seeded) == []


def test_unknown_ids_and_bad_keys(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("retry", "release"):
        code, _, err = run(seeded, capsys, action, "NOPE")
        assert code == 1 and "no item NOPE" in err
    code, _, err = run(seeded, capsys, "show", "../etc/passwd")
    assert code == 1 and "is not a spool key" in err
    code, _, err = run(seeded, capsys, "show", STUCK, "--outbound")
    assert code == 1 and "in the outbound queue" in err


def test_retry_makes_a_deferred_item_due_now(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(seeded, capsys, "retry", WAITING, "--reason", "partner back up, INC-42")
    assert (code, out) == (0, f"outbound {WAITING} goes at the next pass\n")
    [item] = seeded.tracking.outbound.waiting()
    due = not_before(item.meta)
    assert due is not None and due <= datetime.now(UTC)
    assert item.meta["attempts"] == 3 and item.payload() == SECRET
    row = seeded.tracking.ledger.by_spool_key(WAITING)
    assert row is not None
    events = seeded.tracking.ledger.events_of(row.id)
    assert events[-1][1:] == ("retry-now", f"by {getpass.getuser()}: partner back up, INC-42")
    assert audit_lines(seeded) == [
        (
            "queue.retry",
            "RO-2026-000001",
            f"outbound {WAITING} retry by {getpass.getuser()}: partner back up, INC-42",
        )
    ]
    code, _, err = run(seeded, capsys, "retry", WAITING)  # due now: nothing to bring forward
    assert code == 1 and "is not deferred" in err


def test_retry_refuses_what_makes_no_sense(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(seeded, capsys, "retry", STUCK)
    assert code == 1 and "is an inbound item" in err
    code, _, err = run(seeded, capsys, "retry", FAILED)
    assert code == 1 and "is quarantined: `gateway queue release` puts it back" in err
    assert audit_lines(seeded) == []


def test_release_queues_a_failed_form_again(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(seeded, capsys, "release", FAILED, "--reason", "key re-pinned")
    assert (code, out) == (0, f"outbound {FAILED} is back in its queue\n")
    outbound = seeded.tracking.outbound
    assert list(outbound.quarantine.iterdir()) == []
    released = outbound.get(FAILED)
    assert released.path.parent == outbound.new and released.payload() == SECRET
    for forgotten in ("attempts", "not_before", "first_attempt_at", "last_error"):
        assert forgotten not in released.meta
    assert released.meta["releases"] == 1
    row = seeded.tracking.ledger.by_spool_key(FAILED)
    assert row is not None and row.state == "queued"
    assert seeded.tracking.ledger.events_of(row.id)[-1][1] == "queued"
    assert [line[0] for line in audit_lines(seeded)] == ["queue.release"]


def test_release_puts_an_inbound_item_back(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(seeded, capsys, "release", STUCK)
    assert code == 0
    item = seeded.tracking.inbound.get(STUCK)
    assert item.path.parent == seeded.tracking.inbound.new
    assert "attempts" not in item.meta and item.meta["releases"] == 1
    row = seeded.tracking.ledger.by_spool_key(STUCK)
    assert row is not None and row.state == "received"
    assert seeded.tracking.ledger.events_of(row.id)[-1][1] == "released"


def test_release_refuses_what_makes_no_sense(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(seeded, capsys, "release", WAITING)
    assert code == 1 and f"{WAITING} is not quarantined (it is waiting)" in err
    code, _, err = run(seeded, capsys, "release", ORPHAN)
    assert code == 1 and "was never recorded in the ledger" in err
    assert ORPHAN in {item.key for item in seeded.tracking.inbound.quarantined()}
    assert audit_lines(seeded) == []


def test_drop_removes_an_item_fails_its_form_and_tells_the_desk(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(seeded, capsys, "drop", WAITING, "--reason", "superseded by RO-2026-000009")
    assert (code, out) == (0, f"outbound {WAITING} was dropped\n")
    outbound = seeded.tracking.outbound
    assert not held(outbound, WAITING) and not outbound.exists(WAITING)
    row = seeded.tracking.ledger.by_spool_key(WAITING)
    assert row is not None and row.state == "failed"
    detail = f"dropped by {getpass.getuser()}: superseded by RO-2026-000009"
    assert seeded.tracking.ledger.events_of(row.id)[-1][1:] == ("failed", detail)
    desk = seeded.tracking.desk("sirene")
    assert desk.notices() == [f"notice.dropped.outbound.{WAITING}"]
    text = desk.read(desk.notices()[0])
    assert "superseded by RO-2026-000009" in text and "QUARTZ" not in text
    assert audit_lines(seeded) == [
        (
            "queue.drop",
            "RO-2026-000001",
            f"outbound {WAITING} drop by {getpass.getuser()}: superseded by RO-2026-000009",
        )
    ]
    # An inbound item with no ledger row can be dropped too; the duty desk hears of it.
    code, _, _ = run(seeded, capsys, "drop", ORPHAN, "--reason", "never recorded")
    assert code == 0 and not held(seeded.tracking.inbound, ORPHAN)
    assert seeded.tracking.desk("duty").notices() == [f"notice.dropped.inbound.{ORPHAN}"]


def test_drop_needs_a_reason_of_one_line(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(seeded, capsys, "drop", WAITING)
    assert exit_info.value.code == 2
    code, _, err = run(seeded, capsys, "drop", WAITING, "--reason", "two\x00lines")
    assert code == 2 and "--reason must be one printable line" in err
    assert held(seeded.tracking.outbound, WAITING)
    assert audit_lines(seeded) == []


def test_a_quarantined_item_is_told_to_the_duty_desk_once(seeded: Seeded) -> None:
    tracking = seeded.tracking
    outbound = tracking.outbound
    outbound.put("notice.failed.x", b"mail", {"kind": MAIL_KIND, "desk": "sirene"})
    [item] = outbound.claim(["notice.failed.x"])
    outbound.set_aside(item, "failed")  # a notice by mail set aside: no notice about a notice
    spools = {"inbound": tracking.inbound, "outbound": outbound}
    assert notify_quarantined(tracking.config, tracking.ledger, spools, seeded.now) == 3
    assert notify_quarantined(tracking.config, tracking.ledger, spools, seeded.now) == 0
    duty = tracking.desk("duty")
    assert duty.notices() == sorted(
        f"notice.quarantined.{name}.0"
        for name in (f"inbound.{STUCK}", f"inbound.{ORPHAN}", f"outbound.{FAILED}")
    )
    text = duty.read(f"notice.quarantined.inbound.{STUCK}.0")
    assert "cannot deliver into the Maildir: disk full" in text and "QUARTZ" not in text
    assert f"gateway queue release {STUCK}" in text
    # Released and set aside again: a new appearance, told again.
    (
        tracking.config.desk("duty").maildir / "new" / f"notice.quarantined.inbound.{STUCK}.0"
    ).unlink()
    assert notify_quarantined(tracking.config, tracking.ledger, spools, seeded.now) == 0
    assert main(["-c", str(seeded.config), "queue", "release", STUCK]) == 0
    [again] = tracking.inbound.claim([STUCK])
    tracking.inbound.set_aside(again, "again")
    assert notify_quarantined(tracking.config, tracking.ledger, spools, seeded.now) == 1
    assert f"notice.quarantined.inbound.{STUCK}.1" in duty.notices()
