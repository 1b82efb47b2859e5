"""The scheduler runs the duty desk's checks: refusals of the hours that are over and items that
appeared in quarantine are told at start and then every ``sweep_every``, once each."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from trackingkit import CATALOGUE, Tracking

from gateway.core.errors import UnexpectedSigner
from gateway.tracking.scheduler import Schedule


def schedule(tracking: Tracking, node: str) -> Schedule:
    return Schedule(tracking, node=node, catalogue=CATALOGUE)


async def test_the_checks_run_at_start_once_across_gateways(
    tmp_path: Path, ledger_engine: Engine
) -> None:
    tracking = Tracking.make(tmp_path, ledger_engine)
    tracking.ledger.record_refusal("NO-SIRENE", "ab" * 32, UnexpectedSigner())
    tracking.inbound.put("NO-SIRENE.NO-2026-000001.00", b"x", {"partner": "NO-SIRENE"})
    [item] = tracking.inbound.claim(["NO-SIRENE.NO-2026-000001.00"])
    tracking.inbound.set_aside(item, "a test")
    tracking.clock.advance(timedelta(hours=1))
    await schedule(tracking, "a").run_due_now()
    await schedule(tracking, "b").run_due_now()  # a second gateway on the same ledger and spool
    duty = tracking.desk("duty")
    assert duty.notices("refusals") == ["notice.refusals.NO-SIRENE.20261125T08"]
    assert duty.notices("quarantined") == [
        "notice.quarantined.inbound.NO-SIRENE.NO-2026-000001.00.0"
    ]


async def test_the_timer_has_the_checks(tmp_path: Path, ledger_engine: Engine) -> None:
    tracking = Tracking.make(tmp_path, ledger_engine)
    jobs = schedule(tracking, "a")
    jobs.start()
    try:
        assert "desk-checks" in jobs.next_runs()
    finally:
        await jobs.stop()
