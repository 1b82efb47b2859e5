"""The parts every command works with, built once from one Config and closed in reverse order:
the ledger and its engine, the audit chain, the spools, our GnuPG home, the form validator."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from gateway.core.clock import Clock, SystemClock
from gateway.core.config import Config
from gateway.crypto.openpgp import GnuPG
from gateway.crypto.setup import open_gnupg
from gateway.forms.formfields import Descriptions
from gateway.forms.setup import load_validator
from gateway.forms.xmlforms import FormValidator
from gateway.outbound.submit import Submitter
from gateway.store.audit import AuditLog
from gateway.store.bodies import Bodies
from gateway.store.durable import private_folder
from gateway.store.ledger import Ledger, make_engine
from gateway.store.schema import require_current
from gateway.store.spool import Spool

T = TypeVar("T")


class _Members:
    """What a Services built on first use, what closes them, and whether it is closed (the
    Services itself is frozen; this is its one mutable part)."""

    def __init__(self, closing: contextlib.ExitStack) -> None:
        self.closing = closing
        self.built: dict[str, Any] = {}
        self.closed = False
        self.lock = threading.RLock()

    def close_at_end(self, gpg: GnuPG) -> GnuPG:
        """``gpg`` closed (its gpg-agent stopped) when the services close, before the engine."""
        return self.closing.enter_context(gpg)

    def close(self) -> None:
        with self.lock:
            self.closed = True


@dataclass(frozen=True)
class Services:
    """One gateway's parts, shared by everything a command or `serve` runs.

    Built by ``open_services`` before the body: the clock, the ledger (its engine checked to be at
    the schema revision this gateway needs; one per process, since its writers take turns on a
    lock of that engine before SQLite's) and the audit chain.

    Built on first use (under a lock: two threads asking at once get one) and then kept: ``gpg``
    (our GnuPG home: reads the passphrase), ``validator`` (compiles every schema), ``inbound``
    and ``outbound`` (the spools: make their folders). Lazy rather than switched on by flags,
    because what a command needs is what it touches: `gateway deadlines` and `gateway queue`
    read no passphrase and compile no schema, `gateway inbox` makes no spool queue, and no
    command can ask for a part it was opened without. A command that needs a part touches it at
    its start (`serve` builds its whole world before it listens), so a fault in it still stops
    the command before any work. What holds something is closed in the reverse of the order it
    was built in: our GnuPG home (its gpg-agent stopped), always built after the engine, before
    the engine is disposed. The desks are the configuration's (``config.desks``): Maildir
    folders that delivery and notices open by path, nothing to build or close.
    """

    config: Config
    clock: Clock
    ledger: Ledger
    audit: AuditLog
    _members: _Members = field(repr=False, compare=False)

    @property
    def gpg(self) -> GnuPG:
        """Our GnuPG home with our key and its protection as configured."""
        return self._once("gpg", lambda: self._members.close_at_end(open_gnupg(self.config)))

    @property
    def validator(self) -> FormValidator:
        """The forms and schemas, built-in and configured, compiled."""
        return self._once("validator", lambda: load_validator(self.config))

    @property
    def descriptions(self) -> Descriptions:
        """Each form's fields, read from its schema on first need (the console's form pages)."""
        return self._once("descriptions", lambda: Descriptions(self.validator))

    @property
    def inbound(self) -> Spool:
        """The inbound spool: accepted messages waiting for their hand-off."""
        return self._once("inbound", lambda: self._spool("inbound"))

    @property
    def outbound(self) -> Spool:
        """The outbound spool: forms, receipts and notices waiting for delivery."""
        return self._once("outbound", lambda: self._spool("outbound"))

    @property
    def bodies(self) -> Bodies:
        """The bytes of accepted messages, from the spool or the ledger (``[store] bodies``)."""
        return self._once(
            "bodies", lambda: Bodies(self.config.store.bodies, self.ledger, self.inbound)
        )

    def submitter(self) -> Submitter:
        """Forms into the outbound queue (`gateway send`, and the desks' outboxes in `serve`)."""
        return Submitter(
            config=self.config,
            gpg=self.gpg,
            validator=self.validator,
            ledger=self.ledger,
            outbound=self.outbound,
            audit=self.audit,
            clock=self.clock,
        )

    def _spool(self, name: str) -> Spool:
        private_folder(self.config.paths.spool)  # the spools' folder holds personal data
        return Spool(self.config.paths.spool / name)

    def _once(self, name: str, build: Callable[[], T]) -> T:
        members = self._members
        with members.lock:
            if name not in members.built:
                if members.closed:
                    raise RuntimeError(f"the services are closed: cannot open {name}")
                members.built[name] = build()
            return cast(T, members.built[name])


@contextlib.contextmanager
def open_services(config: Config, *, clock: Clock | None = None) -> Iterator[Services]:
    """The services of ``config`` for the body of a ``with``, closed when it ends, also when it
    raises. The ledger is refused first (LedgerOutdated) unless it is at this gateway's schema
    revision: `gateway db upgrade` is the operator's step. ``clock``: the system's by default."""
    with contextlib.ExitStack() as closing:
        engine = make_engine(config.database_url)
        closing.callback(engine.dispose)
        require_current(engine)
        clock = clock or SystemClock()
        members = _Members(closing)
        try:
            yield Services(
                config=config,
                clock=clock,
                ledger=Ledger(engine, clock),
                audit=AuditLog(engine, clock),
                _members=members,
            )
        finally:
            members.close()  # before the parts close: nothing more is built meanwhile
