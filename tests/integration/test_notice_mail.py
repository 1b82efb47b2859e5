"""Notices by e-mail: a desk with an address gets each notice in its Maildir and, through the
configured relay only (STARTTLS, verified certificate), by mail, once per notice key."""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from integration.fakepartner import FakePartner, Pki, make_pki, server_context
from integration.test_delivery import PAYLOAD, form_meta  # a sealed form as submit makes it
from sqlalchemy import Engine, func, select
from trackingkit import CATALOGUE

from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.core.config import Config
from gateway.core.errors import ConfigError
from gateway.desks import notices
from gateway.desks.notices import Notice
from gateway.outbound.delivery import Courier
from gateway.store import schema
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, NewMessage, make_engine, messages
from gateway.store.spool import Spool
from gateway.store.states import OutboundState
from gateway.store.unit import writing

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OURS = "sirene@ro.example"
DESK_EMAIL = "sirene-desk@ro.example"
NOTICE = Notice(
    kind="reminder",
    key="reminder.17.1",
    subject="reply to NO-2026-000123 due 2026-03-02T21:00Z",
    body="The reply to NO-2026-000123 (SIRENE M) is due at 2026-03-02T21:00Z.\n",
    reference="NO-2026-000123",
)


def write_config(folder: Path, *, relay: str) -> Config:
    path = folder / "gateway.toml"
    path.write_text(f"""
[identity]
country = "RO"
address = "{OURS}"
bureaux = {{ sirene = "RO-SIRENE" }}

[paths]
gnupg_home = "{folder}/gnupg"
spool = "{folder}/spool"

[smtp.listen]
hostname = "gateway.ro.example"
{relay}
[[partners]]
code = "NO-SIRENE"
channel = "sirene"
country = "NO"
address = "sirene@no.example"
smtp_host = "127.0.0.1"
smtp_port = 2
fingerprint = "{"AB12" * 10}"

[[desks]]
name = "sirene"
maildir = "{folder}/desks/sirene"
email = "{DESK_EMAIL}"

[[desks]]
name = "duty"
maildir = "{folder}/desks/duty"

[outbound]
retry_first = "PT1M"
retry_max = "PT10M"
give_up_after = "PT1H"
jitter_percent = 0
timeout = "PT5S"
""")
    return configuration.load(path)


def relay_table(port: int, *, require_tls: bool = True) -> str:
    tls = "true" if require_tls else "false"
    return (
        f'[smtp.relay]\nhost = "127.0.0.1"\nport = {port}\nrequire_tls = {tls}\n'
        'tls_ca = "relay-ca.pem"\n'
    )


@dataclass
class World:
    folder: Path
    config: Config
    relay: FakePartner
    clock: FakeClock
    engine: Engine

    def courier(self) -> Courier:
        return Courier(
            config=self.config,
            ledger=Ledger(self.engine, self.clock),
            spool=self.spool(),
            audit=AuditLog(self.engine, self.clock),
            clock=self.clock,
            catalogue=CATALOGUE,
            rng=random.Random(3),  # noqa: S311
        )

    def spool(self) -> Spool:
        return Spool(self.config.paths.spool / "outbound")

    def post(self, notice: Notice = NOTICE, desk: str = "sirene") -> Path:
        return notices.post(self.config, desk, notice, self.clock.now())

    def folders(self) -> dict[str, list[str]]:
        spool = self.spool()
        return {
            folder.name: sorted(path.name for path in folder.iterdir())
            for folder in (spool.new, spool.cur, spool.done, spool.quarantine)
            if any(folder.iterdir())
        }

    def maildir(self, desk: str) -> list[Path]:
        new = self.config.desk(desk).maildir / "new"
        return sorted(new.iterdir()) if new.exists() else []

    def ledger_rows(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(messages)).scalar_one())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    schema.upgrade(made)
    yield made
    made.dispose()


@pytest.fixture
async def world(tmp_path: Path, pki: Pki, engine: Engine) -> AsyncIterator[World]:
    shutil.copy(pki.ca, tmp_path / "relay-ca.pem")
    relay = FakePartner(tls=server_context(pki.cert, pki.key))
    await relay.start()
    config = write_config(tmp_path, relay=relay_table(relay.port))
    try:
        yield World(tmp_path, config, relay, FakeClock(START), engine)
    finally:
        await relay.stop()


async def test_a_notice_reaches_the_desk_address_through_the_relay_over_starttls(
    world: World,
) -> None:
    assert world.config.relay is not None
    assert world.config.relay.tls_ca == world.folder / "relay-ca.pem"  # relative to the file
    copy = world.post()
    assert world.folders() == {"new": ["notice.reminder.17.1.msg"]}
    assert await world.courier().run_once() == 1
    [got] = world.relay.received
    assert (got.mail_from, got.rcpt_tos, got.tls) == (OURS, (DESK_EMAIL,), True)
    assert world.relay.commands == ["STARTTLS", "MAIL", "RCPT", "DATA"]
    on_disk = copy.read_bytes()
    assert b"\r" not in on_disk  # the Maildir copy ends its lines in LF, the mail in CRLF
    assert got.data.replace(b"\r\n", b"\n") == on_disk  # the same notice as in the Maildir
    assert b"Subject: [NOTICE] reply to NO-2026-000123" in got.data
    assert f"To: sirene desk <{DESK_EMAIL}>".encode() in got.data
    assert world.folders() == {"done": ["notice.reminder.17.1.msg"]}
    assert world.ledger_rows() == 0  # no ledger row, no state
    assert AuditLog(world.engine, world.clock).entries() == []
    assert await world.courier().run_once() == 0


async def test_a_notice_posted_twice_is_mailed_once(world: World) -> None:
    first = world.post()
    assert world.post() == first
    assert await world.courier().run_once() == 1
    world.clock.advance(timedelta(minutes=5))
    assert world.post() == first  # after it was sent, too
    assert await world.courier().run_once() == 0
    assert len(world.relay.received) == 1
    assert [path.name for path in world.maildir("sirene")] == [first.name]


async def test_a_desk_without_an_address_gets_its_maildir_only(world: World) -> None:
    world.post(desk="duty")
    assert len(world.maildir("duty")) == 1
    assert world.folders() == {}
    assert await world.courier().run_once() == 0
    assert world.relay.connections == 0


async def test_without_a_relay_notices_stay_in_the_maildir(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.config = write_config(world.folder, relay="")
    world.post()
    assert len(world.maildir("sirene")) == 1
    assert world.folders() == {}
    with caplog.at_level(logging.WARNING, logger="gateway.delivery"):
        courier = world.courier()
    assert [record.getMessage() for record in caplog.records] == [
        "desks have e-mail addresses but no [smtp.relay] is configured: "
        "notices go to their Maildirs only"
    ]
    assert await courier.run_once() == 0
    assert world.relay.connections == 0


async def test_never_in_clear_when_the_relay_offers_no_starttls(world: World) -> None:
    world.relay.tls = None
    world.post()
    assert await world.courier().run_once() == 1
    assert world.relay.commands == []  # not even MAIL FROM
    meta = world.spool().get("notice.reminder.17.1").meta
    assert (meta["attempts"], meta["last_error"]) == (1, "STARTTLS not offered")
    assert world.folders() == {"new": ["notice.reminder.17.1.msg"]}


async def test_the_relay_certificate_must_chain_to_its_tls_ca(world: World, pki: Pki) -> None:
    world.relay.tls = server_context(pki.stranger_cert, pki.stranger_key)
    world.post()
    assert await world.courier().run_once() == 1
    assert world.relay.received == []
    meta = world.spool().get("notice.reminder.17.1").meta
    assert meta["last_error"] == "TLS certificate not accepted: self-signed certificate"


async def test_a_notice_for_an_address_no_desk_has_is_set_aside_unsent(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    meta = {"kind": "notice", "to": "someone@evil.example", "desk": "sirene", "notice": "x"}
    world.spool().put("notice.forged", b"Subject: x\r\n\r\nx\r\n", meta)
    with caplog.at_level(logging.ERROR, logger="gateway.delivery"):
        assert await world.courier().run_once() == 1
    assert world.relay.connections == 0
    assert world.folders() == {"quarantine": ["notice.forged.msg"]}
    assert "not the address configured for a desk" in caplog.text
    assert world.maildir("sirene") == world.maildir("duty") == []  # no notice about a notice


async def test_a_notice_that_cannot_be_delivered_is_set_aside_after_give_up_after(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.relay.fail("data", "451 4.3.0 try later", times=1000)
    world.post()
    courier = world.courier()
    with caplog.at_level(logging.ERROR, logger="gateway.delivery"):
        while world.folders().get("new"):
            assert await courier.run_once() == 1
            due = courier.next_due()
            if due is not None:
                world.clock.set(due)
    assert world.clock.now() - START >= timedelta(hours=1)
    assert world.folders() == {"quarantine": ["notice.reminder.17.1.msg"]}
    assert "notice notice.reminder.17.1 for the sirene desk failed: gave up after" in caplog.text
    assert len(world.maildir("sirene")) == 1  # the notice itself; none about its mail
    assert world.maildir("duty") == []
    assert world.ledger_rows() == 0


async def test_a_delivery_failure_is_told_to_the_desk_by_mail_too(world: World) -> None:
    """With a relay, partners' mail goes through it as well: the relay refuses a form, the desk
    that sent it gets the notice in its Maildir and, on the next pass, by mail."""
    ledger = Ledger(world.engine, world.clock)
    with writing(world.engine) as tx:
        ledger_id = ledger.record_in(
            tx,
            NewMessage(
                direction="outbound",
                partner="NO-SIRENE",
                channel="sirene",
                form="G",
                reference="RO-2026-000001",
                message_id="<RO-2026-000001.abc@gateway.ro.example>",
                priority="normal",
                content_sha256="c" * 64,
                raw_sha256="d" * 64,
                state=OutboundState.QUEUED,
                spool_key="form.RO-2026-000001",
                desk="sirene",
            ),
        )
    meta = form_meta("RO-2026-000001", ledger_id, START) | {"to": "sirene@no.example"}
    world.spool().put("form.RO-2026-000001", PAYLOAD, meta)
    world.relay.fail("data", "554 5.7.1 relaying denied")
    assert await world.courier().run_once() == 1
    assert ledger.get(ledger_id).state == "rejected"
    [notice] = world.maildir("sirene")
    assert notice.name == "notice.rejected.form.RO-2026-000001"
    assert await world.courier().run_once() == 1
    [mail] = world.relay.received
    assert mail.rcpt_tos == (DESK_EMAIL,)
    assert mail.data.replace(b"\r\n", b"\n") == notice.read_bytes()  # CRLF by mail, LF on disk
    assert world.folders() == {
        "done": ["notice.rejected.form.RO-2026-000001.msg"],
        "quarantine": ["form.RO-2026-000001.msg"],
    }


def test_a_long_notice_key_has_a_fixed_spool_key() -> None:
    key = "escalation." + "X" * 80
    assert notices.mail_key(key) == notices.mail_key(key)
    assert len(notices.mail_key(key)) <= 64
    assert notices.mail_key("a/b") != notices.mail_key("a_b")
    assert notices.mail_key("reminder.17.1") == "notice.reminder.17.1"


def test_a_missing_relay_ca_is_a_configuration_error(tmp_path: Path, engine: Engine) -> None:
    config = write_config(tmp_path, relay=relay_table(2525))  # no relay-ca.pem beside it
    clock = FakeClock(START)
    with pytest.raises(ConfigError, match=r"smtp\.relay\.tls_ca"):
        Courier(
            config=config,
            ledger=Ledger(engine, clock),
            spool=Spool(tmp_path / "s"),
            audit=AuditLog(engine, clock),
            clock=clock,
            catalogue=CATALOGUE,
        )
