"""Runs of scheduled jobs, once per slot across every gateway on one ledger (table job_runs).

A node claims (job, slot) by inserting the row: the primary key lets one insert win, the others
skip. The winner writes the outcome when done. A claim left without an outcome (its node died
mid-run) may be taken over once it is older than ``STALE_CLAIM``, or as soon as its node is known
dead: its heartbeat in ``nodes`` is older than the lease time, or it stopped.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, exc, insert, select, update

from gateway.store.ledger import as_utc, job_runs, nodes
from gateway.store.unit import reading

log = logging.getLogger("gateway.scheduler")

STALE_CLAIM = timedelta(hours=6)
DONE_PREFIX = "done"


def claim(
    engine: Engine,
    job: str,
    slot: str,
    node: str,
    now: datetime,
    *,
    lease: timedelta | None = None,
) -> bool:
    """Whether this node runs ``job`` for ``slot``: True for exactly one claimant. With
    ``lease``, a claim of a node whose heartbeat is older than that is taken over at once."""
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(job_runs).values(job=job, slot=slot, claimed_at=now, node=node[:64])
            )
        return True
    except exc.IntegrityError:
        pass
    with engine.begin() as connection:
        row = connection.execute(
            select(job_runs.c.claimed_at, job_runs.c.outcome, job_runs.c.node).where(
                job_runs.c.job == job, job_runs.c.slot == slot
            )
        ).first()
        if row is None or row.outcome:
            return False
        if now - as_utc(row.claimed_at) < STALE_CLAIM:
            if lease is None:
                return False
            holder = connection.execute(
                select(nodes.c.heartbeat_at, nodes.c.stopped_at).where(nodes.c.name == row.node)
            ).first()
            if holder is None or (
                holder.stopped_at is None and now - as_utc(holder.heartbeat_at) < lease
            ):
                return False  # its node lives (or is no node of the cluster's): its run goes on
        taken = connection.execute(
            update(job_runs)
            .where(
                job_runs.c.job == job,
                job_runs.c.slot == slot,
                job_runs.c.outcome == "",
                job_runs.c.claimed_at == row.claimed_at,
            )
            .values(claimed_at=now, node=node[:64])
        ).rowcount
    if taken:
        log.warning("%s %s: taking over a claim left unfinished", job, slot)
    return bool(taken)


def finish(engine: Engine, job: str, slot: str, outcome: str) -> None:
    """Record how the run went (a short line); the slot is then done for every node."""
    with engine.begin() as connection:
        connection.execute(
            update(job_runs)
            .where(job_runs.c.job == job, job_runs.c.slot == slot)
            .values(outcome=(outcome or DONE_PREFIX)[:200])
        )


def ran(engine: Engine, job: str, slot: str) -> bool:
    """Whether ``job`` was claimed for ``slot`` (by any node)."""
    with reading(engine) as tx:
        found = tx.connection.execute(
            select(job_runs.c.job).where(job_runs.c.job == job, job_runs.c.slot == slot)
        ).first()
    return found is not None
