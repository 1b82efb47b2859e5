"""The partner certificate check: each partner's SMTP server, STARTTLS, its chain verified against
the partner's ``tls_ca`` (or the system's store) and its expiry; a notice 30, 7 and 1 days before.

Each notice goes out once per partner, certificate expiry and threshold, across every gateway on
one ledger (a job_runs row claims it); when the check first finds a certificate already inside
a threshold, only the tightest one crossed is posted. A server that cannot be reached, or whose
chain does not verify, draws one notice per partner and day. The days left and whether the chain
verified go to the metrics (``ipcgw_partner_tls_certificate_*``). Only partner codes, host names,
instants and the TLS library's words are written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.core.config import Config, Partner
from gateway.core.tally import CERT_EXPIRY, CERT_VALID, Tally
from gateway.desks.notices import Notice, post
from gateway.outbound.smtpclient import TlsCheck, check_tls, tls_context
from gateway.store import jobruns
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger
from gateway.tracking.deadline_notices import span_text, utc_text
from gateway.tracking.recipients import supervisor_desk

log = logging.getLogger("gateway.certificates")

THRESHOLDS = (timedelta(days=30), timedelta(days=7), timedelta(days=1))
CHECK_TIMEOUT = 30.0
JOB = "cert-notice"


@dataclass(frozen=True)
class CertFinding:
    """What the check found at one partner's server."""

    partner: str
    server: str
    check: TlsCheck

    def days_left(self, now: datetime) -> float | None:
        if self.check.not_after is None:
            return None
        return (self.check.not_after - now).total_seconds() / 86400


def threshold_crossed(not_after: datetime, now: datetime) -> timedelta | None:
    """The tightest of THRESHOLDS that the time left to ``not_after`` is within (an expired
    certificate is within all of them): a pure function."""
    crossed = [limit for limit in THRESHOLDS if not_after - now <= limit]
    return min(crossed) if crossed else None


async def probe(config: Config, partners: Sequence[Partner]) -> list[CertFinding]:
    """Every partner's server checked side by side."""
    timeout = min(config.outbound.timeout.total_seconds(), CHECK_TIMEOUT)

    async def one(partner: Partner) -> CertFinding:
        server = f"{partner.smtp_host}:{partner.smtp_port}"
        try:
            context = tls_context(partner.tls_ca)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            reason = getattr(exc, "strerror", None) or str(exc)
            return CertFinding(
                partner.code, server, TlsCheck(problem=f"cannot load tls_ca: {reason}")
            )
        found = await check_tls(
            partner.smtp_host, partner.smtp_port, context, config.listen.hostname, timeout
        )
        return CertFinding(partner.code, server, found)

    return list(await asyncio.gather(*(one(partner) for partner in partners)))


class CertificateCheck:
    """The scheduled job: probe, remember, tell, and set the metrics."""

    def __init__(
        self, config: Config, ledger: Ledger, audit: AuditLog, tally: Tally, node: str
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.audit = audit
        self.tally = tally
        self.node = node

    def run(self, now: datetime) -> list[CertFinding]:
        """Check every partner's server now (from a worker thread: its own event loop)."""
        found = asyncio.run(probe(self.config, self.config.partners))
        for finding in found:
            self._record(finding, now)
        return found

    def _record(self, finding: CertFinding, now: datetime) -> None:
        days = finding.days_left(now)
        verified = finding.check.verified
        self.tally.set(CERT_VALID, 1.0 if verified else 0.0, finding.partner)
        if days is not None:
            self.tally.set(CERT_EXPIRY, days, finding.partner)
        if not verified:
            problem = finding.check.problem or "not verified"
            slot = f"{finding.partner}.failed.{now.date().isoformat()}"
            sentence = f"the TLS check of {finding.partner} at {finding.server} failed: {problem}"
            self._tell(slot, finding, sentence, now, problem)
            return
        not_after = finding.check.not_after
        if not_after is None:
            return
        limit = threshold_crossed(not_after, now)
        if limit is None:
            return
        slot = f"{finding.partner}.{not_after.strftime('%Y%m%dT%H%M%S')}.{limit.days}d"
        left = not_after - now
        when = (
            f"expired {utc_text(not_after)}"
            if left <= timedelta(0)
            else (f"expires {utc_text(not_after)} (in {span_text(left)})")
        )
        sentence = f"the TLS certificate of {finding.partner} at {finding.server} {when}"
        self._tell(slot, finding, sentence, now, f"within {limit.days} days")

    def _tell(
        self, slot: str, finding: CertFinding, sentence: str, now: datetime, problem: str
    ) -> None:
        """Post ``sentence`` once for ``slot`` (across every gateway on the ledger)."""
        if not jobruns.claim(self.ledger.engine, JOB, slot[:64], self.node, now):
            return
        log.warning("partner certificate: %s", sentence)
        desk = supervisor_desk(self.config)
        if desk is not None:
            expires = finding.check.not_after
            post(
                self.config,
                desk,
                Notice(
                    kind="cert-expiry",
                    key=f"cert-expiry.{slot}",
                    subject=f"Partner certificate: {sentence}"[:200],
                    body=(
                        f"Partner:      {finding.partner}\n"
                        f"Server:       {finding.server}\n"
                        f"Verified:     {'yes' if finding.check.verified else 'no'}\n"
                        f"Problem:      {problem}\n"
                        f"Expires:      {utc_text(expires) if expires else '-'}\n"
                        f"Checked:      {utc_text(now)}\n\n"
                        "Ask the partner to renew its SMTP server's certificate (or, if it "
                        "changed its certificate authority, check the new one out of band and "
                        "configure it as the partner's tls_ca).\n"
                    ),
                ),
                now,
            )
        self.audit.append("cert.warning", partner=finding.partner, reason=sentence[:300])
        jobruns.finish(self.ledger.engine, JOB, slot[:64], "done: posted")
