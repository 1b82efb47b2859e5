"""The retention purge: shred every copy of the messages kept long enough, keep a stub of each.

A message is due when ``created_at + keep <= now``, ``keep`` being the first retention rule
that matches its channel and form (Config.keep_for; no rule: kept for ever), and it is not
shredded yet. A due message still needed waits for a later run: a deadline of it still open
(or paused), or a spooled item of it still queued (being handed off or delivered).

Shredding a message, in three steps, each safe to do again:
1. every file it left (gateway.tracking.copies: spooled items of both spools with the re-sent
   copies, desk copies, outbox copies), its bytes in the ledger ([store] bodies = "database")
   and, when desks are in Dovecot, every copy a desk's mailbox holds
   (gateway.tracking.dovecot_copies, over IMAP) is read for its SHA-256 and size, and these
   are kept in the ledger (shredded_copies) before anything is deleted;
2. the files are deleted, the Dovecot copies expunged;
3. in one transaction: its search index entries (and the name parts no other entry holds),
   the cross-check's hits of it and on it, the drafts of replies to it and its bytes in the
   ledger are deleted, its row is marked ``shredded_at`` (the stub: ids, form, partner, dates
   and digests, which hold no personal data), an event ``purged`` and an audit line (counts,
   and the SHA-256 of the stub's digests; never content) are recorded.
A run stopped before 3 leaves the message due: the next run finds what is left, keeps the
digests of the files still there beside those kept already, and finishes.

After a run that shredded anything, SQLite's trigram indexes are merged and its write-ahead
log written back and truncated (gateway.store.shred_rows.clear_sqlite), so that neither keeps
what was deleted; every SQLite connection zeroes what it deletes (secure_delete). The name
folding's caches in this process are emptied too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.core.config import Config
from gateway.core.durations import format_duration
from gateway.core.errors import GatewayError
from gateway.search import folding
from gateway.store import (
    bodies,
    case_refs,
    crosscheck_rows,
    retention_rows,
    search_log,
    search_rows,
    shred_rows,
)
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, MessageRow
from gateway.store.retention_rows import PURGED
from gateway.store.spool import Spool
from gateway.store.unit import LedgerError
from gateway.tracking.copies import Copies, Found, remove
from gateway.tracking.dovecot_copies import PLACE as DOVECOT
from gateway.tracking.dovecot_copies import DovecotCopies

log = logging.getLogger("gateway.retention")
BODY = "database"  # a stub's place for the bytes the ledger kept ([store] bodies = "database")

BATCH = 500


@dataclass
class PurgeResult:
    messages: int = 0  # shredded (with a dry run: that would be)
    spool_items: int = 0
    desk_copies: int = 0  # in the desks' Maildirs or their Dovecot mailboxes
    outbox_files: int = 0
    index_entries: int = 0
    drafts: int = 0
    waiting: int = 0  # due, but still needed (an open deadline, a queued item): next time
    failed: int = 0  # left for the next purge after an error
    searches: int = 0  # searches' terms older than the longest retention rule
    # SQLite's log truncated after the run (False: nothing shredded, PostgreSQL, or a reader
    # held it: the next run tries again). Not compared: it depends on the database.
    log_cleared: bool = field(default=False, compare=False)


class Purger:
    """Applies the retention rules of the configuration: shreds what is due."""

    def __init__(
        self, *, config: Config, ledger: Ledger, audit: AuditLog, inbound: Spool, outbound: Spool
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.audit = audit
        self.spools = {"inbound": inbound, "outbound": outbound}
        self._dovecot: DovecotCopies | None = None

    @property
    def dovecot(self) -> DovecotCopies | None:
        """The desks' Dovecot mailboxes when desk copies go there by LMTP (made when first
        needed: the master user's password is read then)."""
        if self.config.desk_delivery.method != "lmtp":
            return None
        if self._dovecot is None:
            self._dovecot = DovecotCopies(self.config)
        return self._dovecot

    def purge(self, now: datetime | None = None, *, dry_run: bool = False) -> PurgeResult:
        """Shred every message due at ``now`` (default: the ledger's clock); ``dry_run``: only
        count what would be shredded (nothing is written or deleted)."""
        now = (now or self.ledger.clock.now()).astimezone(UTC)
        result = PurgeResult()
        copies = Copies(self.config, self.spools)
        for row in self._due(now):
            try:
                self._shred(row, now, result, copies, dry_run=dry_run)
            except (GatewayError, OSError, LedgerError) as error:
                result.failed += 1
                log.error("shredding of %s %s failed: %r", row.form, row.reference, error)
        if dry_run:
            return result
        result.searches = self._purge_searches(now)
        if result.messages or result.searches:
            result.log_cleared = shred_rows.clear_sqlite(self.ledger.engine)
            folding.forget()
            log.info("purged %s", result)
        return result

    def _purge_searches(self, now: datetime) -> int:
        """The searches' terms are kept as long as the longest retention rule keeps messages
        (what they may have found): none is purged without a rule."""
        longest = max((rule.keep for rule in self.config.retention), default=None)
        if longest is None:
            return 0
        with self.ledger.transaction() as tx:
            return search_log.purge_before_in(tx, now - longest)

    def _shred(
        self, row: MessageRow, now: datetime, result: PurgeResult, copies: Copies, *, dry_run: bool
    ) -> None:
        keep = self.config.keep_for(row.channel, row.form)
        if keep is None or row.created_at + keep > now:
            return  # the SQL filter and keep_for agree; this is a guard
        found = copies.of(
            ledger_id=row.id,
            direction=row.direction,
            reference=row.reference,
            spool_key=row.spool_key,
        )
        with self.ledger.reading() as tx:
            still_owed = shred_rows.open_deadlines(tx, row.id)
            if dry_run:
                entries = search_rows.count_of_message(tx, row.id)
                drafts = shred_rows.count_drafts(tx, row.id)
        if still_owed or any(item.queued for item in found):
            result.waiting += 1
            return
        mailboxes = self.dovecot if row.direction == "inbound" else None
        held = mailboxes.measure(row) if mailboxes is not None else []
        if dry_run:
            _count(result, found, entries, drafts, held)
            return
        measured = [copy for item in found if (copy := item.measured()) is not None]
        with self.ledger.transaction() as tx:
            stored = bodies.measured_in(tx, row.id)  # its bytes, when the ledger keeps them
            kept_body = [] if stored is None else [shred_rows.Copy(BODY, "message_bodies", *stored)]
            shred_rows.record_in(tx, row.id, [*measured, *held, *kept_body], now)
        remove(found)
        if mailboxes is not None and held:
            mailboxes.remove(row)
        with self.ledger.transaction() as tx:
            if not shred_rows.mark_in(tx, row.id, now):
                return  # another run (another node, the command) finished it meanwhile
            # Its hits and hits on it, while its index entries say which keys it held.
            crosscheck_rows.delete_of_message_in(tx, row.id)
            entries = search_rows.delete_of_message_in(tx, row.id)
            case_refs.forget_in(tx, row.id)  # the grouping's copy of its references
            drafts = shred_rows.delete_drafts_in(tx, row.id)
            bodies.forget_in(tx, row.id)
            kept = shred_rows.copies_of(tx, row.id)
            detail = _detail(format_duration(keep), kept, entries, drafts)
            self.ledger.event_in(tx, row.id, PURGED, detail)
            self.audit.append_in(
                tx,
                "retention.purged",
                partner=row.partner,
                form=row.form,
                reference=row.reference,
                digest=shred_rows.manifest_digest([row.content_sha256, row.raw_sha256], kept),
                reason=detail,
            )
        _count(result, found, entries, drafts, held)

    def _due(self, now: datetime) -> Iterator[MessageRow]:
        """Messages past their retention and not shredded yet, by id, in batches."""
        last = 0
        while True:
            with self.ledger.reading() as tx:
                rows = retention_rows.past_retention(
                    tx, self.config.retention, now, after_id=last, limit=BATCH
                )
            yield from rows
            if len(rows) < BATCH:
                return
            last = rows[-1].id


def _count(
    result: PurgeResult,
    found: list[Found],
    entries: int,
    drafts: int,
    held: list[shred_rows.Copy],
) -> None:
    result.messages += 1
    result.spool_items += sum(item.place.endswith("-spool") for item in found)
    result.desk_copies += sum(item.place == "desk" for item in found) + len(held)
    result.outbox_files += sum(item.place == "outbox" for item in found)
    result.index_entries += entries
    result.drafts += drafts


def _detail(keep: str, kept: list[shred_rows.Copy], entries: int, drafts: int) -> str:
    """What the event and the audit line say: counts of what the stub keeps digests of, and of
    the rows deleted (their content has no digest: a digest of a name would tell it)."""
    spooled = sum(copy.place.endswith("-spool") or copy.place == BODY for copy in kept)
    desk = sum(copy.place in ("desk", DOVECOT) for copy in kept)
    outbox = sum(copy.place == "outbox" for copy in kept)
    return (
        f"kept {keep}: shredded {spooled} spooled item(s), {desk} desk copy(ies), "
        f"{outbox} outbox file(s), {entries} index entry(ies), {drafts} draft(s)"
    )
