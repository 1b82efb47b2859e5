"""This gateway as a node of several on one PostgreSQL: its heartbeat, and the work it takes over.

With ``[store] bodies = "database"`` every accepted message's bytes are in the ledger, and so is
every form of ours sealed for delivery, so a node's spools are only its working copies: each
batch of a hand-off run first takes (leases) at most a batch of the received messages no live
node holds, puts them into the inbound spool and hands them off at once (a lease taken is work
started: none lies idle while another node could do it), takes the queued forms no live node
holds into its outbound queue, and takes the queued receipts of a node that died, sealing them
again from the ledger (the same Reference and Message-ID: the receipt the dead node would have
sent). Its heartbeat renews its leases every
``[cluster] heartbeat_seconds``; a node that stops beating loses them ``lease_seconds`` later.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime

from gateway.core import crashpoints
from gateway.core.clock import Clock
from gateway.core.config import Config
from gateway.core.errors import CannotStart
from gateway.inbound.handoff import Handoff
from gateway.store import leases
from gateway.store.ledger import Ledger
from gateway.store.unit import Transaction

log = logging.getLogger("gateway.cluster")

FEED_BATCH = 64  # forms and receipts taken in one transaction


class Node:
    """One gateway's membership of the cluster: register, beat, take work, stop."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        clock: Clock,
        handoff: Handoff,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.name = config.cluster.node_name()
        self.lease = config.cluster.lease
        self.ledger = ledger
        self.clock = clock
        self.inbound = handoff.inbound
        self.outbound = handoff.outbound
        self.handoff = handoff
        self.wake = wake  # delivery, when forms were taken into the outbound queue
        self.takes_work = config.store.bodies == "database"
        self.taken_over = 0  # messages and receipts this node took from another, for the log
        if self.takes_work:
            handoff.feed = self.feed
            handoff.hold_receipts = self.hold_receipts
            handoff.keep_done = False
            handoff.exclusive = False

    def start(self) -> None:
        """Join the ledger's nodes. CannotStart when a live node (its heartbeat within the
        lease) has this name on another host, or in another running process of this host: two
        nodes under one name would renew each other's leases and take the same work."""
        host, now = socket.gethostname(), self._now()
        other = next((n for n in leases.listing(self.ledger) if n.name == self.name), None)
        if (
            other is not None
            and other.live(now, self.lease)
            and (other.host != host or (other.pid != os.getpid() and _running(other.pid)))
        ):
            raise CannotStart(
                f"node name {self.name} is in use by {other.host} pid {other.pid} (heartbeat "
                f"{(now - other.heartbeat_at).total_seconds():.0f} s ago): give each node its "
                "own [cluster] node"
            )
        leases.register(self.ledger, self.name, host, os.getpid(), now)
        log.debug("node %s on the ledger (leases of %s)", self.name, self.lease)

    def beat(self) -> int:
        """The heartbeat: this node lives, its leases hold for another lease time."""
        return leases.heartbeat(self.ledger, self.name, self._now(), self.lease)

    def stop(self) -> None:
        """A clean stop: its leases are released for the other nodes at once."""
        leases.stop(self.ledger, self.name, self._now())

    def feed(self, limit: int) -> list[tuple[str, datetime]]:
        """Take at most ``limit`` received messages no live node holds into this node's inbound
        spool, and the forms and receipts no live node holds into its outbound queue. Returns
        the spool keys of the received messages taken (each leased to this node, its item in
        new/) with the instant each was received, oldest first, for the caller to hand off
        now: what is taken is worked on, never left lying under a lease the others respect."""
        batch = leases.take_received(self.ledger, self.name, self._now(), self.lease, limit)
        self._spool(batch)
        if batch:
            crashpoints.reached(crashpoints.FED)
        self._take_forms()
        for original in leases.take_receipts(
            self.ledger, self.name, self._now(), self.lease, FEED_BATCH
        ):
            self.handoff.queue_receipt(self.ledger.get(original))
            log.warning("took over the receipt for message %d", original)
            self.taken_over += 1
        return [(body.spool_key, body.received_at) for body in batch]

    def waiting_since(self) -> datetime | None:
        """When the oldest received message this node may take now was received (None: none):
        the hand-off's wait for quiet sessions counts from it, so that work no node holds, a
        dead node's among it, waits no longer than that for whichever node is busy."""
        return leases.oldest_free(self.ledger, self._now()) if self.takes_work else None

    def _take_forms(self) -> int:
        """Forms of ours no live node holds into this node's outbound queue (delivery is woken);
        delivery's own retry schedule starts afresh on a node that takes over."""
        put = 0
        for form in leases.take_outbound(
            self.ledger, self.name, self._now(), self.lease, FEED_BATCH
        ):
            if self.outbound.exists(form.spool_key):
                continue
            partner = self.config.partner(form.partner)
            meta = {
                "to": partner.address,
                "partner": form.partner,
                "reference": form.reference,
                "form": form.form,
                "kind": "form",
                "message_id": form.message_id,
                "ledger_id": form.id,
                "queued_at": form.queued_at.isoformat(),
            }
            try:
                self.outbound.put(form.spool_key, form.sealed, meta)
            except FileExistsError:
                continue
            put += 1
        if put and self.wake is not None:
            self.wake()
        return put

    def _spool(self, batch: list[leases.TakenBody]) -> int:
        """The taken messages into the inbound spool, with one sync of new/ for them all; one
        this node's spool holds already (its own copy from before a restart) is left as it is."""
        items = [
            (body.spool_key, body.body.raw + body.body.entity, body.meta)
            for body in batch
            if not self.inbound.exists(body.spool_key)
        ]
        try:
            return len(self.inbound.put_many(items)) if items else 0
        except FileExistsError:  # put meanwhile (none of the batch was stored): one by one
            put = 0
            for key, payload, meta in items:
                try:
                    self.inbound.put(key, payload, meta)
                except FileExistsError:
                    continue
                put += 1
            return put

    def hold_receipts(self, tx: Transaction, ids: list[int]) -> None:
        """Lease the receipts this node records (in their transaction) to it."""
        leases.hold_in(tx, leases.RECEIPT, ids, holder=self.name, now=self._now(), lease=self.lease)

    def _now(self) -> datetime:
        return self.clock.now()


def _running(pid: int) -> bool:
    """Whether a process with this id runs on this host (a crashed node's pid does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
