"""The partner certificate check: real aiosmtpd servers with STARTTLS and certificates from a
test CA made here, the check's clock injected: notices 30, 7 and 1 days before expiry, once each
(also across two gateways on one ledger), a failed check told once a day, and the metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from integration.fakepartner import FakePartner, certificate_from_ca, make_pki, server_context
from sqlalchemy import Engine
from trackingkit import CATALOGUE, Tracking

from gateway.core.tally import CERT_EXPIRY, CERT_VALID, JOB_LAST_RUN, Tally
from gateway.tracking.certcheck import THRESHOLDS, CertificateCheck, threshold_crossed
from gateway.tracking.scheduler import Schedule

D = timedelta(days=1)


@dataclass
class Rig:
    tracking: Tracking
    good: FakePartner  # NO-SIRENE: a certificate from the partner's CA, valid 40 days
    stranger: FakePartner  # RS-NCB: a self-signed certificate


@pytest.fixture
async def rig(tmp_path: Path, ledger_engine: Engine) -> AsyncIterator[Rig]:
    pki = make_pki(tmp_path)
    good = FakePartner(tls=server_context(*certificate_from_ca(pki, "forty", 40)))
    stranger = FakePartner(tls=server_context(pki.stranger_cert, pki.stranger_key))
    for server in (good, stranger):
        await server.start()
    tracking = Tracking.make(tmp_path, ledger_engine, start=datetime.now(UTC))
    no, rs = tracking.config.partners
    partners = (
        replace(no, smtp_port=good.port, tls_ca=pki.ca),
        replace(rs, smtp_port=stranger.port, tls_ca=pki.ca),
    )
    tracking = replace(tracking, config=replace(tracking.config, partners=partners))
    yield Rig(tracking, good, stranger)
    for server in (good, stranger):
        await server.stop()


def check(rig: Rig, tally: Tally, node: str = "a") -> CertificateCheck:
    t = rig.tracking
    return CertificateCheck(t.config, t.ledger, t.audit, tally, node)


async def run(job: CertificateCheck, rig: Rig) -> None:
    """One check at the rig's clock (in a thread: the check runs its own event loop)."""
    await asyncio.to_thread(job.run, rig.tracking.clock.now())


def cert_notices(rig: Rig) -> list[str]:
    return rig.tracking.desk("supervisor").notices("cert-expiry")


def test_the_tightest_threshold_crossed_is_the_one_told() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert THRESHOLDS == (30 * D, 7 * D, D)
    assert threshold_crossed(now + 31 * D, now) is None
    assert threshold_crossed(now + 30 * D, now) == 30 * D
    assert threshold_crossed(now + 6 * D, now) == 7 * D
    assert threshold_crossed(now + 12 * timedelta(hours=1), now) == D
    assert threshold_crossed(now - D, now) == D  # expired: within all of them


async def test_notices_30_7_and_1_days_before_once_each(rig: Rig) -> None:
    tally = Tally()
    job = check(rig, tally)
    clock = rig.tracking.clock
    start = clock.now()

    await run(job, rig)
    values = tally.snapshot().values
    assert values[CERT_VALID] == {("NO-SIRENE",): 1.0, ("RS-NCB",): 0.0}
    assert 39.9 < values[CERT_EXPIRY][("NO-SIRENE",)] <= 40
    assert ("RS-NCB",) not in values[CERT_EXPIRY]  # its chain did not verify: no expiry read
    [failed] = cert_notices(rig)  # RS's failed check, nothing yet for NO
    assert "RS-NCB.failed" in failed
    text = rig.tracking.desk("supervisor").read(failed)
    assert "the TLS check of RS-NCB" in text and "TLS certificate not accepted: self-signed" in text

    await run(job, rig)  # the same day again: nothing new
    assert len(cert_notices(rig)) == 1

    for days, expected in ((11, "30d"), (12, None), (34, "7d"), (39.5, "1d"), (41, None)):
        clock.set(start + days * D)
        before = set(cert_notices(rig))
        await run(job, rig)
        new = sorted(set(cert_notices(rig)) - before)
        ours = [name for name in new if "NO-SIRENE" in name]
        assert [name.rsplit(".", 1)[-1] for name in ours] == ([expected] if expected else []), new
        # RS's failure is told again on each new day (each step is another day)
        assert len([name for name in new if "RS-NCB.failed" in name]) == 1, new
    text = rig.tracking.desk("supervisor").read(
        next(name for name in cert_notices(rig) if name.endswith("7d"))
    )
    assert "Partner certificate: the TLS certificate of NO-SIRENE" in text
    assert "expires" in text and "Verified:     yes" in text
    warned = [e for e in rig.tracking.audit.entries() if e.kind == "cert.warning"]
    assert sum(e.partner == "NO-SIRENE" for e in warned) == 3
    assert rig.tracking.audit.verify() == []


async def test_two_gateways_on_one_ledger_tell_once(rig: Rig) -> None:
    rig.tracking.clock.advance(35 * D)
    first, second = check(rig, Tally(), "a"), check(rig, Tally(), "b")
    await run(first, rig)
    await run(second, rig)
    names = cert_notices(rig)
    assert sorted(name.rsplit(".", 1)[-1] for name in names if "NO-SIRENE" in name) == ["7d"]
    # both still know the figures: each gateway's metrics are its own
    assert second.tally.snapshot().values[CERT_VALID][("NO-SIRENE",)] == 1.0


async def test_the_scheduled_job_sets_its_last_run(rig: Rig) -> None:
    tally = Tally()
    schedule = Schedule(rig.tracking, node="a", catalogue=CATALOGUE, tally=tally)
    found = await asyncio.to_thread(schedule.check_certificates_once)
    assert {f.partner: f.check.verified for f in found} == {"NO-SIRENE": True, "RS-NCB": False}
    await schedule._job("certificates", schedule.check_certificates_once)()
    last = tally.snapshot().values[JOB_LAST_RUN]
    assert last == {("certificates",): rig.tracking.clock.now().timestamp()}


async def test_a_server_that_is_down_is_a_failed_check(rig: Rig) -> None:
    await rig.good.stop()
    tally = Tally()
    await run(check(rig, tally), rig)
    assert tally.snapshot().values[CERT_VALID][("NO-SIRENE",)] == 0.0
    names = [name for name in cert_notices(rig) if "NO-SIRENE" in name]
    assert len(names) == 1 and ".failed." in names[0]
    await rig.good.start()
