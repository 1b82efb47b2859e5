"""Claimed outbound spool items made into jobs: each with its ledger row and payload, and a
verdict already when it must not go out or its outcome is known (no SMTP needed to decide).

Items are forms, receipts and re-sends for partners (each with a ledger row, or the row of the
message re-sent), and notices by mail for desks (kind ``notice``: no ledger row; only through
the relay, only to an address configured for a desk).

Runs in a worker thread: claims are renames, ledger rows are read. An item that is not ours to
send now is put back or set aside here: claimed by another gateway, rescheduled meanwhile,
waiting for its ledger row (a ``gateway send`` that has not committed yet), or settled before
(a crash came between the ledger commit and the spool move).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.core.clock import Clock
from gateway.core.config import Config, Partner
from gateway.core.errors import GatewayError
from gateway.desks.notices import MAIL_KIND
from gateway.outbound.retry import instant, not_before
from gateway.outbound.smtpclient import Attempt, address_is_clean, header_is_clean
from gateway.store.ledger import Ledger, MessageHead
from gateway.store.spool import Spool, SpoolItem
from gateway.store.states import OutboundState

log = logging.getLogger("gateway.delivery")

# An item of kind form or receipt whose ledger row is not there yet waits this long (a `gateway
# send` may not have committed yet); after that its sender died before the commit.
ORPHAN_AFTER = timedelta(minutes=10)
_REFERENCE = re.compile(r"[A-Z0-9@<>._-]{1,64}")
_CODE = re.compile(r"[A-Z0-9-]{1,32}")


@dataclass(frozen=True)
class Job:
    """A claimed item and what it belongs to; ``ready`` when no SMTP is needed to decide."""

    item: SpoolItem
    kind: str
    partner: Partner | None
    row: MessageHead | None  # its own ledger row (a form, a receipt)
    original: MessageHead | None  # the row a re-send belongs to
    payload: bytes
    ready: Attempt | None = None

    @property
    def subject(self) -> MessageHead | None:
        return self.row or self.original

    @property
    def peer(self) -> str:
        """Who it goes to, for logs: a partner's code, or the desk a notice is for."""
        if self.kind == MAIL_KIND:
            return f"the {self.item.meta.get('desk', '?')} desk"
        return self.partner.code if self.partner else "?"

    @property
    def recipient(self) -> str | None:
        """The envelope recipient: the partner's configured address, a notice's desk address."""
        if self.kind == MAIL_KIND:
            return str(self.item.meta.get("to", ""))
        return self.partner.address if self.partner else None

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


class Intake:
    """Claims due items and examines them (in a worker thread)."""

    def __init__(self, *, config: Config, ledger: Ledger, spool: Spool, clock: Clock) -> None:
        self.config = config
        self.ledger = ledger
        self.spool = spool
        self.clock = clock

    def prepare_many(self, keys: list[str]) -> list[Job]:
        """The jobs of those items that are ours to try now, in one read of the ledger; the rest
        are put back, set aside or left to whoever claimed them."""
        claimed = self.spool.claim(keys)
        wanted = {item.key.split(".again.")[0] for item in claimed}
        try:
            rows = self.ledger.heads_by_spool_keys(wanted)
        except Exception:
            log.exception("cannot read the ledger; %d items stay queued", len(claimed))
            for item in claimed:
                self.release(item)
            return []
        jobs = []
        for item in claimed:
            try:
                job = self._examine(item, item.payload(), rows)
            except Exception:
                log.exception("cannot examine %s; it stays queued", item.key)
                self.release(item)
                continue
            if job is not None:
                jobs.append(job)
        return jobs

    def release(self, item: SpoolItem) -> None:
        """Put a claimed item back as it was; one that cannot be stays claimed until a start."""
        try:
            self.spool.requeue(item)
        except (GatewayError, OSError, ValueError) as exc:
            log.error("%s stays claimed until the next start: %s", item.key, exc)

    def _examine(
        self, item: SpoolItem, payload: bytes, rows: Mapping[str, MessageHead]
    ) -> Job | None:
        """Decide whether and how a claimed item goes; None: it is not ours to send now (not
        due, waiting for its row, or settled before), and it was put back or set aside."""
        meta, now = item.meta, self.clock.now()
        due = not_before(meta)
        if due is not None and due > now:  # rescheduled by another gateway since we looked
            self.spool.requeue(item)
            return None
        kind = str(meta.get("kind", ""))
        if kind == MAIL_KIND:
            ready = Attempt.from_meta(meta.get("outcome"))
            refusal = None if ready else self._notice_refusal(meta, payload)
            ready = Attempt("refused", f"refused: {refusal}") if refusal else ready
            return Job(item, kind, None, None, None, payload, ready)
        again = ".again." in item.key
        row = original = None
        if kind == "form" or (kind == "receipt" and not again):
            row = rows.get(item.key)
            if row is None:
                self._orphan(item, now)
                return None
            if row.state != OutboundState.QUEUED:
                self._settled_before(item, row)
                return None
        elif kind == "resend" and isinstance(meta.get("ledger_id"), int):
            with contextlib.suppress(KeyError):
                original = MessageHead.of(self.ledger.get(meta["ledger_id"]))
        elif kind == "receipt":
            original = rows.get(item.key.split(".again.")[0])
        partner = next((p for p in self.config.partners if p.code == meta.get("partner")), None)
        ready = Attempt.from_meta(meta.get("outcome"))
        if ready is None:
            refusal = self._refusal(kind, meta, partner, row or original, payload)
            ready = Attempt("refused", f"refused: {refusal}") if refusal else None
        return Job(item, kind, partner, row, original, payload, ready)

    def _refusal(
        self,
        kind: str,
        meta: Mapping[str, Any],
        partner: Partner | None,
        subject: MessageHead | None,
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

    def _notice_refusal(self, meta: Mapping[str, Any], payload: bytes) -> str | None:
        """Why a notice must not go out by mail, or None: only through the relay, and only to
        an address configured for a desk, exactly."""
        if self.config.relay is None:
            return "no relay is configured for notices by e-mail"
        if not address_is_clean(meta.get("to")) or not address_is_clean(
            self.config.identity.address
        ):
            return "CR, LF or a character outside printable ASCII in an envelope address"
        if meta["to"] not in {desk.email for desk in self.config.desks if desk.email}:
            return "the recipient is not the address configured for a desk"
        if not header_is_clean(payload):
            return "bare CR, LF or NUL in the message header"
        return None

    def _orphan(self, item: SpoolItem, now: datetime) -> None:
        """An item whose ledger row is not there: give its sender's commit time, then set it
        aside for an operator (its handler was never told it was queued)."""
        queued = instant(item.meta.get("queued_at"))
        if queued is None:
            queued = datetime.fromtimestamp(item.path.stat().st_mtime, UTC)
        if now - queued < ORPHAN_AFTER:
            self.spool.requeue(item)
            return
        log.error("setting aside %s: queued but never recorded in the ledger", item.key)
        self.spool.set_aside(item, "queued but never recorded in the ledger")

    def _settled_before(self, item: SpoolItem, row: MessageHead) -> None:
        """The ledger already has the outcome (a crash came between its commit and the move)."""
        log.warning("%s is already %s in the ledger: not sending it again", item.key, row.state)
        if row.state in (OutboundState.REJECTED, OutboundState.FAILED):
            self.spool.set_aside(item, f"already {row.state} in the ledger")
        else:
            self.spool.finish([item])
