"""`gateway serve`: wire the parts from one Config, run SMTP and the hand-off, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from gateway.core.config import Config
from gateway.core.errors import CannotStart, ConfigError
from gateway.core.stagecpu import StageCpu
from gateway.core.tally import Tally
from gateway.core.waits import wait_event
from gateway.inbound.carryover import Carryover
from gateway.inbound.handoff import Handoff, Progress
from gateway.inbound.pipeline import Accepted, Pipeline
from gateway.inbound.smtp_server import Handler, Limits, protocol_factory
from gateway.metrics.exporter import MetricsServer, registry_of
from gateway.metrics.figures import Figures
from gateway.outbound.delivery import Courier
from gateway.outbound.outbox import Outbox
from gateway.outbound.retry import requeue_interrupted
from gateway.service.node import Node
from gateway.service.services import Services, open_services
from gateway.tracking.scheduler import Schedule

log = logging.getLogger("gateway.server")
DRAIN_SECONDS = 30.0
HANDOFF_INTERVAL = 1.0
# The hand-off (rendering, the receipt's signature) waits while a session's message is in the
# pipeline (decrypting, validating, committing: after the end of DATA, before the reply), or one
# left it less than HANDOFF_QUIET seconds ago, so that it does not take the CPU that needs;
# but an item that has waited HANDOFF_MAX_WAIT seconds is handed off anyway,
# so under sustained load the hand-off keeps up HANDOFF_MAX_WAIT behind and never starves.
HANDOFF_QUIET = 0.05
HANDOFF_MAX_WAIT = 5.0
HANDOFF_POLL = 0.05
# Hand-off workers side by side (each claims by rename): one's gpg run overlaps the other's Python.
HANDOFF_WORKERS = 2
OUTBOX_INTERVAL = 1.0


class Gateway:
    """All the long-lived parts of a running gateway, on the services of a ``with
    open_services(config)`` that outlives it (the services close the ledger and GnuPG)."""

    def __init__(self, services: Services) -> None:
        config = services.config
        source = str(config.source or "configuration")
        if not config.openpgp.fingerprint:
            raise ConfigError(
                source, "openpgp.fingerprint", "no key of ours: run `gateway keys generate` first"
            )
        if config.listen.tls_cert is None and any(p.require_tls for p in config.partners):
            raise ConfigError(
                source,
                "smtp.listen.tls_cert",
                "partners require TLS: configure a certificate and key",
            )
        self.services = services
        self.config = config
        self.clock = services.clock
        self.validator = services.validator
        self.gpg = services.gpg
        self.ledger = services.ledger
        self.engine = services.ledger.engine
        self.audit = services.audit
        self.inbound = services.inbound
        self.outbound = services.outbound
        self.cpu = StageCpu()  # CPU per stage of a message's path, for benchmarks and metrics
        self.tally = Tally()  # the events of this process, for the metrics
        carried = Carryover()  # what the intake checked, for the hand-off: not parsed twice
        self.pipeline = Pipeline(
            config=config,
            gpg=self.gpg,
            validator=self.validator,
            ledger=self.ledger,
            spool=self.inbound,
            audit=self.audit,
            clock=self.clock,
            cpu=self.cpu,
            carried=carried,
            bodies_in_ledger=config.store.bodies == "database",
        )
        self.handoff = Handoff(
            config=config,
            gpg=self.gpg,
            validator=self.validator,
            ledger=self.ledger,
            inbound=self.inbound,
            outbound=self.outbound,
            audit=self.audit,
            clock=self.clock,
            cpu=self.cpu,
            carried=carried,
            receipts_queued=self.wake_outbound,
            tally=self.tally,
        )
        self.node = Node(config, self.ledger, self.clock, self.handoff, self.wake_outbound)
        self.submitter = services.submitter()
        self.outbox = Outbox(config, self.submitter)
        self.courier = Courier(
            config=config,
            ledger=self.ledger,
            spool=self.outbound,
            audit=self.audit,
            clock=self.clock,
            catalogue=self.validator.catalogue,
            cpu=self.cpu,
            tally=self.tally,
        )
        self._outbound_wake = asyncio.Event()
        self.schedule = Schedule(
            services,
            wake_outbound=self.wake_outbound,
            outbound_next_due=self.courier.next_due,
            node=self.node.name,
            catalogue=self.validator.catalogue,
            tally=self.tally,
        )
        # Sessions inside DATA get their own workers; the hand-off has threads of its own, so
        # a backlog of deliveries and receipts never makes a sender wait for its 250.
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gateway-data")
        self.background = ThreadPoolExecutor(
            max_workers=HANDOFF_WORKERS, thread_name_prefix="gateway-handoff"
        )
        self.outbox_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-outbox")
        self.limits = Limits(
            max_sessions=config.listen.max_sessions,
            idle_timeout=config.listen.idle_timeout.total_seconds(),
            session_timeout=config.listen.session_timeout.total_seconds(),
            per_address=config.listen.max_sessions_per_address,
            reserved=config.listen.reserved_for_partners,
            partner_networks=[net for p in config.partners for net in p.networks],
        )
        self._wake = asyncio.Event()
        self._pending_since: float | None = None  # time.time() of the oldest not handed off
        self._server: asyncio.Server | None = None
        self._worker: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics: MetricsServer | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the gateway is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Recover what a previous run left, then listen."""
        self._recover()
        await asyncio.to_thread(self.node.start)
        orphans = self.handoff.set_aside_orphans()
        if orphans:
            log.warning("set aside %d message(s) spooled but never recorded", orphans)
        loop = asyncio.get_running_loop()
        handler = Handler(
            self.config, self.pipeline, self.executor, self._after, self.limits, tally=self.tally
        )
        listen = self.config.listen
        try:
            self._server = await loop.create_server(
                protocol_factory(self.config, handler, self.limits),
                host=listen.host,
                port=listen.port,
            )
        except OSError as exc:
            where = _address(listen.host, listen.port)
            raise CannotStart(f"cannot listen on {where}: {_why(exc)}") from None
        self._loop = loop
        self._worker = asyncio.create_task(self._handoff_loop())
        self._tasks = [
            asyncio.create_task(self.courier.run(self._outbound_wake)),
            asyncio.create_task(self._outbox_loop()),
            asyncio.create_task(self._heartbeat_loop()),
        ]
        self.schedule.start()
        self._serve_metrics()
        log.info("listening on %s:%d", self.config.listen.host, self.port)

    def _serve_metrics(self) -> None:
        """/metrics at ``[metrics] listen``. A metrics address that cannot be bound is logged
        and the gateway runs on without it: intake matters more than its figures."""
        settings = self.config.metrics
        if settings.host is None:
            return
        figures = Figures(
            config=self.config,
            ledger=self.ledger,
            clock=self.clock,
            spools={"inbound": self.inbound, "outbound": self.outbound},
            keys=self.gpg.list_keys,
        )
        try:
            self.metrics = MetricsServer(
                registry_of(self.tally, figures), settings.host, settings.port
            )
        except OSError as exc:
            where = _address(settings.host, settings.port)
            log.error("metrics not served: cannot listen on %s: %s", where, _why(exc))
            return
        log.info("metrics on http://%s/metrics", _address(settings.host, self.metrics.port))

    def _recover(self) -> None:
        """What a stopped process left claimed goes back by each queue's own retry policy: an
        inbound hand-off counts it as an attempt, outbound delivery requeues it untouched."""
        inbound, outbound = self.inbound.recover(), self.outbound.recover()
        set_aside = self.handoff.retry.interrupted(inbound.interrupted)
        requeue_interrupted(self.outbound, outbound.interrupted)
        for name, found in (("inbound", inbound), ("outbound", outbound)):
            if found.interrupted or found.unreadable or found.stale_tmp:
                log.warning(
                    "recovered %s: %d interrupted, %d unreadable set aside, %d stale tmp files",
                    name,
                    len(found.interrupted),
                    found.unreadable,
                    found.stale_tmp,
                )
        if set_aside:
            log.warning("set aside %d inbound item(s) at their last attempt", set_aside)

    def wake_outbound(self) -> None:
        """Tell delivery that something is due; safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._outbound_wake.set()
        else:
            loop.call_soon_threadsafe(self._outbound_wake.set)

    def _after(self, accepted: Accepted) -> None:
        if accepted.duplicate:
            row = self.ledger.get(accepted.ledger_id)
            asyncio.get_running_loop().run_in_executor(
                self.background, self.handoff.resend_receipt, row
            )
        elif self._pending_since is None:
            self._pending_since = time.time()
        self._wake.set()

    def _hold(self, waited: float) -> bool:
        """Whether the hand-off leaves an item that has waited ``waited`` seconds for later."""
        return waited < HANDOFF_MAX_WAIT and self.limits.busy(HANDOFF_QUIET)

    async def _handoff_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await wait_event(self._wake, HANDOFF_INTERVAL)
            self._wake.clear()
            await self._count_the_ledgers_backlog()
            # Sessions are busy: wait (on the loop, without touching the spool) until they are
            # not, or until the oldest message accepted since the last run is due anyway.
            while self._pending_since is not None and self._hold(time.time() - self._pending_since):
                await asyncio.sleep(HANDOFF_POLL)
            self._pending_since = None
            runs = [
                loop.run_in_executor(
                    self.background,
                    functools.partial(self.handoff.run, self._hold, share=HANDOFF_WORKERS),
                )
                for _ in range(HANDOFF_WORKERS)
            ]
            outcomes = await asyncio.gather(*runs, return_exceptions=True)
            progress = [done for done in outcomes if isinstance(done, Progress)]
            for failed in outcomes:
                if isinstance(failed, BaseException):
                    log.error("hand-off failed; retrying", exc_info=failed)
            if any(done.done for done in progress):
                self._outbound_wake.set()  # receipts were queued
            held = [done.held_since for done in progress if done.held_since is not None]
            if held:
                self._pending_since = min(*held, self._pending_since or time.time())
                self._wake.set()

    async def _count_the_ledgers_backlog(self) -> None:
        """With several nodes, the work waiting in the ledger counts as pending since the
        oldest of it was received (this node's intake, another's, or a dead node's whose leases
        ran out): the hand-off does not wait more than its longest wait for that either. One
        node, the spool alone: nothing to read (no thread hop at every wake)."""
        if not self.node.takes_work:
            return
        try:
            since = await asyncio.to_thread(self.node.waiting_since)
        except Exception as error:  # the ledger away: the run will say so
            log.error("cannot read the ledger's backlog: %s", type(error).__name__)
            return
        if since is not None:
            at = time.time() - max(0.0, (self.clock.now() - since).total_seconds())
            self._pending_since = min(at, self._pending_since or at)

    async def _outbox_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                outcomes = await loop.run_in_executor(self.outbox_worker, self.outbox.scan_once)
                if any(outcome.reference for outcome in outcomes):
                    self._outbound_wake.set()
            except Exception:
                log.exception("outbox scan failed; retrying")
            await asyncio.sleep(OUTBOX_INTERVAL)

    async def _heartbeat_loop(self) -> None:
        """The node's heartbeat: its leases hold while it beats."""
        every = self.config.cluster.heartbeat_seconds
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.node.beat)
            except Exception as error:  # the ledger away: the leases run out, others take over
                log.error("heartbeat failed: %s", type(error).__name__)

    async def stop(self) -> None:
        """Stop accepting, let sessions inside DATA finish, close the SMTP sessions kept to
        partners, hand off what is left, release the threads (the services are closed by their
        ``with``)."""
        if self._server is not None:
            self._server.close()
            if not await wait_event(self.limits.drained, DRAIN_SECONDS):
                log.error("sessions still in DATA after %.0f s", DRAIN_SECONDS)
        await self.schedule.stop()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)
            self.metrics = None
        for task in [*self._tasks, *([self._worker] if self._worker is not None else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.courier.close()  # its kept SMTP sessions, QUIT (run did it when cancelled)
        self.handoff.feed = None  # what it holds is finished; nothing more is taken
        await asyncio.get_running_loop().run_in_executor(self.background, self.handoff.run_once)
        try:
            await asyncio.to_thread(self.node.stop)
        except Exception as error:  # its leases then run out by themselves
            log.error("cannot release this node's leases: %s", type(error).__name__)
        self.executor.shutdown(wait=True)
        self.background.shutdown(wait=True)
        self.outbox_worker.shutdown(wait=True)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _why(exc: OSError) -> str:
    """Why a listening socket could not be made, in the words an operator searches for."""
    reasons = {
        errno.EADDRINUSE: "address already in use (another server listens there)",
        errno.EACCES: "permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE)",
        errno.EADDRNOTAVAIL: "address not available (no interface of this machine has it)",
    }
    if exc.errno in reasons:
        return reasons[exc.errno]
    # asyncio's own text quotes the address as a Python tuple: the errno's words instead
    return os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__


async def run(config: Config) -> None:
    with open_services(config) as services:
        gateway = Gateway(services)
        await gateway.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("stopping")
        await gateway.stop()
