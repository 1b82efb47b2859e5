"""Test kit for deadlines and scheduled jobs: a configuration, messages and deadlines in a ledger,
the desks' Maildirs, and the parts a sweep needs, all on a FakeClock."""

from __future__ import annotations

import email
import email.policy
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.core.config import BUILTIN_FORMS
from gateway.crypto.openpgp import GnuPG
from gateway.forms.catalogue import FormCatalogue
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, NewMessage, deadlines
from gateway.store.spool import Spool
from gateway.store.states import InboundState, OutboundState
from gateway.store.unit import writing
from gateway.tracking.deadlines import PlannedDeadline
from gateway.tracking.sweep import Sweeper

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
NO_FPR = "A" * 40
RS_FPR = "B" * 40
CATALOGUE = FormCatalogue.load([(BUILTIN_FORMS, "builtin")])


def write_config(
    folder: Path,
    database_url: str,
    *,
    extra: str = "",
    no_fingerprint: str = NO_FPR,
    rs_fingerprint: str = RS_FPR,
    gnupg_home: Path | None = None,
) -> configuration.Config:
    """Our bureau with desks sirene, duty (escalations) and supervisor (reports, keys)."""
    path = folder / "gateway.toml"
    path.write_text(f"""
[identity]
country = "RO"
address = "sirene@ro.example"
bureaux = {{ sirene = "RO-SIRENE", interpol = "RO-NCB" }}

[paths]
gnupg_home = "{gnupg_home or folder / "gnupg"}"
spool = "{folder / "spool"}"

[database]
url = "{database_url}"

[[partners]]
code = "NO-SIRENE"
channel = "sirene"
country = "NO"
address = "sirene@no.example"
smtp_host = "127.0.0.1"
fingerprint = "{no_fingerprint}"

[[partners]]
code = "RS-NCB"
channel = "interpol"
country = "RS"
address = "ncb@rs.example"
smtp_host = "127.0.0.1"
fingerprint = "{rs_fingerprint}"
receipt_window = "PT30M"

[[desks]]
name = "sirene"
maildir = "{folder / "desks" / "sirene"}"

[[desks]]
name = "duty"
maildir = "{folder / "desks" / "duty"}"

[[desks]]
name = "supervisor"
maildir = "{folder / "desks" / "supervisor"}"

[[routes]]
desk = "sirene"

[deadlines]
duty_desk = "duty"

[scheduler]
supervisor_desk = "supervisor"
{extra}
""")
    return configuration.load(path)


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@dataclass
class Desk:
    """A desk's Maildir as the tests read it."""

    root: Path

    def names(self) -> list[str]:
        return sorted(
            path.name for folder in ("new", "cur") if (self.root / folder).is_dir()
            for path in (self.root / folder).iterdir()
        )  # fmt: skip

    def notices(self, kind: str = "") -> list[str]:
        return [name for name in self.names() if name.startswith(f"notice.{kind}")]

    def read(self, name: str) -> str:
        """The notice's subject line and its text, decoded."""
        message = email.message_from_bytes(
            (self.root / "new" / name).read_bytes(), policy=email.policy.default
        )
        assert isinstance(message, EmailMessage)
        text = message.get_content()
        return f"Subject: {message['Subject']}\n\n{text}"


@dataclass
class Tracking:
    """A ledger, its audit chain, the spools and a sweeper on one FakeClock: the services the
    scheduled jobs take (``gpg``, the configuration's GnuPG home, is opened on first use)."""

    config: configuration.Config
    clock: FakeClock
    ledger: Ledger
    audit: AuditLog
    inbound: Spool
    outbound: Spool

    @classmethod
    def make(
        cls, folder: Path, engine: Engine, *, extra: str = "", start: datetime = START
    ) -> Tracking:
        config = write_config(folder, url_of(engine), extra=extra)
        clock = FakeClock(start)
        return cls(
            config=config,
            clock=clock,
            ledger=Ledger(engine, clock),
            audit=AuditLog(engine, clock),
            inbound=Spool(config.paths.spool / "inbound"),
            outbound=Spool(config.paths.spool / "outbound"),
        )

    @functools.cached_property
    def gpg(self) -> GnuPG:
        return GnuPG(self.config.paths.gnupg_home)

    def sweeper(self, engine: Engine | None = None) -> Sweeper:
        """A new sweeper (as after a restart), optionally on an engine of its own."""
        ledger = Ledger(engine, self.clock) if engine is not None else self.ledger
        audit = AuditLog(engine, self.clock) if engine is not None else self.audit
        return Sweeper(
            config=self.config,
            ledger=ledger,
            audit=audit,
            catalogue=CATALOGUE,
            outbound=self.outbound,
        )

    def desk(self, name: str) -> Desk:
        return Desk(self.config.desk(name).maildir)

    def record(
        self,
        *,
        direction: str = "inbound",
        form: str = "G",
        reference: str = "NO-2026-000123",
        partner: str = "NO-SIRENE",
        channel: str = "sirene",
        priority: str = "urgent",
        state: str | None = None,
        desk: str | None = "sirene",
        spool_key: str | None = None,
        in_reply_to: str | None = None,
    ) -> int:
        """A message in the ledger, recorded at the clock's now; by default delivered (inbound)
        or sent (outbound)."""
        machine = InboundState if direction == "inbound" else OutboundState
        default = InboundState.DELIVERED if direction == "inbound" else OutboundState.SENT
        with writing(self.ledger.engine) as tx:
            return self.ledger.record_in(
                tx,
                NewMessage(
                    direction=direction,
                    partner=partner,
                    channel=channel,
                    form=form,
                    reference=reference,
                    message_id=f"<{reference.lower()}@example.test>",
                    priority=priority,
                    content_sha256="c" * 64,
                    raw_sha256="d" * 64,
                    state=default if state is None else machine(state),
                    in_reply_to=in_reply_to,
                    spool_key=spool_key,
                    desk=desk,
                ),
            )

    def open_reply(self, message_id: int, planned: PlannedDeadline, owed_by: str = "desk") -> int:
        with writing(self.ledger.engine) as tx:
            self.ledger.open_deadline_in(
                tx,
                message_id,
                kind="reply",
                owed_by=owed_by,
                due=planned.due,
                next_action_at=planned.next_action_at,
            )
        return self.deadline_id(message_id, "reply")

    def open_receipt(self, message_id: int, window: timedelta) -> int:
        with writing(self.ledger.engine) as tx:
            self.ledger.open_deadline_in(
                tx,
                message_id,
                kind="receipt",
                owed_by="partner",
                due=self.clock.now() + window,
            )
        return self.deadline_id(message_id, "receipt")

    def deadline_id(self, message_id: int, kind: str) -> int:
        return int(self.row(message_id, kind).id)

    def row(self, message_id: int, kind: str = "reply") -> Any:
        with self.ledger.engine.connect() as connection:
            found = connection.execute(
                select(deadlines).where(
                    deadlines.c.message_id == message_id, deadlines.c.kind == kind
                )
            ).first()
        assert found is not None
        return found

    def audit_kinds(self, prefix: str = "deadline.") -> list[str]:
        return [entry.kind for entry in self.audit.entries() if entry.kind.startswith(prefix)]
