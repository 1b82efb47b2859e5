"""`gateway deadlines`: the listing (table and JSON), its filters, and `deadlines close`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from trackingkit import CATALOGUE, Tracking

from gateway.cli.main import main
from gateway.store import claims, deadline_rows, schema
from gateway.store.ledger import Ledger, make_engine
from gateway.store.states import DeadlineState
from gateway.store.unit import writing
from gateway.tracking.deadlines import reply_deadline

H = timedelta(hours=1)


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Tracking, Path]:
    """Three open deadlines (one overdue, one for the duty desk, one receipt) and a closed one,
    around the real now: the command reads the system clock."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    schema.upgrade(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    tracking = Tracking.make(tmp_path, engine, start=now - 13 * H)
    settings = tracking.config.deadlines
    overdue = tracking.record(reference="NO-2026-000001")
    planned = reply_deadline(CATALOGUE.get("G"), "urgent", {}, tracking.clock.now(), settings)
    assert planned is not None
    tracking.open_reply(overdue, planned)  # due an hour ago
    tracking.clock.set(now)
    urgent = tracking.record(
        form="IP-QUERY",
        reference="RS-2026-000002",
        partner="RS-NCB",
        channel="interpol",
        desk="duty",
    )
    planned = reply_deadline(CATALOGUE.get("IP-QUERY"), "urgent", {}, now, settings)
    assert planned is not None
    tracking.open_reply(urgent, planned)
    sent = tracking.record(direction="outbound", reference="RO-2026-000003", state="sent")
    tracking.open_receipt(sent, timedelta(minutes=15))
    done = tracking.record(reference="NO-2026-000004")
    planned = reply_deadline(CATALOGUE.get("G"), "urgent", {}, now, settings)
    assert planned is not None
    tracking.open_reply(done, planned)
    with writing(engine) as tx:
        tracking.ledger.close_deadline_in(tx, done, "reply", DeadlineState.MET, "answered")
    engine.dispose()
    assert tracking.config.source is not None
    return tracking, tracking.config.source


def listing(
    capsys: pytest.CaptureFixture[str], config: Path, *args: str
) -> list[dict[str, object]]:
    assert main(["-c", str(config), "deadlines", "--json", *args]) == 0
    result = json.loads(capsys.readouterr().out)
    assert isinstance(result, list)
    return result


def test_json_lists_the_open_deadlines_soonest_first(
    seeded: tuple[Tracking, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tracking, config = seeded
    items = listing(capsys, config)
    assert [item["reference"] for item in items] == [
        "NO-2026-000001",
        "RO-2026-000003",
        "RS-2026-000002",
    ]
    first = items[0]
    assert set(first) == {
        "reference",
        "form",
        "partner",
        "direction",
        "kind",
        "due",
        "state",
        "paused_at",
        "reminders_sent",
        "escalations",
        "holder",
    }
    due = tracking.clock.now() - H
    assert first == {
        "reference": "NO-2026-000001",
        "form": "G",
        "partner": "NO-SIRENE",
        "direction": "inbound",
        "kind": "reply",
        "due": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "state": "open",
        "paused_at": None,
        "reminders_sent": 0,
        "escalations": 0,
        "holder": None,
    }
    assert items[1]["kind"] == "receipt" and items[1]["direction"] == "outbound"


def test_overdue_and_desk_filters(
    seeded: tuple[Tracking, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = seeded
    assert [i["reference"] for i in listing(capsys, config, "--overdue")] == ["NO-2026-000001"]
    assert [i["reference"] for i in listing(capsys, config, "--desk", "duty")] == ["RS-2026-000002"]
    assert listing(capsys, config, "--desk", "duty", "--overdue") == []


def test_the_table(seeded: tuple[Tracking, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, config = seeded
    assert main(["-c", str(config), "deadlines"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["REFERENCE", "FORM", "PARTNER", "DIRECTION"]
    assert lines[1].split()[:5] == ["NO-2026-000001", "G", "NO-SIRENE", "inbound", "reply"]
    assert "overdue 1 h 00 min" in lines[1] or "overdue 59 min" in lines[1]
    assert "RS-2026-000002" in lines[3] and ("23 h 59 min" in lines[3] or "1 d 00 h" in lines[3])


def test_the_holder_of_each_message_is_listed(
    seeded: tuple[Tracking, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tracking, config = seeded
    engine = make_engine(str(tracking.ledger.engine.url))
    try:
        ledger = Ledger(engine, tracking.clock)
        found = ledger.find("inbound", "NO-SIRENE", "NO-2026-000001")
        assert found is not None
        with ledger.transaction() as tx:
            assert claims.take_in(tx, found.id, "ana", tracking.clock.now())
    finally:
        engine.dispose()
    items = {item["reference"]: item for item in listing(capsys, config)}
    assert items["NO-2026-000001"]["holder"] == "ana"
    assert items["RS-2026-000002"]["holder"] is None
    assert main(["-c", str(config), "deadlines"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-3:] == ["ESCALATED", "HELD", "BY"]
    assert lines[1].split()[-3:] == ["0", "0", "ana"] and lines[2].split()[-1] == "-"


def test_close_by_reference(
    seeded: tuple[Tracking, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tracking, config = seeded
    code = main(["-c", str(config), "deadlines", "close", "NO-2026-000001", "--reason", "by phone"])
    assert code == 0
    assert capsys.readouterr().out == "closed 1 deadline(s) of NO-2026-000001\n"
    assert [i["reference"] for i in listing(capsys, config, "--overdue")] == []
    again = main(["-c", str(config), "deadlines", "close", "NO-2026-000001", "--reason", "x"])
    assert again == 1
    assert "no open deadline under NO-2026-000001" in capsys.readouterr().err
    entry = tracking.audit.entries()[-1]
    assert entry.kind == "deadline.closed" and entry.reference == "NO-2026-000001"
    assert entry.reason.endswith(": by phone")
    assert tracking.audit.verify() == []


def test_close_needs_a_one_line_reason(
    seeded: tuple[Tracking, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = seeded
    with pytest.raises(SystemExit) as missing:
        main(["-c", str(config), "deadlines", "close", "NO-2026-000001"])
    assert missing.value.code == 2
    assert main(["-c", str(config), "deadlines", "close", "NO-2026-000001", "--reason", " "]) == 2
    assert "--reason" in capsys.readouterr().err


def test_without_configuration_it_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(tmp_path / "missing.toml"), "deadlines"]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_a_paused_deadline_is_listed_with_the_time_it_will_have_left(
    seeded: tuple[Tracking, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tracking, config = seeded
    [urgent] = tracking.ledger.by_reference("RS-2026-000002")
    paused_at = tracking.clock.now() - 2 * H  # 24 h window: 26 h left when it paused
    with writing(tracking.ledger.engine) as tx:
        assert deadline_rows.pause_in(tx, urgent.id, "reply", paused_at) is not None
    [item] = [i for i in listing(capsys, config) if i["reference"] == "RS-2026-000002"]
    assert (item["state"], item["paused_at"]) == (
        "paused",
        paused_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    assert listing(capsys, config, "--overdue", "--desk", "duty") == []
    assert main(["-c", str(config), "deadlines"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if "RS-2026-000002" in line]
    assert "paused, 1 d 02 h" in line or "paused, 1 d 01 h" in line
