"""The retention purge: delete the spooled originals and desk copies of messages kept long enough.

A message is due when ``created_at + keep <= now``, ``keep`` being the first retention rule
that matches its channel and form (Config.keep_for; no rule: kept for ever). Its item in the
inbound or outbound spool (with the re-sent copies of an outbound one) and its copies in the
desk's Maildir (named ``<ledger id>.<Reference>`` by the hand-off, in new/ or cur/ with a
``:2,`` flags suffix) are deleted; then an event ``purged`` and an audit entry are recorded in
one transaction, with its search index entries and the cross-check's hits of it and on it.
The ledger row, its digests and its history stay. A purge interrupted before
that commit is simply done again: deleting what is gone already is no error.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.core.config import Config
from gateway.core.durations import format_duration
from gateway.core.errors import GatewayError
from gateway.store import crosscheck_rows, retention_rows, search_log, search_rows
from gateway.store.audit import AuditLog
from gateway.store.durable import fsync_dir
from gateway.store.ledger import Ledger, MessageRow
from gateway.store.retention_rows import PURGED
from gateway.store.spool import Spool
from gateway.store.unit import LedgerError
from gateway.tracking.sweep import resend_key

log = logging.getLogger("gateway.retention")

BATCH = 500


@dataclass
class PurgeResult:
    messages: int = 0
    spool_items: int = 0
    desk_copies: int = 0
    waiting: int = 0  # due, but their spooled item is still being handled: next time
    failed: int = 0  # left for the next purge after an error
    searches: int = 0  # searches' terms older than the longest retention rule


class Purger:
    """Applies the retention rules of the configuration to the spools and desk Maildirs."""

    def __init__(
        self, *, config: Config, ledger: Ledger, audit: AuditLog, inbound: Spool, outbound: Spool
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.audit = audit
        self.spools = {"inbound": inbound, "outbound": outbound}

    def purge(self, now: datetime | None = None) -> PurgeResult:
        """Purge every message due at ``now`` (default: the ledger's clock)."""
        now = (now or self.ledger.clock.now()).astimezone(UTC)
        result = PurgeResult()
        copies = _DeskCopies()
        for row in self._due(now):
            try:
                self._purge(row, now, result, copies)
            except (GatewayError, OSError, LedgerError) as error:
                result.failed += 1
                log.error("purge of %s %s failed: %r", row.form, row.reference, error)
        result.searches = self._purge_searches(now)
        if result.messages or result.searches:
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

    def _purge(
        self, row: MessageRow, now: datetime, result: PurgeResult, copies: _DeskCopies
    ) -> None:
        keep = self.config.keep_for(row.channel, row.form)
        if keep is None or row.created_at + keep > now:
            return  # the SQL filter and keep_for agree; this is a guard
        spool = self.spools[row.direction]
        keys = self._keys(row)
        items = sum(spool.delete(key, "done") for key in keys[:1])
        if keys and not items and spool.exists(keys[0]):
            result.waiting += 1  # still being delivered or handed off: purge when done
            return
        items += sum(spool.delete(key, "done") for key in keys[1:])
        desk_copies = 0
        if row.desk is not None and row.direction == "inbound":
            desk_copies = copies.remove(self._maildir(row.desk), f"{row.id}.{row.reference}")
        detail = (
            f"kept {format_duration(keep)}: {items} spooled item(s), "
            f"{desk_copies} desk copy(ies) deleted"
        )
        with self.ledger.transaction() as tx:
            self.ledger.event_in(tx, row.id, PURGED, detail)
            search_rows.delete_of_message_in(tx, row.id)  # its search index entries
            crosscheck_rows.delete_of_message_in(tx, row.id)  # its hits, and hits on it
            self.audit.append_in(
                tx,
                "retention.purged",
                partner=row.partner,
                form=row.form,
                reference=row.reference,
                digest=row.raw_sha256 or "",
                reason=detail,
            )
        result.messages += 1
        result.spool_items += items
        result.desk_copies += desk_copies

    def _due(self, now: datetime) -> Iterator[MessageRow]:
        """Messages past their retention and not purged yet, by id, in batches."""
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

    def _keys(self, row: MessageRow) -> list[str]:
        if row.spool_key is None:
            return []
        keys = [row.spool_key]
        if row.direction == "outbound":
            resends = range(1, self.config.outbound.receipt_resends + 1)
            keys += [resend_key(row.spool_key, row.id, number) for number in resends]
        return keys

    def _maildir(self, desk: str) -> Path | None:
        try:
            return self.config.desk(desk).maildir
        except KeyError:
            return None


class _DeskCopies:
    """Deletes desk copies by name; each Maildir's cur/ is listed once per purge."""

    def __init__(self) -> None:
        self._cur: dict[Path, dict[str, list[str]]] = {}

    def remove(self, maildir: Path | None, name: str) -> int:
        if maildir is None:
            return 0
        removed = 0
        for folder, names in (("new", [name]), ("cur", self._in_cur(maildir, name))):
            here = 0
            for entry in names:
                with contextlib.suppress(FileNotFoundError):
                    (maildir / folder / entry).unlink()
                    here += 1
            if here:
                fsync_dir(maildir / folder)
            removed += here
        return removed

    def _in_cur(self, maildir: Path, name: str) -> list[str]:
        listing = self._cur.get(maildir)
        if listing is None:
            listing = {}
            cur = maildir / "cur"
            if cur.is_dir():
                with os.scandir(cur) as entries:
                    for entry in entries:
                        listing.setdefault(entry.name.partition(":")[0], []).append(entry.name)
            self._cur[maildir] = listing
        return listing.pop(name, [])
