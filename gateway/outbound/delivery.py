"""Outbound delivery: the SMTP client that sends the outbound spool to partners, with retries.

Each due item goes to its partner over SMTP; transient failures are retried with backoff; what
happened is settled in the ledger, the audit chain and, when it went wrong, the desk's Maildir.

One pass takes the due items of the spool (``not_before`` reached), grouped by partner, and works
through each partner's share with at most ``connections_per_partner`` connections, each kept for
several messages (as an MTA does). A connection requires STARTTLS when the partner (or the relay)
requires TLS, and the server's certificate is verified against the partner's ``tls_ca`` or the
system's store; nothing is ever sent in clear to such a partner. What a try came to:

- 250: the item goes to done/ (its bytes are re-sent as they are if no receipt comes), the ledger
  row to ``sent``, the receipt deadline opens, a reply closes the reply deadline of what it answers;
- 4xx, refused, dropped, timed out, TLS failure: ``attempts`` + 1 and ``not_before`` moved by
  :func:`backoff_delay` in the item's metadata (so a restart keeps them), until ``give_up_after``
  since the first attempt: then ``failed``, quarantined, the desk told;
- 5xx to MAIL, RCPT or DATA: ``rejected`` at once, quarantined, the desk told the partner's words;
- an item that must never go out (CR or LF in an address or a header line, a recipient other than
  the partner's configured address): quarantined and ``failed`` without a connection.

This is the only module that imports aiosmtplib. Spool and ledger calls block, so they run in
threads and the event loop only does SMTP: each session claims a few items at a time, and a
settler records outcomes while the sessions go on sending, the messages sent meanwhile in one
ledger transaction (group commit). A crash between a 250 and its record re-sends the message
after recovery (at least once, never lost); an outcome that cannot be recorded (database away)
is kept in the item's metadata (``outcome``) and recorded by a later pass, without sending again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import random
import re
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
from sqlalchemy import Connection, select
from sqlalchemy.exc import SQLAlchemyError

from gateway import notices
from gateway.audit import AuditLog
from gateway.clock import Clock
from gateway.config import Config, Outbound, Partner
from gateway.errors import ConfigError, GatewayError
from gateway.ledger import Ledger, MessageRow, messages
from gateway.notices import Notice
from gateway.spool import Spool, SpoolItem

log = logging.getLogger("gateway.delivery")

# An item of kind form or receipt whose ledger row is not there yet waits this long (a `gateway
# send` may not have committed yet); after that its sender died before the commit.
ORPHAN_AFTER = timedelta(minutes=10)
WORDS_LIMIT = 500  # the partner's reply text quoted in a notice
SUMMARY_LIMIT = 300  # our own one-line account of an attempt (events, audit reasons)
CLAIM_BATCH = 8  # items a session claims at a time (one thread hop)
SETTLE_BATCH = 64  # messages sent settled in one ledger transaction (group commit)
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?=\s|$)")
_REFERENCE = re.compile(r"[A-Z0-9@<>._-]{1,64}")
_CODE = re.compile(r"[A-Z0-9-]{1,32}")

Verdict = Literal["sent", "retry", "rejected", "refused", "failed"]
FINAL: frozenset[str] = frozenset({"sent", "rejected", "refused", "failed"})


# ---------------------------------------------------------------------------- pure functions


def backoff_delay(attempt: int, settings: Outbound, rng: random.Random) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1 for the first): ``retry_first``,
    doubled at each attempt up to ``retry_max``, times a factor drawn uniformly from
    [1 - jitter, 1 + jitter] (so a capped delay may exceed ``retry_max`` by the jitter)."""
    if attempt < 1:
        raise ValueError("attempts are counted from 1")
    delay = settings.retry_first
    for _ in range(attempt - 1):
        if delay >= settings.retry_max:
            break
        delay *= 2
    delay = min(delay, settings.retry_max)
    return delay * rng.uniform(1 - settings.jitter, 1 + settings.jitter)


def gives_up(first_attempt_at: datetime, now: datetime, settings: Outbound) -> bool:
    """Whether an item that failed again at ``now`` is out of time."""
    return now - first_attempt_at >= settings.give_up_after


def not_before(meta: Mapping[str, Any]) -> datetime | None:
    """When an item is due; None: at once (never tried, or its instant cannot be read)."""
    return _instant(meta.get("not_before"))


def partner_words(text: str, limit: int = WORDS_LIMIT) -> str:
    """A partner's reply text as a notice may quote it: one line, no control characters."""
    printable = "".join(char if char.isprintable() else " " for char in text)
    return " ".join(printable.split())[:limit]


def header_is_clean(message: bytes) -> bool:
    """No bare CR, bare LF or NUL in the header section (up to the first empty line)."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    rest = head.replace(b"\r\n", b"")
    return not any(char in rest for char in (b"\r", b"\n", b"\x00"))


def address_is_clean(address: object) -> bool:
    """An envelope address of printable ASCII only: no space, CR, LF or other control."""
    return isinstance(address, str) and bool(re.fullmatch(r"[\x21-\x7e]{3,254}", address))


# ---------------------------------------------------------------------------- what happened


@dataclass(frozen=True)
class Attempt:
    """What one try of one item came to. ``summary`` is ours, one line of codes and plain words
    (no address): it goes to logs, events and the audit. ``words`` is the partner's reply text,
    cleaned, for the spool's ``last_error`` and the desk's notice only."""

    verdict: Verdict
    summary: str
    code: int | None = None
    words: str = ""

    @property
    def error(self) -> str:
        """The ``last_error`` of the item: our summary and, if any, what the partner said."""
        return f"{self.summary}: {self.words}"[:WORDS_LIMIT] if self.words else self.summary

    def to_meta(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "summary": self.summary,
            "code": self.code,
            "words": self.words,
        }

    @classmethod
    def from_meta(cls, data: object) -> Attempt | None:
        if not isinstance(data, dict) or data.get("verdict") not in FINAL:
            return None
        code = data.get("code")
        return cls(
            verdict=data["verdict"],
            summary=str(data.get("summary", ""))[:SUMMARY_LIMIT],
            code=code if isinstance(code, int) else None,
            words=partner_words(str(data.get("words", ""))),
        )


def _reply(code: int, message: str, stage: str, *, in_transaction: bool) -> Attempt:
    """An SMTP reply other than success: 5xx inside a transaction is final, the rest transient."""
    enhanced = _ENHANCED.match(partner_words(message, 20))
    summary = f"{code} {enhanced.group()}" if enhanced else str(code)
    verdict: Verdict = "rejected" if in_transaction and 500 <= code < 600 else "retry"
    return Attempt(verdict, f"{summary} at {stage}", code, partner_words(f"{code} {message}"))


def _failure(exc: BaseException, stage: str) -> Attempt:
    """A failure below the SMTP replies (network, TLS, time): always worth another try."""
    cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPConnectError) else exc
    if isinstance(cause, ConnectionRefusedError):
        summary = "connection refused"
    elif isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        summary = f"timed out at {stage}"
    elif isinstance(cause, ssl.SSLCertVerificationError):
        summary = f"TLS certificate not accepted: {cause.verify_message or cause.reason}"
    elif isinstance(cause, ssl.SSLError):
        summary = f"TLS failed: {cause.reason or type(cause).__name__}"
    elif isinstance(cause, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        summary = f"connection lost at {stage}"
    elif isinstance(cause, OSError):
        summary = f"network error at {stage}: {cause.strerror or type(cause).__name__}"
    else:
        summary = f"SMTP error at {stage}: {type(exc).__name__}"
    return Attempt("retry", partner_words(summary, SUMMARY_LIMIT))


class _Unreachable(Exception):
    """No session could be opened: the partner's whole queue waits for the next try."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.summary)
        self.attempt = attempt


# ---------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class _Route:
    """Where a partner's mail goes: its own server, or the relay."""

    host: str
    port: int
    require_tls: bool
    context: ssl.SSLContext


def _routes(config: Config) -> dict[str, _Route]:
    """One route per partner; one SSLContext per CA file (loading a store costs ~20 ms)."""
    source = str(config.source or "configuration")
    contexts: dict[Path | None, ssl.SSLContext] = {}

    def context(cafile: Path | None, key: str) -> ssl.SSLContext:
        if cafile not in contexts:
            try:
                made = ssl.create_default_context(cafile=str(cafile) if cafile else None)
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise ConfigError(
                    source, key, f"cannot load the CA certificates: {reason}"
                ) from None
            made.minimum_version = ssl.TLSVersion.TLSv1_2
            contexts[cafile] = made
        return contexts[cafile]

    routes = {}
    for index, partner in enumerate(config.partners):
        if config.relay is not None:
            relay = config.relay
            routes[partner.code] = _Route(
                relay.host.strip("[]"), relay.port, relay.require_tls, context(None, "smtp.relay")
            )
        else:
            routes[partner.code] = _Route(
                partner.smtp_host.strip("[]"),
                partner.smtp_port,
                partner.require_tls,
                context(partner.tls_ca, f"partners[{index}].tls_ca"),
            )
    return routes


async def _connect(route: _Route, local_hostname: str, timeout: float) -> aiosmtplib.SMTP:
    """A session ready for MAIL: greeting, EHLO, and STARTTLS (verified) when offered; when TLS
    is required and not offered, nothing else is said. Raises _Unreachable."""
    client = aiosmtplib.SMTP(
        hostname=route.host,
        port=route.port,
        local_hostname=local_hostname,
        start_tls=False,  # we decide below, after EHLO: required means required
        tls_context=route.context,
        timeout=timeout,
    )
    stage = "connect"
    try:
        await client.connect()
        stage = "EHLO"
        await _hello(client)
        if client.supports_extension("starttls"):
            stage = "STARTTLS"
            await client.starttls()  # the certificate and host name are checked here
            if client.get_transport_info("ssl_object") is None:
                raise _Unreachable(Attempt("retry", "TLS not established"))
            stage = "EHLO"
            await _hello(client)
        elif route.require_tls:
            raise _Unreachable(Attempt("retry", "STARTTLS not offered"))
    except _Unreachable:
        client.close()
        raise
    except aiosmtplib.SMTPResponseException as reply:
        client.close()
        raise _Unreachable(_reply(reply.code, reply.message, stage, in_transaction=False)) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        client.close()
        raise _Unreachable(_failure(exc, stage)) from None
    return client


async def _hello(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()  # no extensions then: no STARTTLS, no SIZE


async def _transact(
    client: aiosmtplib.SMTP, sender: str, recipient: str, payload: bytes
) -> tuple[Attempt, bool, str]:
    """MAIL, RCPT, DATA on an open session: (what came of it, whether the session can carry
    another message, the stage reached)."""
    stage = "MAIL"
    try:
        options = [f"SIZE={len(payload)}"] if client.supports_extension("size") else []
        await client.mail(sender, options=options)
        stage = "RCPT"
        await client.rcpt(recipient)
        stage = "DATA"
        response = await client.data(payload)
    except aiosmtplib.SMTPResponseException as reply:
        attempt = _reply(reply.code, reply.message, stage, in_transaction=True)
        if reply.code == 421 or not client.is_connected:
            return attempt, False, stage
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            return attempt, False, stage
        return attempt, True, stage
    except ValueError:  # an address aiosmtplib will not put on a command line
        return Attempt("refused", "refused: an address not fit for SMTP"), False, stage
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return _failure(exc, stage), False, stage
    enhanced = _ENHANCED.match(partner_words(response.message, 20))
    code = f"{response.code} {enhanced.group()}" if enhanced else str(response.code)
    words = partner_words(f"{response.code} {response.message}")
    return Attempt("sent", code, response.code, words), True, stage


async def _quit(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()


# ---------------------------------------------------------------------------- the courier


@dataclass(frozen=True)
class _Job:
    """A claimed item and what it belongs to; ``ready`` when no SMTP is needed to decide."""

    item: SpoolItem
    kind: str
    partner: Partner | None
    row: MessageRow | None  # its own ledger row (a form, a receipt)
    original: MessageRow | None  # the row a re-send belongs to
    payload: bytes
    ready: Attempt | None = None

    @property
    def subject(self) -> MessageRow | None:
        return self.row or self.original

    def audit_fields(self) -> dict[str, str]:
        """partner, form, reference, digest for the audit: codes and a digest only."""
        subject = self.subject
        form = subject.form if subject else str(self.item.meta.get("form", ""))
        reference = subject.reference if subject else str(self.item.meta.get("reference", ""))
        partner = subject.partner if subject else self.partner.code if self.partner else ""
        return {
            "partner": partner if _CODE.fullmatch(partner) else "",
            "form": form if _CODE.fullmatch(form) else "",
            "reference": reference if _REFERENCE.fullmatch(reference) else "",
            "digest": hashlib.sha256(self.payload).hexdigest(),
        }


@dataclass
class _Lane:
    """One partner's share of a pass; ``down`` once no session can be opened to it."""

    route: _Route | None
    items: deque[SpoolItem]
    down: Attempt | None = None
    handled: int = 0


@dataclass
class _Worker:
    """One connection's worth of work in a lane: the session, and the items it has claimed."""

    client: aiosmtplib.SMTP | None = None
    held: list[SpoolItem] = field(default_factory=list)


class _Settler:
    """Settles what the sessions of a lane did, off the event loop and in batches, while they go
    on sending: what was sent meanwhile is recorded in one ledger transaction (group commit)."""

    def __init__(self, settle: Callable[[list[tuple[_Job, Attempt]]], None]) -> None:
        self._settle = settle
        self._waiting: list[tuple[_Job, Attempt]] = []
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, job: _Job, attempt: Attempt) -> None:
        self._waiting.append((job, attempt))
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._waiting:
                batch = self._waiting[:SETTLE_BATCH]
                del self._waiting[:SETTLE_BATCH]
                try:
                    await asyncio.to_thread(self._settle, batch)
                except Exception:
                    keys = ", ".join(job.item.key for job, _ in batch)
                    log.exception("settling %s failed; recovered at the next start", keys)
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
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.spool = spool
        self.audit = audit
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self.timeout = config.outbound.timeout.total_seconds()
        self._routes = _routes(config)

    # -- scheduling

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

        try:
            while True:
                wake.clear()
                due = None
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
        finally:
            running = list(busy.values())
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

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
                code = str(item.meta.get("partner", ""))
                if code not in lanes:
                    lanes[code] = _Lane(self._routes.get(code), deque())
                lanes[code].items.append(item)
        return lanes, earliest

    async def _drive(self, lane: _Lane) -> int:
        """A partner's due items through at most ``connections_per_partner`` sessions, their
        outcomes settled beside them; returns when all are settled."""
        width = min(self.config.outbound.connections_per_partner, len(lane.items))
        settler = _Settler(self._settle_batch)
        settling = asyncio.create_task(settler.run())
        try:
            done = await asyncio.gather(
                *(self._work(lane, settler, width) for _ in range(width)), return_exceptions=True
            )
        finally:
            settler.close()  # what was sent is settled even when the pass is cancelled
            await settling
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return lane.handled

    async def _work(self, lane: _Lane, settler: _Settler, width: int) -> None:
        worker = _Worker()
        try:
            while lane.items:
                share = max(1, min(CLAIM_BATCH, len(lane.items) // width))
                keys = [lane.items.popleft().key for _ in range(min(share, len(lane.items)))]
                jobs = await asyncio.to_thread(self._prepare_many, keys)
                worker.held.extend(job.item for job in jobs)
                for job in jobs:
                    lane.handled += 1
                    attempt = job.ready or await self._try(job, lane, worker)
                    worker.held.remove(job.item)
                    settler.put(job, attempt)
        except BaseException:
            # Cancelled (or a bug) with items claimed and not sent: put them back as they were
            # (a rename each); one in the middle of DATA may reach the partner twice, never
            # not at all.
            for item in worker.held:
                self._release(item)
            if worker.client is not None:
                worker.client.close()
            raise
        if worker.client is not None:
            await _quit(worker.client)

    async def _try(self, job: _Job, lane: _Lane, worker: _Worker) -> Attempt:
        """Send one message, on the worker's session or a new one."""
        if lane.down is not None:
            return lane.down
        if lane.route is None or job.partner is None:
            return Attempt("refused", "refused: no route to this partner")
        for _ in range(2):
            reused = worker.client is not None
            if worker.client is None:
                try:
                    worker.client = await _connect(
                        lane.route, self.config.listen.hostname, self.timeout
                    )
                except _Unreachable as down:
                    lane.down = down.attempt
                    log.warning("%s unreachable: %s", job.partner.code, down.attempt.summary)
                    return down.attempt
            attempt, usable, stage = await _transact(
                worker.client, self.config.identity.address, job.partner.address, job.payload
            )
            if attempt.code == 421:
                lane.down = attempt  # the server is closing: the others wait too
            if not usable:
                worker.client.close()
                worker.client = None
                if (
                    reused
                    and attempt.verdict == "retry"
                    and attempt.code is None
                    and stage != "DATA"
                ):
                    continue  # a kept session the server had dropped: once more, on a new one
            return attempt
        raise AssertionError("not reached")  # pragma: no cover

    # -- before: claim and examine (in a thread)

    def _prepare_many(self, keys: list[str]) -> list[_Job]:
        jobs = []
        for key in keys:
            try:
                job = self._prepare(key)
            except Exception:
                log.exception("cannot examine %s; it stays queued", key)
                continue
            if job is not None:
                jobs.append(job)
        return jobs

    def _prepare(self, key: str) -> _Job | None:
        """Claim the item and decide whether and how it goes; None: it is not ours to send now
        (claimed by another gateway, not due, waiting for its row, or settled before)."""
        item = self.spool.claim_key(key)
        if item is None:
            return None
        try:
            return self._examine(item)
        except BaseException:
            self._release(item)
            raise

    def _examine(self, item: SpoolItem) -> _Job | None:
        meta, now = item.meta, self.clock.now()
        due = not_before(meta)
        if due is not None and due > now:  # rescheduled by another gateway since we looked
            self.spool.release(item)
            return None
        kind = str(meta.get("kind", ""))
        again = ".again." in item.key
        row = original = None
        if kind == "form" or (kind == "receipt" and not again):
            row = self.ledger.by_spool_key(item.key)
            if row is None:
                self._orphan(item, now)
                return None
            if row.state != "queued":
                self._settled_before(item, row)
                return None
        elif kind == "resend" and isinstance(meta.get("ledger_id"), int):
            with contextlib.suppress(KeyError):
                original = self.ledger.get(meta["ledger_id"])
        elif kind == "receipt":
            original = self.ledger.by_spool_key(item.key.split(".again.")[0])
        partner = next((p for p in self.config.partners if p.code == meta.get("partner")), None)
        payload = item.payload()
        ready = Attempt.from_meta(meta.get("outcome"))
        if ready is None:
            refusal = self._refusal(kind, meta, partner, row or original, payload)
            ready = Attempt("refused", f"refused: {refusal}") if refusal else None
        return _Job(item, kind, partner, row, original, payload, ready)

    def _refusal(
        self,
        kind: str,
        meta: Mapping[str, Any],
        partner: Partner | None,
        subject: MessageRow | None,
        payload: bytes,
    ) -> str | None:
        """Why an item must never go out (a fault upstream), or None."""
        if kind not in ("form", "receipt", "resend"):
            return "unknown kind of item"
        if partner is None:
            return "unknown partner"
        if subject is not None and subject.partner != partner.code:
            return f"queued for {partner.code} but recorded for {subject.partner}"
        if not address_is_clean(meta.get("to")) or not address_is_clean(
            self.config.identity.address
        ):
            return "CR, LF or a character outside printable ASCII in an envelope address"
        if str(meta["to"]).lower() != partner.address.lower():
            return f"the recipient is not the address configured for {partner.code}"
        if not header_is_clean(payload):
            return "bare CR, LF or NUL in the message header"
        return None

    def _orphan(self, item: SpoolItem, now: datetime) -> None:
        """An item whose ledger row is not there: give its sender's commit time, then set it
        aside for an operator (its handler was never told it was queued)."""
        queued = _instant(item.meta.get("queued_at"))
        if queued is None:
            queued = datetime.fromtimestamp(item.path.stat().st_mtime, UTC)
        if now - queued < ORPHAN_AFTER:
            self.spool.release(item)
            return
        log.error("setting aside %s: queued but never recorded in the ledger", item.key)
        self.spool.set_aside(item)

    def _settled_before(self, item: SpoolItem, row: MessageRow) -> None:
        """The ledger already has the outcome (a crash came between its commit and the move)."""
        log.warning("%s is already %s in the ledger: not sending it again", item.key, row.state)
        if row.state in ("rejected", "failed"):
            self.spool.set_aside(item)
        else:
            self.spool.finish(item)

    def _release(self, item: SpoolItem) -> None:
        try:
            self.spool.release(item)
        except (GatewayError, OSError, ValueError) as exc:
            log.error("%s stays claimed until the next start: %s", item.key, exc)

    # -- after: settle (in a thread)

    def _settle_batch(self, batch: list[tuple[_Job, Attempt]]) -> None:
        """Record what came of the attempts: the messages sent in one transaction, the rest
        one by one. If the shared transaction fails, each is tried on its own."""
        now = self.clock.now()
        decided = [(job, self._decide(job, attempt, now)) for job, attempt in batch]
        sent = [(job, attempt) for job, attempt in decided if attempt.verdict == "sent"]
        together = False
        if len(sent) > 1:
            try:
                self._sent(sent, now)
                together = True
            except (GatewayError, OSError, SQLAlchemyError) as error:
                log.warning("settling %d sent messages together failed: %s", len(sent), error)
        for job, attempt in decided:
            if not (together and attempt.verdict == "sent"):
                self._settle(job, attempt, now)

    def _settle(self, job: _Job, attempt: Attempt, now: datetime) -> None:
        """Record what came of one attempt. When that fails (a database or disk away), a final
        outcome is kept in the item's metadata so that the next pass settles it without
        sending again; a retry is simply put back."""
        try:
            if attempt.verdict == "sent":
                self._sent([(job, attempt)], now)
            elif attempt.verdict == "retry":
                self._retry(job, attempt, now)
            else:
                self._closed(job, attempt, now)
        except (GatewayError, OSError, SQLAlchemyError) as error:
            log.error("cannot settle %s (%s): %s", job.item.key, attempt.summary, error)
            self._keep(job, attempt, now)

    def _decide(self, job: _Job, attempt: Attempt, now: datetime) -> Attempt:
        """A retry past ``give_up_after`` since the first attempt becomes a failure."""
        if attempt.verdict != "retry":
            return attempt
        first = _instant(job.item.meta.get("first_attempt_at")) or now
        if not gives_up(first, now, self.config.outbound):
            return attempt
        attempts = _count(job.item.meta.get("attempts")) + 1
        summary = f"gave up after {attempts} attempts since {_iso(first)}: {attempt.summary}"
        return Attempt("failed", summary[:SUMMARY_LIMIT], attempt.code, attempt.words)

    def _sent(self, sent: list[tuple[_Job, Attempt]], now: datetime) -> None:
        """Messages the partner took (250): ledger, deadlines and audit in one transaction,
        then each item to done/."""
        with self.audit.begin() as connection:
            for job, attempt in sent:
                self._sent_in(connection, job, attempt, now)
        for job, attempt in sent:
            try:
                self.spool.finish(job.item)
            except (GatewayError, OSError) as error:
                # The ledger says sent: the next pass moves it to done/ without sending it.
                log.error("%s sent but not moved to done/: %s", job.item.key, error)
                self._release(job.item)
                continue
            log.info("sent %s to %s: %s", job.item.key, _code(job), attempt.summary)

    def _sent_in(self, connection: Connection, job: _Job, attempt: Attempt, now: datetime) -> None:
        row, key = job.row, job.item.key
        moved = True
        if row is not None:
            moved = self.ledger.set_state_in(
                connection, row.id, "sent", attempt.summary, expected=("queued",)
            )
            if moved and job.kind == "form":
                window = job.partner.receipt_window if job.partner else timedelta(0)
                self.ledger.open_deadline_in(
                    connection, row.id, kind="receipt", owed_by="partner", due=now + window
                )
                if row.in_reply_to:
                    self._answered_in(connection, row)
        elif job.original is not None:
            self.ledger.event_in(connection, job.original.id, "resent", f"{key}: {attempt.summary}")
        if moved:
            self.audit.append_in(
                connection, "sent", reason=f"{job.kind} {key}", **job.audit_fields()
            )

    def _answered_in(self, connection: Connection, row: MessageRow) -> None:
        """Our reply went out: the partner's message it answers is answered, its deadline met."""
        found = connection.execute(
            select(messages.c.id).where(
                messages.c.direction == "inbound",
                messages.c.partner == row.partner,
                messages.c.reference == row.in_reply_to,
            )
        ).scalar()
        if found is None:
            log.warning("%s answers %s, which is not in the ledger", row.reference, row.in_reply_to)
            return
        reason = f"answered by {row.reference}"
        self.ledger.set_state_in(
            connection, int(found), "answered", reason, expected=("received", "delivered")
        )
        self.ledger.close_deadline_in(connection, int(found), "reply", "met", reason)

    def _retry(self, job: _Job, attempt: Attempt, now: datetime) -> None:
        meta = dict(job.item.meta)
        attempts = _count(meta.get("attempts")) + 1
        delay = backoff_delay(attempts, self.config.outbound, self.rng)
        meta.update(
            attempts=attempts,
            first_attempt_at=meta.get("first_attempt_at") or _iso(now),
            not_before=_iso(now + delay),
            last_error=attempt.error,
        )
        self.spool.reschedule(job.item, meta)
        log.info(
            "%s to %s: %s; attempt %d, next in %.0f s",
            job.item.key,
            _code(job),
            attempt.summary,
            attempts,
            delay.total_seconds(),
        )
        subject = job.subject
        if subject is not None:
            try:
                with self.ledger.engine.begin() as connection:
                    detail = f"attempt {attempts}: {attempt.summary}; next {meta['not_before']}"
                    self.ledger.event_in(connection, subject.id, "deferred", detail)
            except SQLAlchemyError as error:  # the spool holds the truth of a retry
                log.warning("no deferred event for %s: %s", job.item.key, error)

    def _closed(self, job: _Job, attempt: Attempt, now: datetime) -> None:
        """Rejected by the partner, out of time, or refused by us: quarantine, ledger, notice."""
        state = "rejected" if attempt.verdict == "rejected" else "failed"
        self._notify(job, state, attempt, now)  # first: posting twice leaves one notice
        with self.audit.begin() as connection:
            moved = True
            if job.row is not None:
                moved = self.ledger.set_state_in(
                    connection, job.row.id, state, attempt.summary, expected=("queued",)
                )
            elif job.original is not None:
                detail = f"{job.item.key}: {attempt.summary}"
                self.ledger.event_in(connection, job.original.id, f"resend-{state}", detail)
            if moved:
                self.audit.append_in(
                    connection, state, reason=attempt.summary, **job.audit_fields()
                )
        self.spool.set_aside(job.item)
        if attempt.verdict == "refused":
            log.error("refused to send %s (a fault upstream): %s", job.item.key, attempt.summary)
        else:
            log.warning("%s %s: %s", job.item.key, state, attempt.summary)

    def _keep(self, job: _Job, attempt: Attempt, now: datetime) -> None:
        """Settling failed: keep a final outcome in the metadata, or at least put the item back."""
        if attempt.verdict in FINAL:
            meta = {
                **job.item.meta,
                "outcome": attempt.to_meta(),
                "not_before": _iso(now + self.config.outbound.retry_first),
            }
            try:
                self.spool.reschedule(job.item, meta)
                return
            except (GatewayError, OSError) as error:
                log.error("cannot keep the outcome of %s: %s", job.item.key, error)
        self._release(job.item)

    def _notify(self, job: _Job, state: str, attempt: Attempt, now: datetime) -> None:
        desk = self._desk(job)
        fields = job.audit_fields()
        what = "receipt" if job.kind == "receipt" else f"form {fields['form']}".strip()
        if job.kind == "resend":
            what = f"re-sent {what}"
        reference, partner = fields["reference"] or job.item.key, fields["partner"] or "?"
        if desk is None:
            log.error("no desk to tell that %s %s to %s is %s", what, reference, partner, state)
            return
        if attempt.verdict == "rejected":
            subject = f"{what} {reference} to {partner} rejected"
            lines = [
                f"The partner's mail server refused the {what} {reference} for {partner} "
                f"({attempt.summary}). It will not be sent again as it is.",
                "",
                f"The partner's server replied: {attempt.words}",
            ]
        elif attempt.verdict == "refused":
            subject = f"{what} {reference} to {partner} not sent"
            lines = [
                f"The gateway did not send the {what} {reference} for {partner}: "
                f"{attempt.summary.removeprefix('refused: ')}.",
                "This is a fault in the gateway or its configuration: tell its operator.",
            ]
        else:
            subject = f"{what} {reference} to {partner} not delivered"
            lines = [
                f"The {what} {reference} could not be delivered to {partner}: {attempt.summary}.",
                "No further attempts will be made.",
            ]
            if attempt.words:
                lines += ["", f"The partner's server last replied: {attempt.words}"]
        lines += ["", f"The sealed message is kept in the outbound quarantine as {job.item.key}."]
        notice = Notice(
            kind=state,
            key=f"{state}.{job.item.key}",
            subject=subject,
            body="\n".join(lines) + "\n",
            reference=fields["reference"] or None,
        )
        notices.post(self.config, desk, notice, now)

    def _desk(self, job: _Job) -> str | None:
        """The desk that owns the message; the duty desk for receipts and ownerless ones."""
        names = {desk.name for desk in self.config.desks}
        subject = job.subject
        if job.kind != "receipt" and subject is not None and subject.desk in names:
            return subject.desk
        duty = self.config.deadlines.duty_desk
        return duty if duty in names else None


def _code(job: _Job) -> str:
    return job.partner.code if job.partner else "?"


def _count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat()


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
