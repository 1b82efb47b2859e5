"""What the shredding finds of a message, wherever it is: an outbound form's items in every folder
of the spool (the original, its re-sends, one set aside, one half-written), its copy and files
in the outbox's sent/, a receipt and its copies sent again, desk copies in new/, cur/, tmp/ and
a Maildir++ subfolder; what belongs to other messages stays; an item still queued or a deadline
still open keeps the message; `gateway retention run` counts, then shreds."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from trackingkit import START, Tracking

from gateway.cli.main import main
from gateway.store import shred_rows
from gateway.store.spool import Spool
from gateway.tracking.retention import Purger, PurgeResult

D = timedelta(days=1)
RETENTION = '\n[[retention]]\nkeep = "P5D"\n'


@pytest.fixture
def tracking(tmp_path: Path, ledger_engine: Engine) -> Tracking:
    return Tracking.make(tmp_path, ledger_engine, extra=RETENTION)


def purger(tracking: Tracking) -> Purger:
    return Purger(
        config=tracking.config,
        ledger=tracking.ledger,
        audit=tracking.audit,
        inbound=tracking.inbound,
        outbound=tracking.outbound,
    )


def place(spool: Spool, folder: str, name: str, data: bytes = b"{}\nsealed") -> Path:
    """A file of the spool as a run of the gateway leaves it there."""
    path = spool.root / folder / name
    path.write_bytes(data)
    return path


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_every_copy_is_found_and_only_those(tracking: Tracking, tmp_path: Path) -> None:
    out = tracking.outbound
    sent = tracking.record(
        direction="outbound", form="G", reference="RO-2026-000001", spool_key="form.RO-2026-000001"
    )
    place(out, "done", "form.RO-2026-000001.msg")
    place(out, "done", "form.RO-2026-000001.resend.1.msg")
    place(out, "quarantine", "form.RO-2026-000001.resend.2.msg")
    place(out, "tmp", "form.RO-2026-000001.msg.4242.0a1b2c3d")
    place(out, "done", f"resend.{sent}.3.msg")
    outbox = tracking.config.outbox(tracking.config.desk("sirene")) / "sent"
    (outbox / "RO-2026-000001.files").mkdir(parents=True)
    (outbox / "RO-2026-000001.xml").write_bytes(b"<FormG>the form</FormG>")
    (outbox / "RO-2026-000001.files" / "photo.jpg").write_bytes(b"\xff\xd8\xff photo")
    received = tracking.record(form="H", reference="NO-2026-000002", spool_key="NO-SIRENE.in")
    place(tracking.inbound, "quarantine", "NO-SIRENE.in.msg")  # set aside: not needed any more
    receipt = tracking.record(
        direction="outbound",
        form="ACK",
        reference="RO-2026-000003",
        spool_key=f"receipt.{received}",
    )
    place(out, "done", f"receipt.{received}.msg")
    place(out, "done", f"receipt.{received}.again.1.msg")
    sirene, duty = tracking.config.desk("sirene").maildir, tracking.config.desk("duty").maildir
    copies = [
        sirene / "new" / f"{received}.NO-2026-000002",
        sirene / "cur" / f"{received}.NO-2026-000002:2,RS",
        sirene / "tmp" / f"{received}.NO-2026-000002",
        sirene / ".Archive" / "cur" / f"{received}.NO-2026-000002:2,S",
        duty / "cur" / f"{received}.NO-2026-000002:2,",
    ]
    for path in copies:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"desk copy")
    # A younger message's files, of names that begin alike: they stay.
    tracking.clock.set(START + 4 * D)
    kept = tracking.record(
        direction="outbound", form="G", reference="RO-2026-000010", spool_key="form.RO-2026-000010"
    )
    place(out, "done", "form.RO-2026-000010.msg")
    (outbox / "RO-2026-000010.xml").write_bytes(b"<FormG>another</FormG>")
    (sirene / "cur" / f"{received}0.NO-2026-000020:2,S").write_bytes(b"another desk copy")
    tracking.clock.set(START + 6 * D)

    done = purger(tracking).purge()

    assert done == PurgeResult(messages=3, spool_items=8, desk_copies=5, outbox_files=2)
    assert files_under(tmp_path / "spool") == [
        "outbound/done/form.RO-2026-000010.msg",
        "outbox/sirene/sent/RO-2026-000010.xml",
    ]
    assert files_under(tmp_path / "desks") == [f"sirene/cur/{received}0.NO-2026-000020:2,S"]
    with tracking.ledger.reading() as tx:
        assert [copy.name for copy in shred_rows.copies_of(tx, sent)] == [
            "done/form.RO-2026-000001.msg",
            "done/form.RO-2026-000001.resend.1.msg",
            f"done/resend.{sent}.3.msg",
            "quarantine/form.RO-2026-000001.resend.2.msg",
            "tmp/form.RO-2026-000001.msg.4242.0a1b2c3d",
            "sirene sent/RO-2026-000001.files/photo.jpg",
            "sirene sent/RO-2026-000001.xml",
        ]
        assert [copy.name for copy in shred_rows.copies_of(tx, received)] == [
            f"duty cur/{received}.NO-2026-000002:2,",
            f"sirene .Archive/cur/{received}.NO-2026-000002:2,S",
            f"sirene cur/{received}.NO-2026-000002:2,RS",
            f"sirene new/{received}.NO-2026-000002",
            f"sirene tmp/{received}.NO-2026-000002",
            "quarantine/NO-SIRENE.in.msg",
        ]
        assert [copy.name for copy in shred_rows.copies_of(tx, receipt)] == [
            f"done/receipt.{received}.again.1.msg",
            f"done/receipt.{received}.msg",
        ]
        assert shred_rows.copies_of(tx, kept) == []
    assert tracking.ledger.get(kept).shredded_at is None
    assert tracking.audit.verify() == []


def test_a_message_still_needed_waits(tracking: Tracking) -> None:
    out = tracking.outbound
    resending = tracking.record(
        direction="outbound", form="G", reference="RO-2026-000001", spool_key="form.RO-2026-000001"
    )
    place(out, "done", "form.RO-2026-000001.msg")
    queued = place(out, "new", "form.RO-2026-000001.resend.1.msg")  # being delivered
    owed = tracking.record(form="H", reference="NO-2026-000002", spool_key="NO-SIRENE.in")
    spooled = place(tracking.inbound, "done", "NO-SIRENE.in.msg")
    with tracking.ledger.transaction() as tx:
        tracking.ledger.open_deadline_in(tx, owed, kind="reply", owed_by="desk", due=START + 10 * D)
    tracking.clock.set(START + 6 * D)

    assert purger(tracking).purge() == PurgeResult(waiting=2)
    assert queued.exists() and (out.done / "form.RO-2026-000001.msg").exists()
    assert spooled.exists()
    assert tracking.ledger.get(resending).shredded_at is None
    assert tracking.ledger.get(owed).shredded_at is None
    assert tracking.audit_kinds("retention.") == []


def test_the_command_counts_then_shreds(
    tracking: Tracking, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tracking.record(form="H", reference="NO-2026-000002", spool_key="NO-SIRENE.in")
    spooled = place(tracking.inbound, "done", "NO-SIRENE.in.msg")
    source = str(tracking.config.source)

    assert main(["-c", source, "retention", "run", "--dry-run", "--json"]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert (counted["dry_run"], counted["messages"], counted["spool_items"]) == (True, 1, 1)
    assert spooled.exists() and tracking.ledger.get(message).shredded_at is None

    assert main(["-c", source, "retention", "run"]) == 0
    assert capsys.readouterr().out.startswith(
        "shredded 1 message(s): 1 spooled item(s), 0 desk copy(ies), 0 outbox file(s), "
        "0 index entry(ies), 0 draft(s); 0 due but still needed, 0 failed"
    )
    assert not spooled.exists()
    assert tracking.ledger.get(message).shredded_at is not None
    assert main(["-c", source, "retention", "run", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would shred 0 message(s)")
