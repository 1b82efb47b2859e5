"""Outbound delivery against a fake partner on port 0: STARTTLS with a test CA, retries with
backoff driven by a FakeClock, rejections, giving up, restarts, and the ledger on both databases."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from integration.fakepartner import DROP, FakePartner, Pki, make_pki, server_context
from sqlalchemy import Connection, Engine, event, select
from sqlalchemy.exc import OperationalError
from trackingkit import CATALOGUE

from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.core.config import Config
from gateway.core.errors import ConfigError
from gateway.outbound import delivery
from gateway.outbound.delivery import Courier
from gateway.outbound.retry import requeue_interrupted
from gateway.store import schema
from gateway.store.audit import AuditLog
from gateway.store.ledger import (
    Ledger,
    MessageRow,
    NewMessage,
    as_utc,
    deadlines,
    make_engine,
)
from gateway.store.spool import Spool
from gateway.store.states import InboundState, OutboundState
from gateway.store.unit import writing

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OURS = "sirene@ro.example"
THEIRS = "sirene@no.example"
# A sealed message as submit makes it: CRLF, PGP/MIME, a line that needs dot-stuffing.
PAYLOAD = (
    b"From: sirene@ro.example\r\n"
    b"To: sirene@no.example\r\n"
    b"Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n"
    b"Message-ID: <RO-2026-000001.abc@gateway.ro.example>\r\n"
    b"Subject: SIRENE G RO-2026-000001\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n'
    b' boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n\r\n"
    b"-----BEGIN PGP MESSAGE-----\r\n\r\nhF4DAAAAAAAAAAASAQdA\r\n.starts with a dot\r\n=AbCd\r\n"
    b"-----END PGP MESSAGE-----\r\n"
    b"--b1--\r\n"
)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Rig:
    """A configured world around one fake partner: ledger, audit, spool, clock."""

    folder: Path
    pki: Pki
    partner: FakePartner
    clock: FakeClock
    engine: Engine
    ledger: Ledger
    audit: AuditLog
    spool: Spool
    config: Config
    couriers: list[Courier] = field(default_factory=list)

    def configure(self, **outbound: str | int) -> None:
        self.config = write_config(self.folder, self.pki, self.partner.port, outbound=outbound)

    def courier(self, seed: int = 7) -> Courier:
        made = Courier(
            config=self.config,
            ledger=self.ledger,
            spool=self.spool,
            audit=self.audit,
            clock=self.clock,
            catalogue=CATALOGUE,
            rng=random.Random(seed),  # noqa: S311
        )
        self.couriers.append(made)
        return made

    def record(self, new: NewMessage) -> int:
        with writing(self.engine) as tx:
            return self.ledger.record_in(tx, new)

    def queue_form(
        self,
        reference: str = "RO-2026-000001",
        *,
        in_reply_to: str | None = None,
        payload: bytes = PAYLOAD,
        recorded_for: str = "NO-SIRENE",
        **meta: Any,
    ) -> int:
        key = f"form.{reference}"
        ledger_id = self.record(
            NewMessage(
                direction="outbound",
                partner=recorded_for,
                channel="sirene",
                form="G",
                reference=reference,
                in_reply_to=in_reply_to,
                message_id=f"<{reference}.abc@gateway.ro.example>",
                priority="normal",
                content_sha256="c" * 64,
                raw_sha256=hashlib.sha256(payload).hexdigest(),
                state=OutboundState.QUEUED,
                spool_key=key,
                desk="sirene",
            )
        )
        self.spool.put(key, payload, form_meta(reference, ledger_id, self.clock.now()) | meta)
        return ledger_id

    def row(self, ledger_id: int) -> MessageRow:
        return self.ledger.get(ledger_id)

    def folders(self) -> dict[str, list[str]]:
        spool = self.spool
        return {
            folder.name: sorted(path.name for path in folder.iterdir())
            for folder in (spool.new, spool.cur, spool.done, spool.quarantine)
            if any(folder.iterdir())
        }

    def notices(self, desk: str) -> list[EmailMessage]:
        new = self.config.desk(desk).maildir / "new"
        if not new.exists():
            return []
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in sorted(new.iterdir())
        ]

    def audit_kinds(self) -> list[tuple[str, str, str]]:
        return [(e.kind, e.reference, e.digest) for e in self.audit.entries()]

    def deadline(self, ledger_id: int, kind: str) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(
                select(deadlines).where(
                    deadlines.c.message_id == ledger_id, deadlines.c.kind == kind
                )
            ).first()


def form_meta(reference: str, ledger_id: int, now: datetime) -> dict[str, Any]:
    return {
        "to": THEIRS,
        "partner": "NO-SIRENE",
        "reference": reference,
        "form": "G",
        "kind": "form",
        "message_id": f"<{reference}.abc@gateway.ro.example>",
        "ledger_id": ledger_id,
        "queued_at": now.isoformat(),
    }


DEFAULT_OUTBOUND: dict[str, str | int] = {
    "retry_first": "PT1M",
    "retry_max": "PT10M",
    "give_up_after": "PT1H",
    "jitter_percent": 0,
    "connections_per_partner": 2,
    "timeout": "PT5S",
}


def write_config(
    folder: Path,
    pki: Pki,
    port: int,
    *,
    outbound: dict[str, str | int] | None = None,
    relay: str = "",
) -> Config:
    settings = DEFAULT_OUTBOUND | (outbound or {})
    lines = "".join(
        f'{key} = "{value}"\n' if isinstance(value, str) else f"{key} = {value}\n"
        for key, value in settings.items()
    )
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
address = "{THEIRS}"
smtp_host = "127.0.0.1"
smtp_port = {port}
fingerprint = "{"AB12" * 10}"
tls_ca = "{pki.ca}"
receipt_window = "PT15M"

[[partners]]
code = "SE-SIRENE"
channel = "sirene"
country = "SE"
address = "sirene@se.example"
smtp_host = "127.0.0.1"
smtp_port = {port}
fingerprint = "{"CD34" * 10}"
tls_ca = "{pki.ca}"

[[desks]]
name = "sirene"
maildir = "{folder}/desks/sirene"

[[desks]]
name = "duty"
maildir = "{folder}/desks/duty"

[deadlines]
duty_desk = "duty"

[outbound]
{lines}""")
    return configuration.load(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def rig(ledger_engine: Engine, tmp_path: Path, pki: Pki) -> AsyncIterator[Rig]:
    partner = FakePartner(tls=server_context(pki.cert, pki.key))
    await partner.start()
    clock = FakeClock(START)
    config = write_config(tmp_path, pki, partner.port)
    made = Rig(
        folder=tmp_path,
        pki=pki,
        partner=partner,
        clock=clock,
        engine=ledger_engine,
        ledger=Ledger(ledger_engine, clock),
        audit=AuditLog(ledger_engine, clock),
        spool=Spool(config.paths.spool / "outbound"),
        config=config,
    )
    try:
        yield made
    finally:
        for courier in made.couriers:
            await courier.close()
        await partner.stop()


def meta_of(rig: Rig, key: str = "form.RO-2026-000001") -> dict[str, Any]:
    return rig.spool.get(key).meta


# ---------------------------------------------------------------------------------- 250


async def test_delivers_under_starttls_verified_against_the_partner_ca(rig: Rig) -> None:
    ledger_id = rig.queue_form()
    assert await rig.courier().run_once() == 1
    [got] = rig.partner.received
    assert (got.mail_from, got.rcpt_tos, got.tls) == (OURS, (THEIRS,), True)
    assert got.data == PAYLOAD  # exactly the bytes, dot-stuffing undone
    assert rig.partner.commands == ["STARTTLS", "MAIL", "RCPT", "DATA"]
    row = rig.row(ledger_id)
    assert row.state == "sent"
    receipt = rig.deadline(ledger_id, "receipt")
    assert (receipt.state, receipt.owed_by) == ("open", "partner")
    assert as_utc(receipt.due) == START + timedelta(minutes=15)
    assert rig.folders() == {"done": ["form.RO-2026-000001.msg"]}
    assert rig.spool.get("form.RO-2026-000001").payload() == PAYLOAD  # kept for re-sending
    assert rig.audit_kinds() == [("sent", "RO-2026-000001", DIGEST)]
    assert [kind for _, kind, _ in rig.ledger.events_of(ledger_id)] == ["queued", "sent"]
    assert await rig.courier().run_once() == 0
    assert len(rig.partner.received) == 1
    assert rig.audit.verify() == []


async def test_never_in_clear_when_starttls_is_not_offered(rig: Rig) -> None:
    ledger_id = rig.queue_form()
    tls, rig.partner.tls = rig.partner.tls, None
    courier = rig.courier()
    assert await courier.run_once() == 1
    assert rig.partner.connections == 1
    assert rig.partner.commands == []  # not even MAIL FROM in clear
    assert rig.partner.received == []
    meta = meta_of(rig)
    assert meta["last_error"] == "STARTTLS not offered"
    assert (meta["attempts"], meta["not_before"]) == (1, (START + timedelta(minutes=1)).isoformat())
    assert rig.row(ledger_id).state == "queued"
    rig.partner.tls = tls
    rig.clock.advance(timedelta(minutes=1))
    assert await courier.run_once() == 1
    assert [r.tls for r in rig.partner.received] == [True]
    assert rig.row(ledger_id).state == "sent"


async def test_a_certificate_that_does_not_chain_to_the_partner_ca_is_refused(rig: Rig) -> None:
    ledger_id = rig.queue_form()
    rig.partner.tls = server_context(rig.pki.stranger_cert, rig.pki.stranger_key)
    assert await rig.courier().run_once() == 1
    assert rig.partner.connections == 1
    assert rig.partner.commands == []  # the handshake failed: no STARTTLS hook, no MAIL
    assert rig.partner.received == []
    assert meta_of(rig)["last_error"] == "TLS certificate not accepted: self-signed certificate"
    assert rig.row(ledger_id).state == "queued"


# ---------------------------------------------------------------------------------- 4xx


@pytest.mark.parametrize(
    ("stage", "reply", "summary"),
    [
        ("connect", "421 4.3.2 busy, come back later", "421 4.3.2 at connect"),
        ("mail", "421 4.3.2 shutting down", "421 4.3.2 at MAIL"),
        ("rcpt", "450 4.2.1 mailbox busy", "450 4.2.1 at RCPT"),
        ("data", "451 4.3.0 try again later", "451 4.3.0 at DATA"),
    ],
)
async def test_transient_replies_are_retried_with_backoff(
    rig: Rig, stage: str, reply: str, summary: str
) -> None:
    ledger_id = rig.queue_form()
    rig.partner.fail(stage, reply, times=2)
    courier = rig.courier()
    assert await courier.run_once() == 1
    meta = meta_of(rig)
    assert meta["attempts"] == 1
    assert meta["first_attempt_at"] == START.isoformat()
    assert meta["not_before"] == (START + timedelta(minutes=1)).isoformat()
    assert meta["last_error"] == f"{summary}: {reply}"
    assert courier.next_due() == START + timedelta(minutes=1)
    rig.clock.advance(timedelta(seconds=59))
    assert await courier.run_once() == 0  # not due yet
    rig.clock.advance(timedelta(seconds=1))
    assert await courier.run_once() == 1
    meta = meta_of(rig)
    assert meta["attempts"] == 2
    assert meta["not_before"] == (START + timedelta(minutes=3)).isoformat()  # 1 min, then 2
    assert rig.partner.received == []
    rig.clock.advance(timedelta(minutes=2))
    assert await courier.run_once() == 1
    assert len(rig.partner.received) == 1
    assert rig.row(ledger_id).state == "sent"
    kinds = [kind for _, kind, _ in rig.ledger.events_of(ledger_id)]
    assert kinds == ["queued", "deferred", "deferred", "sent"]
    assert meta_of(rig)["attempts"] == 2  # done/ keeps the history of its retries


async def test_a_partner_down_for_a_while(rig: Rig) -> None:
    ledger_id = rig.queue_form()
    await rig.partner.stop()
    courier = rig.courier()
    for attempt in (1, 2, 3):
        assert await courier.run_once() == 1
        meta = meta_of(rig)
        assert (meta["attempts"], meta["last_error"]) == (attempt, "connection refused")
        due = courier.next_due()
        assert due is not None
        rig.clock.set(due)
    assert rig.clock.now() == START + timedelta(minutes=1 + 2 + 4)
    await rig.partner.start()  # the same port again
    assert await courier.run_once() == 1
    assert len(rig.partner.received) == 1
    assert rig.row(ledger_id).state == "sent"


async def test_a_partner_down_is_logged_once_not_at_every_pass(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.queue_form()
    await rig.partner.stop()
    courier = rig.courier()
    with caplog.at_level(logging.INFO, logger="gateway.delivery"):
        for _ in range(3):
            assert await courier.run_once() == 1
            due = courier.next_due()
            assert due is not None
            rig.clock.set(due)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["NO-SIRENE unreachable: connection refused"]


async def test_an_unreachable_partner_costs_one_connection_per_session_not_per_item(
    rig: Rig,
) -> None:
    rig.partner.fail("connect", "421 4.3.2 too busy", times=100)
    ids = [rig.queue_form(f"RO-2026-{n:06d}") for n in range(1, 6)]
    commits: list[object] = []
    engine = rig.ledger.engine

    def committed(connection: Connection) -> None:  # PostgreSQL: SQLAlchemy commits
        if not connection.get_execution_options().get("postgresql_readonly"):  # reads commit too
            commits.append(connection)

    def traced(driver: object, _record: object) -> None:
        # SQLite: the store says BEGIN IMMEDIATE and COMMIT to the driver itself, which SQLite's
        # trace callback sees (SQLAlchemy's statement events do not).
        if isinstance(driver, sqlite3.Connection):
            driver.set_trace_callback(
                lambda sql: commits.append(driver) if sql.strip().upper() == "COMMIT" else None
            )

    event.listen(engine, "commit", committed)
    event.listen(engine, "connect", traced)
    engine.dispose()  # the ledger's kept connections are opened again, traced
    try:
        assert await rig.courier().run_once() == 5
    finally:
        event.remove(engine, "commit", committed)
        event.remove(engine, "connect", traced)
    # At most one connection per session (connections_per_partner): the rest told at once.
    assert 1 <= rig.partner.connects <= 2
    for n in range(1, 6):
        meta = meta_of(rig, f"form.RO-2026-{n:06d}")
        assert (meta["attempts"], meta["last_error"]) == (
            1,
            "421 4.3.2 at connect: 421 4.3.2 too busy",
        )
    assert {rig.row(i).state for i in ids} == {"queued"}
    # Each item has its deferred event, and the batch wrote them in one transaction.
    for ledger_id in ids:
        assert [kind for _, kind, _ in rig.ledger.events_of(ledger_id)] == ["queued", "deferred"]
    assert len(commits) == 1


async def test_a_connection_dropped_in_the_middle_of_data_is_retried(rig: Rig) -> None:
    ledger_id = rig.queue_form()
    rig.partner.fail("data", DROP)
    courier = rig.courier()
    assert await courier.run_once() == 1
    assert rig.partner.received == []
    assert meta_of(rig)["last_error"] == "connection lost at DATA"
    rig.clock.advance(timedelta(minutes=1))
    assert await courier.run_once() == 1
    assert [r.data for r in rig.partner.received] == [PAYLOAD]
    assert rig.row(ledger_id).state == "sent"


async def test_gives_up_after_give_up_after(rig: Rig) -> None:
    ledger_id = rig.queue_form()
    rig.partner.fail("data", "451 4.3.0 still busy", times=1000)
    courier = rig.courier()
    tries = []
    while rig.row(ledger_id).state == "queued":
        assert await courier.run_once() == 1
        tries.append(int((rig.clock.now() - START).total_seconds() // 60))
        due = courier.next_due()
        if due is not None:
            rig.clock.set(due)
    # 1, 2, 4, 8, then 10 minutes (retry_max) apart; the failure at 65 min is past the hour.
    assert tries == [0, 1, 3, 7, 15, 25, 35, 45, 55, 65]
    assert rig.row(ledger_id).state == "failed"
    assert rig.folders() == {"quarantine": ["form.RO-2026-000001.msg"]}
    assert rig.partner.received == []
    kinds = [kind for _, kind, _ in rig.ledger.events_of(ledger_id)]
    assert kinds == ["queued"] + ["deferred"] * 9 + ["failed"]
    [notice] = rig.notices("sirene")
    assert notice["Subject"] == "[NOTICE] form G RO-2026-000001 to NO-SIRENE not delivered"
    assert notice["X-IPC-Notice"] == "failed"
    body = notice.get_content()
    assert "gave up after 10 attempts since 2026-03-02T09:00:00+00:00: 451 4.3.0 at DATA" in body
    assert "451 4.3.0 still busy" in body
    assert rig.audit_kinds() == [("failed", "RO-2026-000001", DIGEST)]
    assert await courier.run_once() == 0
    assert rig.notices("duty") == []


# ---------------------------------------------------------------------------------- 5xx


@pytest.mark.parametrize(("stage", "label"), [("mail", "MAIL"), ("rcpt", "RCPT"), ("data", "DATA")])
async def test_a_5xx_rejects_at_once_and_the_desk_reads_the_partner_words(
    rig: Rig, stage: str, label: str
) -> None:
    ledger_id = rig.queue_form()
    long_words = "x" * 600
    rig.partner.fail(stage, f"550-5.7.1 Recipient \x1b[1mblocked\r\n550 5.7.1 {long_words}")
    courier = rig.courier()
    assert await courier.run_once() == 1
    assert rig.partner.received == []
    assert rig.row(ledger_id).state == "rejected"
    assert rig.folders() == {"quarantine": ["form.RO-2026-000001.msg"]}
    [notice] = rig.notices("sirene")
    assert notice["Subject"] == "[NOTICE] form G RO-2026-000001 to NO-SIRENE rejected"
    assert notice["X-IPC-Notice"] == "rejected"
    body = notice.get_content()
    assert f"(550 5.7.1 at {label})" in body
    quoted = next(line for line in body.splitlines() if line.startswith("The partner's server"))
    words = quoted.removeprefix("The partner's server replied: ")
    assert words.startswith("550 5.7.1 Recipient [1mblocked 5.7.1 xxx")  # one line, no ESC
    assert len(words) == 500
    assert [(e.kind, e.reason) for e in rig.audit.entries()] == [
        ("rejected", f"550 5.7.1 at {label}")
    ]
    events = rig.ledger.events_of(ledger_id)
    assert events[-1][1:] == ("rejected", f"550 5.7.1 at {label}")
    assert await courier.run_once() == 0
    assert rig.partner.take(stage) is None


# ---------------------------------------------------------------------------------- restarts


async def test_retries_survive_a_restart(rig: Rig) -> None:
    ledger_id = rig.queue_form()
    rig.partner.fail("data", "451 4.3.0 later")
    assert await rig.courier().run_once() == 1
    # A new process: new Spool, Ledger and Courier on the same folders and database.
    spool = Spool(rig.config.paths.spool / "outbound")
    assert spool.recover().interrupted == ()
    rig.spool, rig.ledger = spool, Ledger(rig.engine, rig.clock)
    courier = rig.courier()
    assert courier.next_due() == START + timedelta(minutes=1)
    assert await courier.run_once() == 0
    rig.clock.advance(timedelta(minutes=1))
    assert await courier.run_once() == 1
    assert rig.row(ledger_id).state == "sent"
    meta = meta_of(rig)
    assert (meta["attempts"], meta["first_attempt_at"]) == (1, START.isoformat())


async def test_an_item_claimed_when_the_process_died_is_sent_after_recovery(rig: Rig) -> None:
    ledger_id = rig.queue_form()
    assert rig.spool.claim(["form.RO-2026-000001"]) != []  # then the process dies
    assert await rig.courier().run_once() == 0  # claimed: nobody else sends it
    spool = Spool(rig.config.paths.spool / "outbound")
    recovery = spool.recover()
    assert requeue_interrupted(spool, recovery.interrupted) == 1
    rig.spool = spool
    assert await rig.courier().run_once() == 1
    assert len(rig.partner.received) == 1
    assert rig.row(ledger_id).state == "sent"


async def test_an_interrupted_retry_keeps_its_schedule(rig: Rig) -> None:
    ledger_id = rig.queue_form()
    rig.partner.fail("data", "451 4.3.0 later", times=2)
    assert await rig.courier().run_once() == 1
    rig.clock.advance(timedelta(minutes=1))
    assert await rig.courier().run_once() == 1
    scheduled = meta_of(rig)
    assert (scheduled["attempts"], scheduled["first_attempt_at"]) == (2, START.isoformat())
    due = datetime.fromisoformat(scheduled["not_before"])
    rig.clock.set(due)
    assert rig.spool.claim(["form.RO-2026-000001"]) != []  # then the process dies
    spool = Spool(rig.config.paths.spool / "outbound")
    [interrupted] = spool.recover().interrupted
    assert requeue_interrupted(spool, [interrupted]) == 1
    assert meta_of(rig) == scheduled  # no attempt counted, nothing moved
    rig.spool = spool
    courier = rig.courier()
    assert courier.next_due() == due
    rig.partner.fail("data", "451 4.3.0 still later")
    assert await courier.run_once() == 1
    after = meta_of(rig)
    assert (after["attempts"], after["first_attempt_at"]) == (3, START.isoformat())
    assert datetime.fromisoformat(after["not_before"]) == due + timedelta(minutes=4)
    assert rig.row(ledger_id).state == "queued"


async def test_an_outcome_is_kept_when_the_ledger_is_away_after_the_250(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger_id = rig.queue_form()
    real = Ledger.move_many_in
    calls = []

    def away(self: Ledger, *args: Any, **kwargs: Any) -> set[int]:
        calls.append(args)
        if len(calls) == 1:
            raise OperationalError("UPDATE", {}, Exception("database is away"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, "move_many_in", away)
    courier = rig.courier()
    assert await courier.run_once() == 1
    assert len(rig.partner.received) == 1
    assert rig.row(ledger_id).state == "queued"
    meta = meta_of(rig)
    assert meta["outcome"]["verdict"] == "sent"
    assert meta["not_before"] == (START + timedelta(minutes=1)).isoformat()
    rig.clock.advance(timedelta(minutes=1))
    assert await courier.run_once() == 1
    assert len(rig.partner.received) == 1  # settled without sending it again
    assert rig.row(ledger_id).state == "sent"
    assert rig.folders() == {"done": ["form.RO-2026-000001.msg"]}
    assert [kind for kind, _, _ in rig.audit_kinds()] == ["sent"]


# ---------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("meta", "payload", "reason"),
    [
        (
            {"to": f"{THEIRS}\r\nRCPT TO:<x@evil.example>"},
            PAYLOAD,
            "CR, LF or a character outside printable ASCII in an envelope address",
        ),
        ({"to": "sirene@nö.example"}, PAYLOAD, "outside printable ASCII"),
        ({"to": "ncb@evil.example"}, PAYLOAD, "not the address configured for NO-SIRENE"),
        ({}, PAYLOAD.replace(b"MIME-Version", b"Bcc: x@evil.example\nMIME-Version"), "bare CR"),
        ({}, PAYLOAD.replace(b"Subject: SIRENE", b"Subject: \rSIRENE"), "bare CR"),
        ({"partner": "XX-NOBODY"}, PAYLOAD, "unknown partner"),
        (
            {"partner": "SE-SIRENE", "to": "sirene@se.example"},
            PAYLOAD,
            "queued for SE-SIRENE but recorded for NO-SIRENE",
        ),
    ],
)
async def test_an_item_that_must_not_go_out_is_set_aside(
    rig: Rig, meta: dict[str, str], payload: bytes, reason: str
) -> None:
    ledger_id = rig.queue_form(payload=payload, **meta)
    courier = rig.courier()
    assert await courier.run_once() == 1
    assert rig.partner.connections == 0  # never sent, not even connected
    assert rig.row(ledger_id).state == "failed"
    assert rig.folders() == {"quarantine": ["form.RO-2026-000001.msg"]}
    [event] = rig.ledger.events_of(ledger_id)[-1:]
    assert event[1] == "failed"
    assert reason in event[2]
    [notice] = rig.notices("sirene")
    assert notice["Subject"].endswith("RO-2026-000001 to NO-SIRENE not sent")
    assert "fault in the gateway" in notice.get_content()
    assert [kind for kind, _, _ in rig.audit_kinds()] == ["failed"]
    assert await courier.run_once() == 0


async def test_an_item_without_its_ledger_row_waits_then_is_set_aside(rig: Rig) -> None:
    key = "form.RO-2026-000009"
    rig.spool.put(key, PAYLOAD, form_meta("RO-2026-000009", 99, rig.clock.now()))
    courier = rig.courier()
    assert await courier.run_once() == 0  # its `gateway send` may not have committed yet
    assert rig.folders() == {"new": [f"{key}.msg"]}
    rig.clock.advance(timedelta(minutes=9, seconds=59))
    assert await courier.run_once() == 0
    assert rig.folders() == {"new": [f"{key}.msg"]}
    rig.clock.advance(timedelta(seconds=1))
    assert await courier.run_once() == 0
    assert rig.folders() == {"quarantine": [f"{key}.msg"]}
    assert rig.partner.connections == 0


# ---------------------------------------------------------------------------------- ledger


async def test_a_reply_answers_the_partner_message(rig: Rig) -> None:
    inbound = rig.record(
        NewMessage(
            direction="inbound",
            partner="NO-SIRENE",
            channel="sirene",
            form="M",
            reference="NO-2026-000123",
            message_id="<m@no.example>",
            priority="normal",
            content_sha256="a" * 64,
            raw_sha256="b" * 64,
            state=InboundState.DELIVERED,
            spool_key="in.1",
            desk="sirene",
        )
    )
    with writing(rig.engine) as tx:
        rig.ledger.open_deadline_in(
            tx, inbound, kind="reply", owed_by="desk", due=START + timedelta(hours=12)
        )
    ledger_id = rig.queue_form(in_reply_to="NO-2026-000123")
    assert await rig.courier().run_once() == 1
    assert rig.row(ledger_id).state == "sent"
    assert rig.row(inbound).state == "answered"
    reply = rig.deadline(inbound, "reply")
    assert (reply.state, reply.close_reason) == ("met", "answered by RO-2026-000001")
    assert rig.deadline(ledger_id, "receipt").state == "open"
    events = rig.ledger.events_of(inbound)
    assert events[-1][1:] == ("answered", "answered by RO-2026-000001")


async def test_a_receipt_and_a_receipt_sent_again(rig: Rig) -> None:
    ack = rig.record(
        NewMessage(
            direction="outbound",
            partner="NO-SIRENE",
            channel="sirene",
            form="ACK",
            reference="RO-2026-000002",
            in_reply_to="NO-2026-000123",
            message_id="<receipt.1.RO-2026-000002@gateway.ro.example>",
            priority="normal",
            content_sha256="",
            raw_sha256="",
            state=OutboundState.QUEUED,
            spool_key="receipt.1",
        )
    )
    meta = {
        "to": THEIRS,
        "partner": "NO-SIRENE",
        "reference": "RO-2026-000002",
        "kind": "receipt",
        "message_id": "<receipt.1.RO-2026-000002@gateway.ro.example>",
    }
    rig.spool.put("receipt.1", PAYLOAD, meta)
    courier = rig.courier()
    assert await courier.run_once() == 1
    assert rig.row(ack).state == "sent"
    assert rig.deadline(ack, "receipt") is None  # a receipt opens no deadline of its own
    rig.spool.put("receipt.1.again.1", PAYLOAD, meta)  # a duplicate came in
    assert await courier.run_once() == 1
    assert len(rig.partner.received) == 2
    assert rig.row(ack).state == "sent"
    kinds = [(kind, detail) for _, kind, detail in rig.ledger.events_of(ack)]
    assert kinds[-1] == ("resent", "receipt.1.again.1: 250 2.0.0")
    assert [(kind, reference) for kind, reference, _ in rig.audit_kinds()] == [
        ("sent", "RO-2026-000002"),
        ("sent", "RO-2026-000002"),
    ]


async def test_a_rejected_receipt_is_told_to_the_duty_desk(rig: Rig) -> None:
    ack = rig.record(
        NewMessage(
            direction="outbound",
            partner="NO-SIRENE",
            channel="sirene",
            form="ACK",
            reference="RO-2026-000002",
            in_reply_to="NO-2026-000123",
            message_id="<r@gateway.ro.example>",
            priority="normal",
            content_sha256="",
            raw_sha256="",
            state=OutboundState.QUEUED,
            spool_key="receipt.1",
        )
    )
    meta = {"to": THEIRS, "partner": "NO-SIRENE", "reference": "RO-2026-000002"}
    rig.spool.put("receipt.1", PAYLOAD, meta | {"kind": "receipt", "message_id": "<r@x>"})
    rig.partner.fail("data", "554 5.6.0 no thanks")
    assert await rig.courier().run_once() == 1
    assert rig.row(ack).state == "rejected"
    [notice] = rig.notices("duty")
    assert notice["Subject"] == "[NOTICE] receipt RO-2026-000002 to NO-SIRENE rejected"
    assert rig.notices("sirene") == []


async def test_a_receipt_the_policy_gives_up_on_is_told_to_the_duty_desk(rig: Rig) -> None:
    ack = rig.record(
        NewMessage(
            direction="outbound",
            partner="NO-SIRENE",
            channel="sirene",
            form="ACK",
            reference="RO-2026-000002",
            in_reply_to="NO-2026-000123",
            message_id="<r@gateway.ro.example>",
            priority="normal",
            content_sha256="",
            raw_sha256="",
            state=OutboundState.QUEUED,
            spool_key="receipt.1",
        )
    )
    meta = {"to": THEIRS, "partner": "NO-SIRENE", "reference": "RO-2026-000002"}
    rig.spool.put("receipt.1", PAYLOAD, meta | {"kind": "receipt", "message_id": "<r@x>"})
    rig.partner.fail("rcpt", "450 4.2.1 mailbox busy", times=1000)
    courier = rig.courier()
    while rig.row(ack).state == "queued":
        assert await courier.run_once() == 1
        if rig.row(ack).state == "queued":
            assert rig.notices("duty") == []  # a retry is told to nobody
        due = courier.next_due()
        if due is not None:
            rig.clock.set(due)
    assert rig.row(ack).state == "failed"
    assert rig.clock.now() - START >= timedelta(hours=1)  # give_up_after in this configuration
    [notice] = rig.notices("duty")
    assert notice["Subject"] == "[NOTICE] receipt RO-2026-000002 to NO-SIRENE not delivered"
    assert notice["X-IPC-Notice"] == "failed"
    body = notice.get_content()
    assert "gave up after 10 attempts since 2026-03-02T09:00:00+00:00: 450 4.2.1 at RCPT" in body
    assert "No further attempts will be made." in body
    assert rig.notices("sirene") == []
    assert rig.folders() == {"quarantine": ["receipt.1.msg"]}


async def test_a_resend_is_an_event_of_the_original(rig: Rig) -> None:
    original = rig.queue_form()
    assert await rig.courier().run_once() == 1
    with writing(rig.engine) as tx:
        rig.ledger.set_state_in(tx, original, OutboundState.UNACKNOWLEDGED, "no receipt")
    key = "form.RO-2026-000001.resend.1"
    meta = form_meta("RO-2026-000001", original, rig.clock.now()) | {"kind": "resend"}
    rig.spool.put(key, rig.spool.get("form.RO-2026-000001").payload(), meta)
    rig.clock.advance(timedelta(minutes=15))
    assert await rig.courier().run_once() == 1
    assert [r.data for r in rig.partner.received] == [PAYLOAD, PAYLOAD]
    assert rig.row(original).state == "unacknowledged"
    assert rig.ledger.events_of(original)[-1][1:] == ("resent", f"{key}: 250 2.0.0")
    assert rig.folders() == {"done": ["form.RO-2026-000001.msg", f"{key}.msg"]}
    assert [kind for kind, _, _ in rig.audit_kinds()] == ["sent", "sent"]


# ---------------------------------------------------------------------------------- sessions


async def test_at_most_connections_per_partner_each_carrying_several_messages(rig: Rig) -> None:
    rig.configure(connections_per_partner=2)
    rig.partner.data_delay = 0.05
    ids = [rig.queue_form(f"RO-2026-{n:06d}") for n in range(1, 7)]
    assert await rig.courier().run_once() == 6
    assert rig.partner.max_concurrent == 2
    assert rig.partner.connections == 2  # kept and reused
    assert len(rig.partner.received) == 6
    assert all(r.tls for r in rig.partner.received)
    assert {rig.row(i).state for i in ids} == {"sent"}


async def test_small_batches_and_little_room_ahead_still_send_everything_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "CLAIM_BATCH", 2)
    monkeypatch.setattr(delivery, "CLAIM_AHEAD", 2)
    monkeypatch.setattr(delivery, "CLAIM_AHEAD_BYTES", len(PAYLOAD) + 1)
    monkeypatch.setattr(delivery, "SETTLE_BATCH", 3)
    monkeypatch.setattr(delivery, "SETTLE_DELAY", 0.01)
    rig.partner.data_delay = 0.01
    ids = [rig.queue_form(f"RO-2026-{n:06d}") for n in range(1, 8)]
    assert await rig.courier().run_once() == 7
    assert sorted(r.data for r in rig.partner.received) == [PAYLOAD] * 7
    assert {rig.row(i).state for i in ids} == {"sent"}
    assert rig.folders() == {"done": [f"form.RO-2026-{n:06d}.msg" for n in range(1, 8)]}
    assert [kind for kind, _, _ in rig.audit_kinds()] == ["sent"] * 7
    assert rig.audit.verify() == []


async def test_one_connection_per_partner_when_configured(rig: Rig) -> None:
    rig.configure(connections_per_partner=1)
    rig.partner.fail("rcpt", "452 4.5.3 too many recipients")  # RSET, and the session goes on
    for n in range(1, 4):
        rig.queue_form(f"RO-2026-{n:06d}")
    assert await rig.courier().run_once() == 3
    assert (rig.partner.max_concurrent, rig.partner.connections) == (1, 1)
    assert len(rig.partner.received) == 2


async def test_a_relay_carries_everything_when_configured(rig: Rig, tmp_path: Path) -> None:
    relay = FakePartner(tls=None)
    await relay.start()
    try:
        await rig.partner.stop()  # the partner's own server is not used
        rig.config = write_config(
            tmp_path,
            rig.pki,
            rig.partner.port,
            relay=f'[smtp.relay]\nhost = "127.0.0.1"\nport = {relay.port}\nrequire_tls = false\n',
        )
        ledger_id = rig.queue_form()
        assert await rig.courier().run_once() == 1
        [got] = relay.received
        assert (got.rcpt_tos, got.data, got.tls) == ((THEIRS,), PAYLOAD, False)
        assert rig.row(ledger_id).state == "sent"
    finally:
        await relay.stop()


async def test_run_serves_until_cancelled(rig: Rig) -> None:
    courier = rig.courier()
    wake = asyncio.Event()
    task = asyncio.create_task(courier.run(wake, poll=30.0))
    try:
        await asyncio.sleep(0.05)
        ledger_id = rig.queue_form()
        wake.set()
        for _ in range(200):
            if rig.row(ledger_id).state == "sent":
                break
            await asyncio.sleep(0.02)
        assert rig.row(ledger_id).state == "sent"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(rig.partner.received) == 1


async def test_run_does_not_spin_on_an_item_it_cannot_take(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.spool.put("form.RO-2026-000009", PAYLOAD, form_meta("RO-2026-000009", 9, START))
    claims: list[str] = []
    real = Spool.claim

    def counting(self: Spool, keys: Iterable[str]) -> Any:
        keys = list(keys)
        claims.extend(keys)
        return real(self, keys)

    monkeypatch.setattr(Spool, "claim", counting)
    task = asyncio.create_task(rig.courier().run(asyncio.Event(), poll=0.1))
    await asyncio.sleep(0.35)  # a real wait: how often the loop looks, not a deadline
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 2 <= len(claims) <= 6  # once a poll, not in a busy loop
    assert rig.folders() == {"new": ["form.RO-2026-000009.msg"]}


async def test_a_cancelled_pass_puts_its_items_back(rig: Rig) -> None:
    rig.configure(connections_per_partner=1)
    rig.partner.data_delay = 30.0  # the partner takes its time over the 250
    for n in range(1, 4):
        rig.queue_form(f"RO-2026-{n:06d}")
    task = asyncio.create_task(rig.courier().run_once())
    for _ in range(200):
        if "DATA" in rig.partner.commands:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the message is in, its 250 pending
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.folders() == {"new": [f"form.RO-2026-{n:06d}.msg" for n in range(1, 4)]}
    assert all("attempts" not in meta_of(rig, f"form.RO-2026-{n:06d}") for n in range(1, 4))


def test_next_due(tmp_path: Path, pki: Pki) -> None:
    config = write_config(tmp_path, pki, 2525)
    clock = FakeClock(START)
    spool = Spool(config.paths.spool / "outbound")
    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    schema.upgrade(engine)
    courier = Courier(
        config=config,
        ledger=Ledger(engine, clock),
        spool=spool,
        audit=AuditLog(engine, clock),
        clock=clock,
        catalogue=CATALOGUE,
    )
    assert courier.next_due() is None
    later = (START + timedelta(minutes=5)).isoformat()
    spool.put("form.A", b"", {"not_before": later})
    assert courier.next_due() == START + timedelta(minutes=5)
    spool.put("form.B", b"", {"not_before": (START + timedelta(minutes=2)).isoformat()})
    assert courier.next_due() == START + timedelta(minutes=2)
    spool.put("form.C", b"", {})
    assert courier.next_due() == START
    engine.dispose()


def test_a_missing_partner_ca_is_a_configuration_error(tmp_path: Path, pki: Pki) -> None:
    config = write_config(tmp_path, pki, 2525)
    partner = replace(config.partners[0], tls_ca=tmp_path / "missing.pem")
    config = replace(config, partners=(partner,))
    clock = FakeClock(START)
    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    with pytest.raises(ConfigError, match=r"partners\[0\]\.tls_ca"):
        Courier(
            config=config,
            ledger=Ledger(engine, clock),
            spool=Spool(tmp_path / "s"),
            audit=AuditLog(engine, clock),
            clock=clock,
            catalogue=CATALOGUE,
        )
    engine.dispose()


# ---------------------------------------------------------------------------------- kept sessions


async def settled(condition: Any) -> None:
    """The partner's side catches up (a session closed, a QUIT handled): a few turns of the loop."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the partner's side did not settle")


def first_try_sent(rig: Rig, ledger_id: int, key: str) -> bool:
    """Sent, and by no attempt counted against it: nothing deferred, no error kept."""
    events = [kind for _, kind, _ in rig.ledger.events_of(ledger_id)]
    meta = meta_of(rig, key)
    return (
        rig.row(ledger_id).state == "sent"
        and events == ["queued", "sent"]
        and not any(name in meta for name in ("attempts", "last_error"))
    )


async def test_passes_reuse_the_sessions_kept_from_the_last_one(rig: Rig) -> None:
    courier = rig.courier()
    first = rig.queue_form("RO-2026-000001")
    assert await courier.run_once() == 1
    assert (courier.idle_sessions(), rig.partner.open_sessions) == (1, 1)  # kept, not QUIT
    rig.clock.advance(timedelta(seconds=20))
    second = rig.queue_form("RO-2026-000002")
    assert await courier.run_once() == 1
    assert rig.partner.connections == 1  # one TCP connection, one handshake for both passes
    assert rig.partner.commands == ["STARTTLS"] + ["MAIL", "RCPT", "DATA"] * 2
    assert (rig.partner.noops, rig.partner.quits) == (1, 0)  # checked before it was used again
    assert [r.tls for r in rig.partner.received] == [True, True]
    assert first_try_sent(rig, first, "form.RO-2026-000001")
    assert first_try_sent(rig, second, "form.RO-2026-000002")
    await courier.close()
    await settled(lambda: rig.partner.open_sessions == 0)
    assert (courier.idle_sessions(), rig.partner.quits) == (0, 1)


async def test_a_session_the_partner_closed_while_idle_costs_the_message_nothing(
    rig: Rig,
) -> None:
    courier = rig.courier()
    rig.queue_form("RO-2026-000001")
    assert await courier.run_once() == 1
    rig.partner.close_sessions()  # the partner's idle timeout
    await settled(lambda: rig.partner.open_sessions == 0)
    second = rig.queue_form("RO-2026-000002")
    assert await courier.run_once() == 1
    assert rig.partner.connections == 2
    assert len(rig.partner.received) == 2
    assert first_try_sent(rig, second, "form.RO-2026-000002")
    assert rig.audit.verify() == []


async def test_a_kept_session_that_fails_its_check_is_replaced_and_the_lane_goes_on(
    rig: Rig,
) -> None:
    courier = rig.courier()
    rig.queue_form("RO-2026-000001")
    assert await courier.run_once() == 1
    rig.partner.fail("noop", "421 4.4.2 mx.partner.example idle too long")
    second = rig.queue_form("RO-2026-000002")
    assert await courier.run_once() == 1
    assert rig.partner.noops == 1
    assert rig.partner.connections == 2  # the one that failed its check, then a new one
    assert len(rig.partner.received) == 2
    assert first_try_sent(rig, second, "form.RO-2026-000002")


async def test_a_kept_session_cut_at_mail_after_its_check_costs_the_message_nothing(
    rig: Rig,
) -> None:
    courier = rig.courier()
    rig.queue_form("RO-2026-000001")
    assert await courier.run_once() == 1
    rig.partner.fail("mail", DROP)  # it answered NOOP, then hangs up as MAIL comes
    second = rig.queue_form("RO-2026-000002")
    assert await courier.run_once() == 1
    assert (rig.partner.noops, rig.partner.connections) == (1, 2)
    assert rig.partner.commands[-5:] == ["MAIL", "STARTTLS", "MAIL", "RCPT", "DATA"]
    assert first_try_sent(rig, second, "form.RO-2026-000002")


async def test_idle_sessions_are_closed_once_kept_long_enough(rig: Rig) -> None:
    rig.configure(keep_sessions="PT30S")
    courier = rig.courier()
    for n in range(1, 4):
        rig.queue_form(f"RO-2026-{n:06d}")
    rig.partner.data_delay = 0.05  # both sessions of the lane open
    assert await courier.run_once() == 3
    assert courier.idle_sessions() == 2 == rig.partner.open_sessions
    rig.clock.advance(timedelta(seconds=29))
    assert await courier.expire_idle() == 0
    assert rig.partner.open_sessions == 2
    rig.clock.advance(timedelta(seconds=1))
    assert await courier.expire_idle() == 2
    await settled(lambda: rig.partner.open_sessions == 0)
    assert (courier.idle_sessions(), rig.partner.quits) == (0, 2)  # politely, with QUIT
    rig.queue_form("RO-2026-000004")
    assert await courier.run_once() == 1
    assert rig.partner.connections == 3  # a new one: the old ones are gone


async def test_a_session_kept_too_long_is_not_used_even_before_it_is_expired(rig: Rig) -> None:
    courier = rig.courier()
    rig.queue_form("RO-2026-000001")
    assert await courier.run_once() == 1
    rig.clock.advance(timedelta(minutes=1))  # nobody called expire_idle meanwhile
    rig.queue_form("RO-2026-000002")
    assert await courier.run_once() == 1
    assert (rig.partner.connections, rig.partner.noops, rig.partner.quits) == (2, 0, 1)


async def test_no_session_is_kept_when_keep_sessions_is_zero(rig: Rig) -> None:
    rig.configure(keep_sessions="PT0S")
    courier = rig.courier()
    for n in range(1, 3):
        rig.queue_form(f"RO-2026-{n:06d}")
        assert await courier.run_once() == 1
        assert courier.idle_sessions() == 0
        await settled(lambda: rig.partner.open_sessions == 0)
    assert (rig.partner.connections, rig.partner.quits) == (2, 2)


async def test_a_kept_session_serves_only_its_own_partner(rig: Rig) -> None:
    courier = rig.courier()  # both partners' servers are the same port here
    rig.queue_form("RO-2026-000001")
    assert await courier.run_once() == 1
    theirs = rig.queue_form(
        "RO-2026-000002", recorded_for="SE-SIRENE", partner="SE-SIRENE", to="sirene@se.example"
    )
    assert await courier.run_once() == 1
    assert rig.partner.connections == 2  # NO-SIRENE's session stays NO-SIRENE's
    assert rig.partner.received[1].rcpt_tos == ("sirene@se.example",)
    assert rig.row(theirs).state == "sent"
    assert courier.idle_sessions() == 2


async def test_a_cancelled_pass_keeps_no_session(rig: Rig) -> None:
    courier = rig.courier()
    rig.queue_form("RO-2026-000001")
    assert await courier.run_once() == 1
    rig.partner.data_delay = 30.0
    rig.queue_form("RO-2026-000002")
    task = asyncio.create_task(courier.run_once())
    for _ in range(200):
        if rig.partner.commands.count("DATA") == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert courier.idle_sessions() == 0
    await settled(lambda: rig.partner.open_sessions == 0)


async def test_stopping_the_courier_closes_its_kept_sessions(rig: Rig) -> None:
    courier = rig.courier()
    wake = asyncio.Event()
    task = asyncio.create_task(courier.run(wake, poll=30.0))
    try:
        ledger_id = rig.queue_form()
        wake.set()
        await settled(lambda: rig.row(ledger_id).state == "sent")
        await settled(lambda: courier.idle_sessions() == 1)
        assert rig.partner.open_sessions == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert courier.idle_sessions() == 0
    await settled(lambda: rig.partner.open_sessions == 0)
    assert rig.partner.quits == 1


# ---------------------------------------------------------------------------------- its history


async def test_the_delivery_history_tells_each_attempt_the_receipt_and_the_answer(
    rig: Rig,
) -> None:
    """What the message view of a message of ours shows, from what delivery, the receipt
    matching and the reply matching wrote (on SQLite and PostgreSQL)."""
    from gateway.store import delivery_history  # noqa: PLC0415
    from gateway.tracking.matching import Matcher  # noqa: PLC0415

    ledger_id = rig.queue_form()
    rig.partner.fail("rcpt", "450 4.2.1 mailbox busy", times=1)
    courier = rig.courier()
    assert await courier.run_once() == 1
    rig.clock.advance(timedelta(minutes=1))
    assert await courier.run_once() == 1
    assert rig.row(ledger_id).state == "sent"

    def inbound(form: str, reference: str, **fields: Any) -> MessageRow:
        return rig.row(
            rig.record(
                NewMessage(
                    direction="inbound",
                    partner="NO-SIRENE",
                    channel="sirene",
                    form=form,
                    reference=reference,
                    message_id=f"<{reference}@no.example>",
                    priority="normal",
                    content_sha256="e" * 64,
                    raw_sha256="f" * 64,
                    state=InboundState.RECEIVED,
                    spool_key=f"in.{reference}",
                    desk="sirene",
                    **fields,
                )
            )
        )

    matcher = Matcher(rig.ledger, rig.audit, CATALOGUE)
    rig.clock.advance(timedelta(minutes=3))
    receipt = inbound("ACK", "NO-2026-000500", signer="F" * 40)
    matcher.receipt_received(receipt, "RO-2026-000001", "c" * 64)
    rig.clock.advance(timedelta(hours=2))
    answer = inbound("M", "NO-2026-000501", in_reply_to="RO-2026-000001")
    matcher.reply_received(answer)
    inbound("M", "NO-2026-000502", in_reply_to="RO-2026-000777")  # answers another

    with rig.ledger.reading() as tx:
        found = delivery_history.history(
            tx, ledger_id, partner="NO-SIRENE", reference="RO-2026-000001", receipt_form="ACK"
        )
    first, second = found.attempts
    assert (first.at, first.outcome, first.number) == (START, "deferred", 1)
    # The codes and the stage: the server's words may quote the form, so only the desk's
    # notice carries them, never the ledger.
    assert first.reply == "450 4.2.1 at RCPT"
    assert first.next_try == START + timedelta(minutes=1)
    assert (second.at, second.outcome, second.next_try) == (
        START + timedelta(minutes=1),
        "sent",
        None,
    )
    assert second.reply.startswith("250 ")
    assert not found.quarantined and found.queue == ()
    [got] = found.receipts
    assert (got.reference, got.ledger_id, got.signer, got.again) == (
        "NO-2026-000500",
        receipt.id,
        "F" * 40,
        False,
    )
    assert got.at == START + timedelta(minutes=4)
    [answered] = found.answers
    assert (answered.ledger_id, answered.form, answered.reference) == (
        answer.id,
        "M",
        "NO-2026-000501",
    )
    assert rig.row(ledger_id).state == "answered"


async def test_a_rejected_message_waits_in_quarantine_until_an_operator_acts(rig: Rig) -> None:
    from gateway.store import delivery_history  # noqa: PLC0415

    ledger_id = rig.queue_form()
    rig.partner.fail("rcpt", "550 5.1.1 no such mailbox")
    assert await rig.courier().run_once() == 1
    assert rig.row(ledger_id).state == "rejected"

    def read() -> delivery_history.DeliveryHistory:
        with rig.ledger.reading() as tx:
            return delivery_history.history(
                tx, ledger_id, partner="NO-SIRENE", reference="RO-2026-000001", receipt_form="ACK"
            )

    found = read()
    [attempt] = found.attempts
    assert (attempt.outcome, attempt.quarantined) == ("rejected", True)
    assert attempt.reply == "550 5.1.1 at RCPT"
    assert found.quarantined and found.receipts == () and found.answers == ()
    rig.clock.advance(timedelta(minutes=5))
    with writing(rig.engine) as tx:  # as gateway.service.queues writes a release
        rig.ledger.set_state_in(
            tx,
            ledger_id,
            OutboundState.QUEUED,
            "released by olaf: address fixed",
            expected=(OutboundState.REJECTED,),
        )
    found = read()
    assert not found.quarantined
    assert [(a.action, a.detail) for a in found.queue] == [
        ("released", "released by olaf: address fixed")
    ]
