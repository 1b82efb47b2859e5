"""Operators' view of and actions on the spools' waiting and quarantined items: list, show, retry,
release, drop; metadata only, never content, and every action audited with who and why."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.desks import notices
from gateway.desks.notices import MAIL_KIND, Notice
from gateway.inbound import retry as inbound_retry
from gateway.outbound import retry as outbound_retry
from gateway.outbound.retry import attempts_of, instant, iso, not_before
from gateway.service.services import Services
from gateway.store.ledger import MessageRow
from gateway.store.spool import Spool, SpoolItem
from gateway.store.states import OutboundState
from gateway.tracking.deadline_notices import iso_text, utc_text
from gateway.tracking.recipients import owner_desk

log = logging.getLogger("gateway.queues")

DIRECTIONS = ("inbound", "outbound")
FOLDERS = {"new": "waiting", "cur": "claimed", "quarantine": "quarantined"}
# The metadata a release forgets, so the item starts its retries afresh: its retry policy's
# state and, outbound, an outcome kept for recording.
_RETRY_STATE = {
    "inbound": inbound_retry.RETRY_STATE,
    "outbound": (*outbound_retry.RETRY_STATE, "outcome"),
}
# The ledger states `queue release` sends again from (queued: an item set aside before it went).
_RELEASABLE = (OutboundState.QUEUED, OutboundState.REJECTED, OutboundState.FAILED)
_CODE = re.compile(r"[A-Z0-9-]{1,32}")
REASON_LIMIT = 200
_REFERENCE = re.compile(r"[A-Z0-9@<>._-]{1,64}")


class QueueRefusal(Exception):
    """An action that cannot be done on this item (or no such item): the command exits 1."""


def checked_reason(text: str, *, required: bool) -> str:
    """The reason given for an action, its white space made single spaces; ValueError when it is
    missing (and ``required``), longer than REASON_LIMIT or not printable. It is written in the
    ledger and the audit chain: codes and references only, never personal data."""
    reason = " ".join(text.split())
    if (required and not reason) or len(reason) > REASON_LIMIT or not reason.isprintable():
        raise ValueError(f"one printable line of {int(required)} to {REASON_LIMIT} characters")
    return reason


@dataclass(frozen=True)
class QueueItem:
    """What an operator sees of a spool item: metadata and its ledger row, never its content."""

    direction: str
    key: str
    folder: str  # waiting | claimed | quarantined
    kind: str  # inbound: message; outbound: form | receipt | resend | notice
    partner: str
    form: str
    reference: str
    state: str | None  # the ledger row's state; None without a row
    attempts: int
    next_attempt: datetime | None
    since: datetime
    why: str  # the last error: why it was deferred or quarantined
    releases: int
    row: MessageRow | None

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "queue": self.direction,
            "key": self.key,
            "folder": self.folder,
            "kind": self.kind,
            "partner": self.partner,
            "form": self.form,
            "reference": self.reference,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt": iso_text(self.next_attempt) if self.next_attempt else None,
            "since": iso_text(self.since),
            "age_seconds": max(0, int((now - self.since).total_seconds())),
            "why": self.why,
            "releases": self.releases,
            "ledger_id": self.row.id if self.row else None,
            "desk": self.row.desk if self.row else None,
        }


class Queues:
    """The inbound and outbound spools as an operator handles them."""

    def __init__(self, services: Services, *, actor: str) -> None:
        self.config = services.config
        self.ledger = services.ledger
        self.audit = services.audit
        self.clock = services.clock
        self.actor = actor
        self.spools = {"inbound": services.inbound, "outbound": services.outbound}

    # ------------------------------------------------------------------ reading

    def items(self, direction: str | None = None, *, quarantined: bool = False) -> list[QueueItem]:
        """Waiting, claimed and quarantined items (only quarantined ones with ``quarantined``),
        inbound then outbound, oldest first in each folder."""
        found: list[QueueItem] = []
        for name in _directions(direction):
            spool = self.spools[name]
            folders = [spool.quarantine]
            if not quarantined:
                folders = [spool.new, spool.cur, spool.quarantine]
            for folder in folders:
                # Oldest first; items written within the file system's time resolution by name.
                for path in sorted(
                    folder.glob("*.msg"), key=lambda path: (_mtime(path), path.name)
                ):
                    item = _locate(spool, path.name.removesuffix(".msg"))
                    if item is not None and item.path.parent == folder:
                        found.append(self._describe(name, item))
        return found

    def get(self, key: str, direction: str | None = None) -> QueueItem:
        """The item with this key in either spool (or the one named); QueueRefusal when none
        holds it, or both do and no direction was given."""
        try:
            located = [
                (name, item)
                for name in _directions(direction)
                if (item := _locate(self.spools[name], key)) is not None
            ]
        except ValueError:
            raise QueueRefusal(f"{key[:80]!r} is not a spool key") from None
        if not located:
            where = f"the {direction} queue" if direction else "the inbound or outbound queue"
            raise QueueRefusal(f"no item {key} waiting or quarantined in {where}")
        if len(located) > 1:
            raise QueueRefusal(f"{key} is in both queues: say --inbound or --outbound")
        name, item = located[0]
        return self._describe(name, item)

    def events(self, item: QueueItem) -> list[tuple[datetime, str, str]]:
        """The ledger events of the item's message (codes and references only)."""
        return self.ledger.events_of(item.row.id) if item.row else []

    # ------------------------------------------------------------------ actions

    def retry(self, key: str, reason: str = "") -> QueueItem:
        """An outbound item deferred for a later attempt goes now: its ``not_before`` becomes
        now, and the running gateway's courier takes it at its next pass (a second at most)."""
        item = self.get(key)
        if item.direction != "outbound":
            raise QueueRefusal(
                f"{key} is an inbound item: retry is for outbound items waiting for a later attempt"
            )
        if item.folder == "quarantined":
            raise QueueRefusal(f"{key} is quarantined: `gateway queue release` puts it back")
        if item.folder == "claimed":
            raise QueueRefusal(f"{key} is being delivered right now")
        now = self.clock.now()
        if item.next_attempt is None or item.next_attempt <= now:
            raise QueueRefusal(f"{key} is not deferred: it goes at the next delivery pass")
        spool = self.spools["outbound"]
        claimed = spool.claim([key])
        if not claimed:
            raise QueueRefusal(f"{key} is being delivered right now")
        spool.requeue(claimed[0], {**claimed[0].meta, "not_before": iso(now)})
        self._record(item, "retry", reason, event="retry-now")
        return self.get(key, "outbound")

    def release(self, key: str, reason: str = "", direction: str | None = None) -> QueueItem:
        """A quarantined item goes back to its queue with its attempts counted from zero; an
        outbound form or receipt that was ``rejected`` or ``failed`` is ``queued`` again."""
        item = self.get(key, direction)
        if item.folder != "quarantined":
            raise QueueRefusal(f"{key} is not quarantined (it is {item.folder})")
        own_row = item.direction == "inbound" or (
            item.kind in ("form", "receipt") and ".again." not in key
        )
        if own_row and item.row is None:
            raise QueueRefusal(
                f"{key} was never recorded in the ledger (no 250 was given or no handler was "
                "told it was queued): it would be set aside again; `gateway queue drop` removes it"
            )
        requeue = item.direction == "outbound" and own_row and item.row is not None
        if requeue and item.state not in _RELEASABLE:
            raise QueueRefusal(f"{key} is already {item.state} in the ledger: nothing to send")
        spool = self.spools[item.direction]
        old = _locate(spool, key)
        meta = dict(old.meta if old is not None else {})
        for name in _RETRY_STATE[item.direction]:
            meta.pop(name, None)
        meta["releases"] = item.releases + 1
        with self.ledger.transaction() as tx:
            if requeue and item.row is not None and item.state != OutboundState.QUEUED:
                self.ledger.set_state_in(
                    tx,
                    item.row.id,
                    OutboundState.QUEUED,
                    self._detail("released", reason),
                    expected=(OutboundState.REJECTED, OutboundState.FAILED),
                )
            elif item.row is not None:
                self.ledger.event_in(tx, item.row.id, "released", self._detail("", reason))
            self._audit_in(tx, item, "release", reason)
            try:
                spool.unquarantine(key, meta)
            except KeyError:
                raise QueueRefusal(f"{key} was released or dropped meanwhile") from None
        log.info("released %s %s by %s", item.direction, key, self.actor)
        return self.get(key, item.direction)

    def drop(self, key: str, reason: str, direction: str | None = None) -> QueueItem:
        """Remove a waiting or quarantined item for good: the message's ledger row gets an event
        (an outbound one that was still ``queued`` becomes ``failed``), its desk is told, the
        action is audited."""
        item = self.get(key, direction)
        if item.folder == "claimed":
            raise QueueRefusal(f"{key} is being handled right now: try again in a moment")
        spool = self.spools[item.direction]
        # Set aside first, so that no worker claims it while the ledger is written; a crash
        # after the commit leaves it in quarantine, never sent or handed off.
        if item.folder == "waiting":
            for claimed in spool.claim([key]):  # an unreadable one the claim set aside itself
                spool.set_aside(claimed, f"to be dropped by {self.actor}")
            aside = _locate(spool, key)
            if aside is None or aside.path.parent != spool.quarantine:
                raise QueueRefusal(f"{key} is being handled right now: try again in a moment")
        now = self.clock.now()
        if item.kind != MAIL_KIND:
            self._tell_dropped(item, reason, now)
        with self.ledger.transaction() as tx:
            detail = self._detail("dropped", reason)
            if item.row is not None:
                moved = item.direction == "outbound" and self.ledger.set_state_in(
                    tx,
                    item.row.id,
                    OutboundState.FAILED,
                    detail,
                    expected=(OutboundState.QUEUED,),
                )
                if not moved:
                    self.ledger.event_in(tx, item.row.id, "dropped", detail)
            self._audit_in(tx, item, "drop", reason)
        spool.delete(key, "quarantine")
        log.info("dropped %s %s by %s", item.direction, key, self.actor)
        return item

    # ------------------------------------------------------------------ helpers

    def _describe(self, direction: str, item: SpoolItem) -> QueueItem:
        meta = item.meta
        row = self._row(direction, item)
        kind = "message" if direction == "inbound" else str(meta.get("kind", "?"))
        since = instant(meta.get("queued_at")) or instant(meta.get("received_at"))
        if since is None:
            since = datetime.fromtimestamp(_mtime(item.path), UTC)
        why = meta.get("last_error")
        releases = meta.get("releases")
        return QueueItem(
            direction=direction,
            key=item.key,
            folder=FOLDERS[item.path.parent.name],
            kind=kind,
            partner=row.partner if row else str(meta.get("partner", meta.get("desk", ""))),
            form=row.form if row else str(meta.get("form", "")),
            reference=row.reference if row else str(meta.get("reference", "")),
            state=row.state if row else None,
            attempts=attempts_of(meta),
            next_attempt=not_before(meta) if direction == "outbound" else None,
            since=since,
            why=" ".join(str(why).split()) if why else "",
            releases=releases if isinstance(releases, int) and releases >= 0 else 0,
            row=row,
        )

    def _row(self, direction: str, item: SpoolItem) -> MessageRow | None:
        """The ledger row the item belongs to: its own, or the one it re-sends."""
        ledger_id = item.meta.get("ledger_id")
        if direction == "outbound" and isinstance(ledger_id, int):
            try:
                return self.ledger.get(ledger_id)
            except KeyError:
                return None
        if direction == "outbound" and item.meta.get("kind") == MAIL_KIND:
            return None
        return self.ledger.by_spool_key(item.key.split(".again.")[0])

    def _detail(self, what: str, reason: str) -> str:
        said = f": {reason}" if reason else ""
        return f"{what} by {self.actor}{said}".strip()

    def _record(self, item: QueueItem, action: str, reason: str, *, event: str) -> None:
        with self.ledger.transaction() as tx:
            if item.row is not None:
                self.ledger.event_in(tx, item.row.id, event, self._detail("", reason))
            self._audit_in(tx, item, action, reason)
        log.info("%s %s %s by %s", action, item.direction, item.key, self.actor)

    def _audit_in(self, tx: Any, item: QueueItem, action: str, reason: str) -> None:
        """queue.<action> with the item's codes, and who and why in the reason; no content."""
        self.audit.append_in(
            tx,
            f"queue.{action}",
            partner=item.partner if _CODE.fullmatch(item.partner) else "",
            form=item.form if _CODE.fullmatch(item.form) else "",
            reference=item.reference if _REFERENCE.fullmatch(item.reference) else "",
            reason=f"{item.direction} {item.key} {self._detail(action, reason)}"[:300],
        )

    def _tell_dropped(self, item: QueueItem, reason: str, now: datetime) -> None:
        desk = owner_desk(self.config, item.row.desk if item.row else None)
        if desk is None:
            log.error("no desk to tell that %s %s was dropped", item.direction, item.key)
            return
        what = "message from" if item.direction == "inbound" else f"{item.kind} to"
        lines = [
            f"The {item.direction} {what} {item.partner or '?'} kept as {item.key} was removed "
            f"from the {item.direction} queue by {self.actor} at {utc_text(now)}.",
            "",
            f"Form:       {item.form or '-'}",
            f"Reference:  {item.reference or '-'}",
            f"Was:        {item.folder}, {item.attempts} attempt(s)",
            f"Reason:     {reason}",
        ]
        if item.direction == "outbound":
            lines += ["", "It will not be sent: the ledger records it as failed."]
        else:
            lines += ["", "It will not reach a desk: ask the partner to send it again if needed."]
        notices.post(
            self.config,
            desk,
            Notice(
                kind="dropped",
                key=f"dropped.{item.direction}.{item.key}",
                subject=f"{item.direction} {item.form or item.kind} {item.reference or item.key} "
                "dropped from the queue",
                body="\n".join(lines) + "\n",
                reference=item.reference if _REFERENCE.fullmatch(item.reference) else None,
            ),
            now,
        )


def _directions(direction: str | None) -> tuple[str, ...]:
    if direction is None:
        return DIRECTIONS
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}")
    return (direction,)


def _locate(spool: Spool, key: str) -> SpoolItem | None:
    """The item with this key if it is waiting, claimed or quarantined (not done: handled)."""
    try:
        item = spool.get(key)
    except KeyError:
        return None
    return None if item.path.parent == spool.done else item


def _mtime(path: Any) -> float:
    try:
        return float(path.stat().st_mtime)
    except FileNotFoundError:
        return 0.0
