"""Outbound delivery: the Courier sends the outbound spool to partners, each partner in a lane of
its own, through a few kept SMTP sessions, while its outcomes are recorded beside them.

One pass takes the due items of the spool (``not_before`` reached), grouped by partner, and works
through each partner's share with at most ``connections_per_partner`` sessions, each kept for
several messages (as an MTA does). Receipts come in trickles (the hand-off wakes the Courier each
time it queued some), so a session also outlives its pass: when a pass ends, its sessions that
are still sound stay open, idle, for ``[outbound] keep_sessions`` (at most
``connections_per_partner`` of them per lane), and the next pass of the same lane takes them
again instead of paying a new connection, EHLO, STARTTLS handshake, EHLO and QUIT. A kept session
is only ever used for its own lane (a partner's, or the relay's lane of notices), must answer
NOOP before it carries a message, and one that fails there or before DATA is dropped and the
message tried on a new session without counting an attempt (the partner may simply have closed
an idle connection). Idle sessions are closed politely once ``keep_sessions`` has passed
(``expire_idle``, called by ``run`` at least once a second, by the injected clock) and when the
Courier stops (``close``; ``run`` does it on cancellation); a cancelled pass closes its sessions
rather than keeping them. ``keep_sessions = "PT0S"`` closes them when each pass ends.

The parts:

- :mod:`gateway.outbound.jobs` claims items and decides, before any connection, what must not go
  out (CR or LF in an address or a header line, a recipient other than the partner's address);
  notices by mail to desks (kind ``notice``) form a lane of their own that goes only to the
  relay;
- :mod:`gateway.outbound.smtpclient` holds the sessions (STARTTLS required when the route requires
  TLS, certificates verified) and turns replies into Attempts;
- :mod:`gateway.outbound.outcomes` records what came of each attempt (ledger, audit, spool,
  desk notices); :mod:`gateway.outbound.retry` says when to try again and when to give up.

Spool and ledger calls block, so they run in threads and the event loop only does SMTP: a
feeder claims items ahead of the sessions, a batch per thread hop, and a settler records the
outcomes in large batches, each in one ledger transaction (group commit): when the batch is
full, ``SETTLE_DELAY`` after it began, or when the lane's pass ends. Work in a thread contends
with the event loop for the GIL, and bench/outbound.py showed it costs least in few large
batches. A crash between a 250 and its record re-sends the message after recovery (at least
once, never lost); an item leaves cur/ only once its outcome is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.core.clock import Clock
from gateway.core.config import Config
from gateway.core.stagecpu import DELIVERY, StageCpu
from gateway.core.tally import Tally
from gateway.core.waits import to_the_end, wait_event
from gateway.desks.notices import MAIL_KIND
from gateway.forms.catalogue import FormCatalogue
from gateway.outbound.jobs import Intake, Job
from gateway.outbound.outcomes import Recorder
from gateway.outbound.retry import not_before
from gateway.outbound.smtpclient import Attempt, Route, Routes, Session, Unreachable
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger
from gateway.store.spool import Spool, SpoolItem

log = logging.getLogger("gateway.delivery")
_NOTICES = "@notices"  # the lane of notices by mail (no partner code looks like it)

# Work in threads contends with the event loop for the GIL, and costs more while the sessions
# send than before or after (bench/outbound.py): claims and records come in few large batches.
CLAIM_BATCH = 256  # items claimed and examined in one thread hop (one read of the ledger)
CLAIM_GROWTH = 4  # the first claim is one item per session, each next one this many times more
CLAIM_AHEAD = 512  # jobs a lane keeps claimed ahead of its sessions ...
CLAIM_AHEAD_BYTES = 32 << 20  # ... and their payloads' bytes
SETTLE_BATCH = 512  # outcomes recorded in one ledger transaction (group commit) ...
SETTLE_BYTES = 32 << 20  # ... and their payloads' bytes
SETTLE_DELAY = 1.0  # seconds an outcome may wait for a fuller batch while the sessions send
REPEAT_WARNING_AFTER = 300.0  # seconds before the same unreachable partner is logged again
# Seconds between two scans of the spool at least. The hand-off wakes the courier for every
# receipt it queues, and a scan reads the whole queue (a stat per item): while forms arrive and a
# partner is down, scanning a growing queue for every new receipt cost more than the rest of
# the gateway together (bench/inbound.py, its receipts to a partner that refuses connections).
PASS_SPACING = 0.2
# A session kept idle must answer NOOP within this many seconds (or the delivery timeout if that
# is shorter) to be used again; otherwise a new one is opened, at no cost to the message.
KEPT_CHECK_TIMEOUT = 5.0
# Seconds the QUITs of idle sessions may take together when they expire or the Courier stops;
# those not answered by then are cut.
QUIT_TIMEOUT = 2.0


@dataclass
class _Lane:
    """One partner's share of a pass; ``down`` once no session can be opened to it. ``held``:
    the items claimed and not yet handed to the settler, put back if the pass is cancelled.
    ``code``: the partner's, or ``_NOTICES``; kept sessions belong to it and to no other."""

    code: str
    route: Route | None
    items: deque[SpoolItem]
    down: Attempt | None = None
    handled: int = 0
    held: dict[str, SpoolItem] = field(default_factory=dict)
    ahead: int = 0  # jobs claimed and not yet taken by a session, and their bytes
    ahead_bytes: int = 0
    room: asyncio.Event = field(default_factory=asyncio.Event)  # set when a session took one

    def took(self, job: Job) -> None:
        self.ahead -= 1
        self.ahead_bytes -= len(job.payload)
        self.room.set()

    async def wait_for_room(self) -> None:
        while self.ahead >= CLAIM_AHEAD or self.ahead_bytes >= CLAIM_AHEAD_BYTES:
            self.room.clear()
            await self.room.wait()


@dataclass
class _Worker:
    """One connection's worth of work in a lane."""

    session: Session | None = None


@dataclass(frozen=True)
class _Idle:
    """A session kept open after its pass, for the next pass of the same lane."""

    session: Session
    route: Route
    since: datetime


class _Settler:
    """Records what the sessions of a lane did, off the event loop: outcomes wait until a batch
    is full (``SETTLE_BATCH`` or ``SETTLE_BYTES``), ``SETTLE_DELAY`` passed or the lane is done,
    and each batch is recorded in one thread hop and one ledger transaction (group commit)."""

    def __init__(self, settle: Callable[[list[tuple[Job, Attempt]]], None]) -> None:
        self._settle = settle
        self._waiting: list[tuple[Job, Attempt]] = []
        self._bytes = 0
        self._some = asyncio.Event()
        self._full = asyncio.Event()
        self._closed = False

    def put(self, job: Job, attempt: Attempt) -> None:
        self._waiting.append((job, attempt))
        self._bytes += len(job.payload)
        self._some.set()
        if len(self._waiting) >= SETTLE_BATCH or self._bytes >= SETTLE_BYTES:
            self._full.set()

    def close(self) -> None:
        self._closed = True
        self._some.set()
        self._full.set()

    async def run(self) -> None:
        while True:
            await self._some.wait()
            if not self._full.is_set():
                await wait_event(self._full, SETTLE_DELAY)
            self._full.clear()
            if self._waiting:
                batch = self._waiting[:SETTLE_BATCH]
                del self._waiting[:SETTLE_BATCH]
                self._bytes -= sum(len(job.payload) for job, _ in batch)
                if (
                    self._closed
                    or len(self._waiting) >= SETTLE_BATCH
                    or self._bytes >= SETTLE_BYTES
                ):
                    self._full.set()
                try:
                    await to_the_end(asyncio.to_thread(self._settle, batch))
                except Exception:
                    keys = ", ".join(job.item.key for job, _ in batch)
                    log.exception("settling %s failed; recovered at the next start", keys)
            if not self._waiting:
                self._some.clear()
                if self._closed:
                    return


class Courier:
    """Delivers the outbound spool: ``run_once`` for one pass, ``run`` as a service."""

    def __init__(
        self,
        *,
        config: Config,
        ledger: Ledger,
        spool: Spool,
        audit: AuditLog,
        clock: Clock,
        catalogue: FormCatalogue,
        rng: random.Random | None = None,
        cpu: StageCpu | None = None,
        tally: Tally | None = None,
    ) -> None:
        self.config = config
        self.cpu = cpu or StageCpu()
        self.spool = spool
        self.clock = clock
        self.timeout = config.outbound.timeout.total_seconds()
        self.keep = config.outbound.keep_sessions
        self._idle: dict[str, list[_Idle]] = {}  # lane code -> sessions kept, the latest last
        self._warned: dict[str, tuple[str, float]] = {}  # peer -> (what was said, when)
        self._routes = Routes.of(config)
        if config.relay is None and any(desk.email for desk in config.desks):
            log.warning(
                "desks have e-mail addresses but no [smtp.relay] is configured: "
                "notices go to their Maildirs only"
            )
        self._intake = Intake(config=config, ledger=ledger, spool=spool, clock=clock)
        self._recorder = Recorder(
            config=config,
            ledger=ledger,
            spool=spool,
            audit=audit,
            clock=clock,
            rng=rng or random.Random(),  # noqa: S311 - jitter, not secrecy
            catalogue=catalogue,
            tally=tally,
        )

    async def run_once(self) -> int:
        """Try every due item once, partners side by side; returns how many items were tried
        (sent, retried, rejected or refused), not counting those left waiting for their row."""
        lanes, _ = await self._scan()
        counts = await asyncio.gather(*(self._drive(lane) for lane in lanes.values()))
        return sum(counts)

    def next_due(self) -> datetime | None:
        """The earliest ``not_before`` of the waiting items (now for an item never tried)."""
        now = self.clock.now()
        return min((not_before(item.meta) or now for item in self.spool.waiting()), default=None)

    async def run(self, wake: asyncio.Event, poll: float = 1.0) -> None:
        """Deliver until cancelled: a pass per partner whenever items are due, each partner's
        pass on its own, so that a slow partner holds up no other. ``wake`` starts a pass at
        once (something was queued); otherwise every ``poll`` seconds or at the next due item."""
        busy: dict[str, asyncio.Task[int]] = {}

        def finished(code: str, task: asyncio.Task[int]) -> None:
            busy.pop(code, None)
            if task.cancelled():
                return
            if task.exception() is not None:
                log.error("delivery to %s failed: %r", code, task.exception())
            elif task.result():
                wake.set()  # it did something: more may have been queued meanwhile

        loop = asyncio.get_running_loop()
        try:
            while True:
                wake.clear()
                due = None
                scanned = loop.time()
                try:
                    lanes, due = await self._scan()
                    for code, lane in lanes.items():
                        if code not in busy:
                            busy[code] = asyncio.create_task(self._drive(lane))
                            busy[code].add_done_callback(functools.partial(finished, code))
                except Exception:
                    log.exception("delivery pass failed; trying again")
                delay = poll
                if due is not None and due > self.clock.now():
                    delay = min(poll, (due - self.clock.now()).total_seconds())
                await wait_event(wake, delay)
                await self.expire_idle()
                await asyncio.sleep(max(0.0, scanned + PASS_SPACING - loop.time()))
        finally:
            running = list(busy.values())
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await self.close()

    async def _scan(self) -> tuple[dict[str, _Lane], datetime | None]:
        """The due items by partner, oldest first, and the earliest ``not_before`` of all."""
        waiting = await asyncio.to_thread(self.spool.waiting)
        now = self.clock.now()
        lanes: dict[str, _Lane] = {}
        earliest: datetime | None = None
        for item in waiting:
            due = not_before(item.meta) or now
            earliest = due if earliest is None else min(earliest, due)
            if due <= now:
                if item.meta.get("kind") == MAIL_KIND:  # notices by mail: the relay only
                    code, route = _NOTICES, self._routes.relay
                else:
                    code = str(item.meta.get("partner", ""))
                    route = self._routes.partners.get(code)
                if code not in lanes:
                    lanes[code] = _Lane(code, route, deque())
                lanes[code].items.append(item)
        return lanes, earliest

    async def _drive(self, lane: _Lane) -> int:
        """A partner's due items through at most ``connections_per_partner`` sessions: a feeder
        claims them ahead in batches, the sessions send, a settler records the outcomes beside
        them; returns when all are recorded."""
        width = min(self.config.outbound.connections_per_partner, len(lane.items))
        ready: asyncio.Queue[Job | None] = asyncio.Queue()
        settler = _Settler(self._settle)
        settling = asyncio.create_task(settler.run())
        feeding = asyncio.create_task(self._feed(lane, ready, width))
        try:
            done = await asyncio.gather(
                *(self._work(lane, ready, settler) for _ in range(width)), return_exceptions=True
            )
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            # Claimed and not sent (cancelled, or a bug): put back as they were, a rename each;
            # one in the middle of DATA may reach the partner twice, never not at all.
            for item in lane.held.values():
                self._intake.release(item)
            lane.held.clear()
            settler.close()  # what was sent is recorded even when the pass is cancelled
            await settling
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return lane.handled

    async def _feed(self, lane: _Lane, ready: asyncio.Queue[Job | None], width: int) -> None:
        """Claim the lane's items in batches ahead of the sessions, then tell each it is over.
        The first batches are small (one item per session, then a few), so that the sessions
        open and start sending while the next ones are claimed."""
        size = width
        try:
            while lane.items:
                await lane.wait_for_room()
                keys = [lane.items.popleft().key for _ in range(min(size, len(lane.items)))]
                size = min(size * CLAIM_GROWTH, CLAIM_BATCH)
                for job in await self._claim(lane, keys):
                    lane.ahead += 1
                    lane.ahead_bytes += len(job.payload)
                    ready.put_nowait(job)
        except Exception:
            log.exception("claiming items failed; they stay queued")
        for _ in range(width):
            ready.put_nowait(None)

    def _prepare(self, keys: list[str]) -> list[Job]:
        with self.cpu.timing(DELIVERY, count=0):
            return self._intake.prepare_many(keys)

    def _settle(self, batch: list[tuple[Job, Attempt]]) -> None:
        with self.cpu.timing(DELIVERY, count=len(batch)):
            self._recorder.settle_batch(batch)

    async def _claim(self, lane: _Lane, keys: list[str]) -> list[Job]:
        """Claim and examine in a thread; a claim cut short by cancellation still ends, and what
        it claimed is put back."""
        claiming = asyncio.ensure_future(asyncio.to_thread(self._prepare, keys))
        try:
            jobs = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            for job in await claiming:
                self._intake.release(job.item)
            raise
        for job in jobs:
            lane.held[job.item.key] = job.item
        return jobs

    async def _work(self, lane: _Lane, ready: asyncio.Queue[Job | None], settler: _Settler) -> None:
        worker = _Worker()
        try:
            while (job := await ready.get()) is not None:
                lane.took(job)
                attempt = job.ready or await self._try(job, lane, worker)
                lane.held.pop(job.item.key, None)
                lane.handled += 1
                settler.put(job, attempt)
        except BaseException:
            if worker.session is not None:
                worker.session.close()
            raise
        if worker.session is not None:
            await self._keep(lane, worker.session)  # a cancellation now still closes it

    # ---------------------------------------------------------------- sessions kept idle

    def idle_sessions(self) -> int:
        """How many sessions are kept open, idle, for the next passes."""
        return sum(len(idle) for idle in self._idle.values())

    async def expire_idle(self) -> int:
        """Close (QUIT) the idle sessions kept for ``keep_sessions`` or longer, by the clock;
        returns how many were closed."""
        now = self.clock.now()
        expired: list[Session] = []
        for code in list(self._idle):
            fresh = [idle for idle in self._idle[code] if not self._stale(idle, now)]
            expired += [idle.session for idle in self._idle[code] if self._stale(idle, now)]
            if fresh:
                self._idle[code] = fresh
            else:
                del self._idle[code]
        await _quit_all(expired)
        return len(expired)

    async def close(self) -> None:
        """Close (QUIT) every idle session: the Courier stops. ``run`` calls it when cancelled;
        whoever calls ``run_once`` calls it when done."""
        sessions = [idle.session for kept in self._idle.values() for idle in kept]
        self._idle.clear()
        await _quit_all(sessions)

    def _stale(self, idle: _Idle, now: datetime) -> bool:
        """Kept long enough (or the clock went back: then it cannot be told)."""
        return not timedelta(0) <= now - idle.since < self.keep

    async def _keep(self, lane: _Lane, session: Session) -> None:
        """At the end of a lane's pass: keep a sound session for the next pass, or QUIT it."""
        kept = self._idle.setdefault(lane.code, [])
        if (
            lane.route is not None
            and lane.down is None
            and session.connected
            and len(kept) < self.config.outbound.connections_per_partner
            and self.keep > timedelta(0)
        ):
            kept.append(_Idle(session, lane.route, self.clock.now()))
            return
        if not kept:
            del self._idle[lane.code]
        await _quit_all([session])

    async def _take_kept(self, lane: _Lane) -> Session | None:
        """A session kept from an earlier pass of this lane that still answers, or None. Those
        that do not are dropped (closed, no QUIT), those kept too long closed politely."""
        kept = self._idle.get(lane.code)
        now = self.clock.now()
        while kept:
            idle = kept.pop()  # the latest: the others are left to expire when unneeded
            if not kept:
                del self._idle[lane.code]
            if idle.route != lane.route or self._stale(idle, now):
                await _quit_all([idle.session])
            elif await _checked(idle.session, min(self.timeout, KEPT_CHECK_TIMEOUT)):
                return idle.session
            else:
                idle.session.close()
                log.debug("%s: a kept session no longer answers; opening a new one", lane.code)
            kept = self._idle.get(lane.code)
        return None

    def _warn_unreachable(self, peer: str, summary: str) -> None:
        """A partner that is down is logged once, then again when the reason changes or every
        few minutes: not once per item and session while the queue for it grows."""
        now = asyncio.get_running_loop().time()
        said = self._warned.get(peer)
        if said is not None and said[0] == summary and now - said[1] < REPEAT_WARNING_AFTER:
            log.debug("%s unreachable: %s", peer, summary)
            return
        self._warned[peer] = (summary, now)
        log.warning("%s unreachable: %s", peer, summary)

    async def _try(self, job: Job, lane: _Lane, worker: _Worker) -> Attempt:
        """Send one message, on the worker's session or a new one."""
        if lane.down is not None:
            return lane.down
        recipient = job.recipient
        if lane.route is None or recipient is None:
            return Attempt("refused", "refused: no route to this partner")
        for again in (False, True):
            reused = worker.session is not None
            if worker.session is None and not again:
                worker.session = await self._take_kept(lane)
                reused = worker.session is not None
            if worker.session is None:
                try:
                    worker.session = await Session.open(
                        lane.route, self.config.listen.hostname, self.timeout
                    )
                except Unreachable as down:
                    lane.down = down.attempt
                    self._warn_unreachable(job.peer, down.attempt.summary)
                    return down.attempt
            attempt, usable, stage = await worker.session.send(
                self.config.identity.address, recipient, job.payload
            )
            if attempt.code == 421:
                lane.down = attempt  # the server is closing: the others wait too
            if not usable:
                worker.session.close()
                worker.session = None
                if (
                    reused
                    and attempt.verdict == "retry"
                    and attempt.code is None
                    and stage != "DATA"
                ):
                    continue  # a kept session the server had dropped: once more, on a new one
            return attempt
        raise AssertionError("not reached")  # pragma: no cover


async def _checked(session: Session, timeout: float) -> bool:
    """``session.ready``, the session closed if the check is cancelled (it belongs to no one)."""
    try:
        return await session.ready(timeout)
    except BaseException:
        session.close()
        raise


async def _quit_all(sessions: list[Session]) -> None:
    """QUIT the sessions side by side, for ``QUIT_TIMEOUT`` at most; those left are cut."""
    if not sessions:
        return
    try:
        async with asyncio.timeout(QUIT_TIMEOUT):
            await asyncio.gather(*(session.quit() for session in sessions))
    except TimeoutError:
        pass
    finally:
        for session in sessions:
            session.close()
