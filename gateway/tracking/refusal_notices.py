"""Partners' refused messages told to the duty desk: one notice per partner and UTC hour, posted
once the hour is over and saying how many refusals of which kinds it held; old rows purged.

A partner that retries every minute makes one notice an hour, however many kinds of refusal the
hour held (each kind is counted in it): the first refusal of a new hour starts a new notice, a
new kind within the hour does not. The notice of an hour comes at the first run after the hour
ends, so at most an hour and a run interval after the refusal.

Exactly once: the notice's key is ``refusals.<partner>.<YYYYMMDDTHH>``, posted (idempotent per key)
before its rows are marked ``notified``, in one transaction; a crash between the two posts the
same key again, which leaves one notice. A refusal recorded late into an hour whose notice was
already posted gets a notice of its own (``...<hour>.late.<first id>``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.core.config import Config
from gateway.desks.notices import Notice, post
from gateway.store import refusals
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, as_utc
from gateway.store.refusals import Refusal
from gateway.tracking.deadline_notices import iso_text, utc_text
from gateway.tracking.recipients import first_desk

log = logging.getLogger("gateway.refusals")

HOUR = timedelta(hours=1)
KEEP = timedelta(days=90)  # refusal rows older than this are purged
LISTED = 20  # refusals listed one by one in a notice; the rest are counted


@dataclass(frozen=True)
class RefusalRun:
    """What a run did: notices posted, refusals they told, rows purged."""

    notices: int
    refusals: int
    purged: int


def notify_refusals(config: Config, ledger: Ledger, audit: AuditLog, now: datetime) -> RefusalRun:
    """Post the notices of the hours that are over, mark their refusals, purge old rows."""
    desk = first_desk(config, config.deadlines.duty_desk, config.scheduler.supervisor_desk)
    groups = _pending_groups(ledger, hour_of(now))
    posted = told = 0
    if desk is None:
        if groups:
            log.warning("%d hour(s) of refusals wait: no desk is configured", len(groups))
        groups = {}
        desk = ""
    for (partner, hour), rows in groups.items():
        _tell(config, ledger, audit, desk=desk, partner=partner, hour=hour, rows=rows, now=now)
        posted += 1
        told += len(rows)
    with ledger.transaction() as tx:
        purged = refusals.purge(tx, now - KEEP)
    if posted or purged:
        log.info("refusals: %d notice(s) for %d refusal(s), %d purged", posted, told, purged)
    return RefusalRun(posted, told, purged)


def _tell(
    config: Config,
    ledger: Ledger,
    audit: AuditLog,
    *,
    desk: str,
    partner: str,
    hour: datetime,
    rows: Sequence[Refusal],
    now: datetime,
) -> None:
    """Post one hour's notice, then mark its rows told, with an audit line (counts only)."""
    key = f"refusals.{partner}.{hour:%Y%m%dT%H}"
    if _told_before(ledger, partner, hour):
        key += f".late.{rows[0].id}"
    post(config, desk, refusal_notice(key, partner, hour, rows), now)
    with ledger.transaction() as tx:
        refusals.mark_told(tx, [row.id for row in rows], now)
        audit.append_in(
            tx,
            "refusals.notified",
            partner=partner,
            reason=f"{len(rows)} refusal(s) in the hour {hour:%Y-%m-%dT%H}Z told to {desk}",
        )


def hour_of(instant: datetime) -> datetime:
    """The start of the UTC hour that holds ``instant``."""
    return as_utc(instant).replace(minute=0, second=0, microsecond=0)


def refusal_notice(key: str, partner: str, hour: datetime, rows: Sequence[Refusal]) -> Notice:
    """The duty desk's notice of one partner's refusals in one hour: counts by kind, then each
    refusal (the first LISTED) with its instant, digest, reason and the reply the partner got.
    The reply may quote values of the partner's form; the form itself is never in it."""
    kinds = Counter(row.reason for row in rows)
    count = f"{len(rows)} refusal" + ("s" if len(rows) != 1 else "")
    lines = [
        f"The gateway refused {len(rows)} message{'s' if len(rows) != 1 else ''} from {partner} "
        f"between "
        f"{utc_text(hour)} and {utc_text(hour + HOUR)}. Nothing of them was kept; the partner "
        "got the reply shown with each and must send again once the cause is mended.",
        "",
        f"Partner:   {partner}",
        f"Hour:      {hour:%Y-%m-%d %H:00} to {hour + HOUR:%H:00} UTC",
        f"Refusals:  {len(rows)}",
        "",
        "By kind (SMTP code, enhanced code, class):",
        *(f"  {number:>5}  {reason}" for reason, number in kinds.most_common()),
        "",
        "Each refusal (instant, SHA-256 of the message as received, reason), with our reply:",
    ]
    for row in rows[:LISTED]:
        digest = row.raw_sha256 or "(refused before the message was sent)"
        lines += [f"  {iso_text(row.at)}  {digest}  {row.reason}", f"    {row.reply}"]
    if len(rows) > LISTED:
        lines.append(f"  ... and {len(rows) - LISTED} more (in the ledger's refusals table)")
    return Notice(
        kind="refusals",
        key=key,
        subject=f"{count} of messages from {partner}, {hour:%Y-%m-%d %H:00} UTC",
        body="\n".join(lines) + "\n",
    )


def _pending_groups(ledger: Ledger, before: datetime) -> dict[tuple[str, datetime], list[Refusal]]:
    """The refusals not yet told from hours that ended by ``before``, by partner and hour."""
    with ledger.reading() as tx:
        pending = refusals.pending(tx, before)
    groups: dict[tuple[str, datetime], list[Refusal]] = {}
    for refusal in pending:
        groups.setdefault((refusal.partner, hour_of(refusal.at)), []).append(refusal)
    return groups


def _told_before(ledger: Ledger, partner: str, hour: datetime) -> bool:
    """Whether a notice already told refusals of this partner and hour."""
    with ledger.reading() as tx:
        return refusals.told_between(tx, partner, hour, hour + HOUR)
