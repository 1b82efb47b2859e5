"""Items that appear in a spool's quarantine told to the duty desk, once per appearance.

An appearance is the item's key with its ``releases`` count (``gateway queue release`` adds
one), so an item released and set aside again is told again. Each is recorded in the ledger's
``quarantine_notices`` before its notice is posted (key ``quarantined.<queue>.<key>.<releases>``,
idempotent) and marked ``notified`` after: a crash between the two posts the same key again,
which leaves one notice. Notices by mail set aside by delivery are not told (no notice about a
notice: its own mail could fail the same way).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from gateway.core.config import Config
from gateway.desks.notices import MAIL_KIND, Notice, post
from gateway.store import quarantine_told
from gateway.store.ledger import Ledger
from gateway.store.spool import Spool, SpoolItem
from gateway.store.unit import LedgerConflict
from gateway.tracking.deadline_notices import utc_text
from gateway.tracking.recipients import first_desk

log = logging.getLogger("gateway.queues")


def notify_quarantined(
    config: Config, ledger: Ledger, spools: Mapping[str, Spool], now: datetime
) -> int:
    """Tell the duty desk of every quarantined item not told before; returns how many."""
    desk = first_desk(config, config.deadlines.duty_desk, config.scheduler.supervisor_desk)
    told = 0
    for direction, spool in spools.items():
        items = [item for item in spool.quarantined() if item.meta.get("kind") != MAIL_KIND]
        if not items:
            continue
        done = _notified(ledger, direction, [item.key for item in items])
        for item in items:
            releases = _releases(item)
            if (item.key, releases) in done:
                continue
            if desk is None:
                log.warning("%s %s quarantined: no desk to tell", direction, item.key)
                continue
            _seen(ledger, direction, item.key, releases, now)
            post(config, desk, quarantine_notice(direction, item, releases, now), now)
            with ledger.transaction() as tx:
                quarantine_told.mark_told(tx, direction, item.key, releases, now)
            log.warning("%s %s quarantined: told the %s desk", direction, item.key, desk)
            told += 1
    return told


def quarantine_notice(direction: str, item: SpoolItem, releases: int, now: datetime) -> Notice:
    """What the duty desk is told: the item's codes and why it was set aside, never content."""
    meta = item.meta
    why = " ".join(str(meta.get("last_error") or "").split()) or "(no error recorded)"
    reference = str(meta.get("reference", ""))
    kind = "message" if direction == "inbound" else str(meta.get("kind", "?"))
    lines = [
        f"An {direction} item was set aside in quarantine: the gateway will not try it again "
        "by itself.",
        "",
        f"Item:       {item.key}",
        f"Queue:      {direction} ({kind})",
        f"Partner:    {meta.get('partner', '-')}",
        f"Form:       {meta.get('form', '-')}",
        f"Reference:  {reference or '-'}",
        f"Attempts:   {meta.get('attempts', 0)}",
        f"Why:        {why}",
        f"Seen:       {utc_text(now)}",
        "",
        f"`gateway queue show {item.key}` shows it; once the cause is mended, "
        f"`gateway queue release {item.key}` tries it again, or "
        f"`gateway queue drop {item.key} --reason ...` removes it for good.",
    ]
    return Notice(
        kind="quarantined",
        key=f"quarantined.{direction}.{item.key}.{releases}",
        subject=f"{direction} {meta.get('form') or kind} {reference or item.key} quarantined",
        body="\n".join(lines) + "\n",
        reference=reference or None,
    )


def _releases(item: SpoolItem) -> int:
    value = item.meta.get("releases")
    return value if isinstance(value, int) and value >= 0 else 0


def _notified(ledger: Ledger, direction: str, keys: list[str]) -> set[tuple[str, int]]:
    """The (key, releases) of these items whose notice was posted."""
    with ledger.reading() as tx:
        return quarantine_told.told(tx, direction, keys)


def _seen(ledger: Ledger, direction: str, key: str, releases: int, now: datetime) -> None:
    """Record the appearance before its notice (a second gateway may have done it already)."""
    try:
        with ledger.transaction() as tx:
            quarantine_told.seen(tx, direction, key, releases, now)
    except LedgerConflict:
        pass  # recorded before: by a run that crashed before marking it, or another gateway
