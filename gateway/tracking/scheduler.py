"""The scheduled jobs of `gateway serve`: APScheduler is only the timer, the ledger the truth.

Jobs live in memory, defined from the configuration at start; nothing is stored by APScheduler:

- the deadline sweep every ``[scheduler] sweep_every``, and once more at the next instant a
  deadline has something to do (a one-shot job moved after each sweep);
- the outbound wake-up at the instant the outbound queue says (``outbound_next_due``);
- the retention purge, the partner-key check (daily) and the statistics report (daily at
  ``[scheduler] report_at`` UTC);
- the purge of the API's idempotency keys older than ``[api] idempotency_hours`` (hourly);
- the partner certificate check every CERTS_EVERY on every gateway (its notices are claimed
  once across them, ``certcheck``), which also keeps the certificates' metrics current;
- the duty desk's checks every ``sweep_every``: refusals of the hours that are over, items that
  appeared in quarantine (``refusal_notices``, ``quarantine_notices``).

Each job's work is a plain synchronous method (``sweep_once`` and the like) that tests drive
with a FakeClock; the timer runs them in a thread. With several gateways on one ledger, a daily
job runs once per slot (a row claimed in job_runs) and the sweep relies on its per-deadline
claims. A gateway that was down does at start what it missed, once (``run_due_now``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from gateway.core.clock import Clock
from gateway.core.config import Config
from gateway.core.tally import ESCALATIONS, JOB_LAST_RUN, REMINDERS, Tally
from gateway.crypto.openpgp import GnuPG
from gateway.desks.notices import post
from gateway.forms.catalogue import FormCatalogue
from gateway.reports.figures import make_report, scope_of
from gateway.store import idempotency, jobruns, statistics
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger
from gateway.store.spool import Spool
from gateway.tracking import keycheck, reports
from gateway.tracking.certcheck import CertFinding, CertificateCheck
from gateway.tracking.quarantine_notices import notify_quarantined
from gateway.tracking.recipients import supervisor_desk
from gateway.tracking.refusal_notices import RefusalRun, notify_refusals
from gateway.tracking.retention import Purger, PurgeResult
from gateway.tracking.sweep import Sweeper, SweepResult

log = logging.getLogger("gateway.scheduler")

PURGE_AT = (0, 15)  # UTC hour and minute of the daily retention purge
KEYS_AT = (0, 30)  # and of the partner-key check
IDEMPOTENCY_AT = 45  # minute of each hour of the idempotency keys' purge
CERTS_EVERY = timedelta(hours=6)  # the partner certificate check
WAKE_GAP = timedelta(seconds=1)  # never wake the outbound queue more often than this
JOB_DEFAULTS = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}

T = TypeVar("T")


class JobServices(Protocol):
    """What the jobs take of a gateway's services: `serve` passes its ``Services`` (from
    gateway.service.services, a layer above, which this module cannot import)."""

    @property
    def config(self) -> Config: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def inbound(self) -> Spool: ...
    @property
    def outbound(self) -> Spool: ...
    @property
    def gpg(self) -> GnuPG:
        """Our GnuPG home: only the key check reads it, so it may be opened on first use."""
        ...


class Schedule:
    """The timer of `gateway serve` and the jobs it runs."""

    def __init__(
        self,
        services: JobServices,
        *,
        wake_outbound: Callable[[], None] | None = None,
        outbound_next_due: Callable[[], datetime | None] | None = None,
        node: str = "",
        catalogue: FormCatalogue | None = None,
        tally: Tally | None = None,
    ) -> None:
        self.services = services
        self.tally = tally or Tally()
        self.config = config = services.config
        self.ledger, self.audit, self.clock = services.ledger, services.audit, services.clock
        self.wake_outbound = wake_outbound
        self.outbound_next_due = outbound_next_due
        self.node = node or config.cluster.node_name()
        self.lease = config.cluster.lease  # a daily job's claim outlives a dead node by this
        self.sweeper = Sweeper(
            config=config,
            ledger=self.ledger,
            audit=self.audit,
            catalogue=catalogue or FormCatalogue.load(config.form_folders),
            outbound=services.outbound,
        )
        self.spools = {"inbound": services.inbound, "outbound": services.outbound}
        self.purger = Purger(
            config=config,
            ledger=self.ledger,
            audit=self.audit,
            inbound=services.inbound,
            outbound=services.outbound,
        )
        self.certificates = CertificateCheck(config, self.ledger, self.audit, self.tally, self.node)
        self._timer: AsyncIOScheduler | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ the jobs

    def sweep_once(self) -> SweepResult:
        """Handle the deadlines due now."""
        result = self.sweeper.sweep(self.clock.now())
        self.tally.count(REMINDERS, amount=result.reminders)
        self.tally.count(ESCALATIONS, amount=result.escalations)
        return result

    def desk_checks_once(self) -> tuple[RefusalRun, int]:
        """The duty desk's notices: refusals of the hours that are over, quarantined items."""
        now = self.clock.now()
        refused = notify_refusals(self.config, self.ledger, self.audit, now)
        return refused, notify_quarantined(self.config, self.ledger, self.spools, now)

    def purge_once(self) -> PurgeResult | None:
        """Today's retention purge, unless some gateway did it already (None)."""
        return self._daily("purge", self._today(), self.purger.purge)

    def check_keys_once(self) -> list[keycheck.KeyWarning] | None:
        """Today's partner-key check, unless some gateway did it already (None)."""
        return self._daily("keys", self._today(), self._check_keys)

    def purge_idempotency_once(self) -> int | None:
        """This hour's purge of the API's idempotency keys older than their retention: how many
        were deleted, or None when some gateway did this hour's already."""
        hour = self.clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H")
        return self._daily("idempotency", hour, self._purge_idempotency)

    def _purge_idempotency(self, now: datetime) -> int:
        with self.ledger.transaction() as tx:
            return idempotency.purge_before(tx, now - self.config.api.idempotency_keep)

    def check_certificates_once(self) -> list[CertFinding]:
        """Check every partner's SMTP certificate now; notices once per threshold."""
        return self.certificates.run(self.clock.now())

    def report_once(self) -> Path | None:
        """The last daily report due by now, unless some gateway sent it already (None)."""
        day = reports.report_day(self.clock.now(), self.config.scheduler.report_at)
        return self._daily("report", day.isoformat(), lambda now: self._report(day, now))

    def _daily(self, job: str, slot: str, run: Callable[[datetime], T]) -> T | None:
        """Run ``job`` for ``slot`` (a day, or an hour) unless some gateway claimed it first."""
        now = self.clock.now()
        if not jobruns.claim(self.ledger.engine, job, slot, self.node, now, lease=self.lease):
            return None
        try:
            outcome = run(now)
        except Exception as error:
            jobruns.finish(self.ledger.engine, job, slot, f"failed: {type(error).__name__}")
            raise
        summary = _summary(outcome)
        jobruns.finish(self.ledger.engine, job, slot, f"done: {summary}")
        log.info("%s %s done: %s", job, slot, summary)
        return outcome

    def _today(self) -> str:
        return self.clock.now().astimezone(UTC).date().isoformat()

    def _check_keys(self, now: datetime) -> list[keycheck.KeyWarning]:
        keys = self.services.gpg.list_keys()
        found = keycheck.warnings(
            self.config.partners, keys, now, self.config.scheduler.key_warning
        )
        keycheck.notify(self.config, self.audit, found, now)
        return found

    def _report(self, day: date, now: datetime) -> Path | None:
        with self.ledger.reading() as tx:
            figures = statistics.gather(tx, day)
        desk = supervisor_desk(self.config)
        if desk is None:
            log.warning("daily report %s: no desk to send it to", day)
            return None
        cut = make_report(self.ledger, scope_of(day, day, now), ZoneInfo(self.config.web.time_zone))
        path = post(self.config, desk, reports.report_notice(figures, cut), now)
        self.audit.append("report.sent", reason=f"daily report {day} to desk {desk}")
        return path

    # ------------------------------------------------------------------ the timer

    def start(self) -> None:
        """Start the timer (inside the running event loop) and catch up at once."""
        loop = asyncio.get_running_loop()
        timer = AsyncIOScheduler(event_loop=loop, timezone=UTC, job_defaults=JOB_DEFAULTS)
        every = self.config.scheduler.sweep_every.total_seconds()
        timer.add_job(self._sweep_job, IntervalTrigger(seconds=every, timezone=UTC), id="sweep")
        timer.add_job(
            self._job("desk-checks", self.desk_checks_once),
            IntervalTrigger(seconds=every, timezone=UTC),
            id="desk-checks",
        )
        timer.add_job(
            self._job("certificates", self.check_certificates_once),
            IntervalTrigger(seconds=CERTS_EVERY.total_seconds(), timezone=UTC),
            id="certificates",
        )
        for job_id, run, (hour, minute) in (
            ("purge", self.purge_once, PURGE_AT),
            ("keys", self.check_keys_once, KEYS_AT),
            ("report", self.report_once, _hour_minute(self.config.scheduler.report_at)),
        ):
            timer.add_job(
                self._job(job_id, run),
                CronTrigger(hour=hour, minute=minute, timezone=UTC),
                id=job_id,
            )
        timer.add_job(
            self._job("idempotency", self.purge_idempotency_once),
            CronTrigger(minute=IDEMPOTENCY_AT, timezone=UTC),
            id="idempotency",
        )
        timer.start()
        self._timer = timer
        self._track(loop.create_task(self.run_due_now()))
        log.info("scheduler started: sweep every %.0f s", every)

    def shutdown(self) -> None:
        """Stop the timer; a job already running finishes (``stop`` waits for it)."""
        if self._timer is not None and self._timer.running:
            self._timer.shutdown(wait=False)
        self._timer = None

    async def stop(self) -> None:
        """Stop the timer and wait for the jobs still running."""
        self.shutdown()
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    def next_runs(self) -> dict[str, datetime]:
        """When each timer job fires next (wall clock, UTC); empty when stopped."""
        if self._timer is None:
            return {}
        return {
            job.id: job.next_run_time.astimezone(UTC)
            for job in self._timer.get_jobs()
            if job.next_run_time is not None
        }

    async def run_due_now(self) -> None:
        """Everything due now, once: the sweep, today's daily jobs if not done, the outbound."""
        await self._sweep_job()
        for job_id, run in (
            ("desk-checks", self.desk_checks_once),
            ("purge", self.purge_once),
            ("keys", self.check_keys_once),
            ("certificates", self.check_certificates_once),
            ("report", self.report_once),
            ("idempotency", self.purge_idempotency_once),
        ):
            await self._job(job_id, run)()

    async def plan_outbound(self) -> None:
        """Set the outbound wake-up at the instant the queue names (call after queuing)."""
        if self.outbound_next_due is None or self.wake_outbound is None:
            return
        due = await asyncio.to_thread(self.outbound_next_due)
        if due is None:
            self._remove("outbound-wake")
            return
        self._at("outbound-wake", max(self._wall(due), datetime.now(UTC) + WAKE_GAP), self._wake)

    async def _wake(self) -> None:
        if self.wake_outbound is not None:
            self.wake_outbound()
        await self.plan_outbound()

    async def _sweep_job(self) -> None:
        result = await self._in_thread("sweep", self.sweep_once)
        if result is not None and result.resends and self.wake_outbound is not None:
            self.wake_outbound()
        due = await asyncio.to_thread(self.sweeper.next_due)
        if due is not None and due > self.clock.now():
            self._at("sweep-next", self._wall(due), self._sweep_job)
        await self.plan_outbound()

    def _job(self, name: str, run: Callable[[], object]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            await self._in_thread(name, run)

        return job

    async def _in_thread(self, name: str, run: Callable[[], T]) -> T | None:
        """Run a job's blocking work in a thread, one at a time per job; errors are logged."""
        task = asyncio.current_task()
        if task is not None:
            self._track(task)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            try:
                outcome = await asyncio.to_thread(run)
            except Exception:
                log.exception("scheduled job %s failed", name)
                return None
            self.tally.set(JOB_LAST_RUN, self.clock.now().timestamp(), name)
            return outcome

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _at(self, job_id: str, when: datetime, run: Callable[[], Awaitable[None]]) -> None:
        if self._timer is None:
            return
        self._timer.add_job(
            run, DateTrigger(run_date=when, timezone=UTC), id=job_id, replace_existing=True
        )

    def _remove(self, job_id: str) -> None:
        if self._timer is not None:
            with contextlib.suppress(LookupError):
                self._timer.remove_job(job_id)

    def _wall(self, instant: datetime) -> datetime:
        """The wall-clock instant at which the injected clock will read ``instant``."""
        return datetime.now(UTC) + (instant - self.clock.now())


def _summary(outcome: object) -> str:
    """A daily job's outcome in words for the log and the ledger: counts, never a Python repr."""
    if outcome is None:
        return "nothing to send"
    if isinstance(outcome, PurgeResult):
        counts = vars(outcome).items()
        return ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in counts)
    if isinstance(outcome, int):
        return f"{outcome} deleted"
    if isinstance(outcome, list):
        return f"{len(outcome)} warning" + ("" if len(outcome) == 1 else "s")
    if isinstance(outcome, Path):
        return f"posted {outcome.name}"
    return type(outcome).__name__


def _hour_minute(text: str) -> tuple[int, int]:
    hours, minutes = text.split(":")
    return int(hours), int(minutes)
