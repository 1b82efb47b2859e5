"""Desk copies by LMTP to a real Dovecot, started by the test (tests/dovecotkit.py): each copy
once, found over IMAP before a re-delivery (also when a handler filed it in another folder),
a 5xx set aside for good, a 4xx and an absent Dovecot tried again, nothing lost."""

from __future__ import annotations

import contextlib
import imaplib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dovecotkit import DESK_PASSWORD, Dovecot, running_dovecot
from integration.inboundkit import (
    FORM,
    World,
    gateway_config,
    message,
    running_gateway,
    send,
    settle,
)

from gateway.core import config as configuration
from gateway.core.config import Desk, DeskDelivery
from gateway.core.errors import DeskRefused, DeskUnavailable
from gateway.desks.lmtp import LmtpSink
from gateway.desks.notices import Notice, post
from gateway.desks.sink import DeskCopy
from gateway.service.server import Gateway
from gateway.store import lookups
from gateway.store.ledger import MessageRow
from gateway.store.states import InboundState

DOMAIN = "gateway.ro.example"
QUOTA = """
mail_plugins = $mail_plugins quota
lmtp_rcpt_check_quota = yes
quota_full_tempfail = yes
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=1K
}
"""


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot(("sirene", "duty")) as running:
        yield running


def settings(dovecot: Dovecot) -> DeskDelivery:
    return DeskDelivery(
        method="lmtp",
        lmtp=str(dovecot.lmtp_socket),
        imap=f"127.0.0.1:{dovecot.imap_port}",
        imap_user="gateway",
        imap_password_file=dovecot.password_file,
        imap_tls=False,
    )


def copy(desk: Desk, number: int) -> DeskCopy:
    name = f"{number}.NO-2026-{number:06d}"
    message_id = f"<desk.{name}@{DOMAIN}>"
    data = (
        f"From: NO-SIRENE <sirene@no.example>\nTo: desk\nMessage-ID: {message_id}\n"
        f"Subject: SIRENE G from NO-SIRENE NO-2026-{number:06d}\n\n"
        ".a line that starts with a dot\nform text\n"
    ).encode()
    return DeskCopy(desk, name, message_id, data)


def desk(tmp_path: Path, name: str, mailbox: str | None = None) -> Desk:
    return Desk(name=name, maildir=tmp_path / name, mailbox=mailbox)


def test_each_copy_once_and_a_redelivery_finds_it_first(dovecot: Dovecot, tmp_path: Path) -> None:
    sirene, duty = desk(tmp_path, "sirene"), desk(tmp_path, "duty")
    copies = [copy(sirene, 101), copy(sirene, 102), copy(duty, 103)]
    sink = LmtpSink(settings(dovecot), DOMAIN)

    assert sink.deliver(copies, unseen={c.name for c in copies}) == [None, None, None]
    assert dovecot.message_ids("sirene") == {copies[0].message_id: 1, copies[1].message_id: 1}
    assert dovecot.message_ids("duty") == {copies[2].message_id: 1}
    body = dovecot.fetch("sirene", copies[0].message_id)
    assert b"\r\n.a line that starts with a dot\r\n" in body  # dot-stuffing undone by Dovecot

    # A handler files one copy away; then a retry (no copy named unseen) finds every copy.
    handler = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
    handler.login("sirene", DESK_PASSWORD)
    handler.create("Filed")
    handler.select("INBOX")
    _, found = handler.search(None, "HEADER", "Message-ID", f'"{copies[0].message_id}"')
    handler.copy(found[0], "Filed")
    handler.store(found[0], "+FLAGS", "\\Deleted")
    handler.expunge()
    handler.logout()

    assert sink.deliver(copies) == [None, None, None]
    assert dovecot.message_ids("sirene") == {copies[1].message_id: 1}
    assert dovecot.message_ids("duty") == {copies[2].message_id: 1}

    # The control: without the look (the copy named unseen) Dovecot takes a second copy.
    assert sink.deliver([copies[2]], unseen={copies[2].name}) == [None]
    assert dovecot.message_ids("duty") == {copies[2].message_id: 2}


def test_an_unknown_mailbox_is_refused_for_good_and_the_others_go_through(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    missing = desk(tmp_path, "europol", mailbox="europol")
    copies = [copy(missing, 201), copy(desk(tmp_path, "sirene"), 202)]
    outcome = LmtpSink(settings(dovecot), DOMAIN).deliver(copies, unseen={c.name for c in copies})
    assert isinstance(outcome[0], DeskRefused)
    assert "550 5.1.1" in str(outcome[0])
    assert outcome[1] is None
    assert dovecot.message_ids("sirene")[copies[1].message_id] == 1
    # A retry looks over IMAP first: there too the mailbox is none, and that is lasting.
    (again,) = LmtpSink(settings(dovecot), DOMAIN).deliver(copies[:1])
    assert isinstance(again, DeskRefused)
    assert "no mailbox europol" in str(again)


def test_dovecot_away_is_transient_and_nothing_is_delivered_unlooked(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    sirene = desk(tmp_path, "sirene")
    no_lmtp = replace(settings(dovecot), lmtp=str(tmp_path / "no-such-socket"))
    outcome = LmtpSink(no_lmtp, DOMAIN).deliver([copy(sirene, 301)], unseen={"301.NO-2026-000301"})
    assert isinstance(outcome[0], DeskUnavailable)

    # IMAP away: a copy that may be there already is not delivered blind.
    no_imap = replace(settings(dovecot), imap="127.0.0.1:1")
    outcome = LmtpSink(no_imap, DOMAIN).deliver([copy(sirene, 302)])
    assert isinstance(outcome[0], DeskUnavailable)
    # A wrong master password: the same, the login's text not in the error.
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    outcome = LmtpSink(replace(settings(dovecot), imap_password_file=wrong), DOMAIN).deliver(
        [copy(sirene, 303)]
    )
    assert isinstance(outcome[0], DeskUnavailable)
    assert "sirene*gateway" not in str(outcome[0])
    ids = dovecot.message_ids("sirene")
    assert not any(f"NO-2026-00030{n}" in key for key in ids for n in (1, 2, 3))


def test_a_full_mailbox_is_a_temporary_failure(tmp_path: Path) -> None:
    with running_dovecot(("sirene",), extra=QUOTA) as full:
        big = copy(desk(tmp_path, "sirene"), 401)
        big = replace(big, data=big.data + b"x" * 4096 + b"\n")
        outcome = LmtpSink(settings(full), DOMAIN).deliver([big], unseen={big.name})
        assert isinstance(outcome[0], DeskUnavailable)
        assert " 4" in str(outcome[0]).split(":", 1)[1][:5]  # a 4xx reply
        assert full.message_ids("sirene") == {}


# ------------------------------------------------------------- through a running gateway


def lmtp_gateway(
    world: World, folder: Path, dovecot: Dovecot
) -> contextlib.AbstractAsyncContextManager[Gateway]:
    return running_gateway(world, folder, extra=dovecot.desk_config())


def numbered(number: int) -> bytes:
    return FORM.replace(
        b"<Reference>NO-2026-000123</Reference>",
        f"<Reference>NO-2026-{number:06d}</Reference>".encode(),
    )


def received_row(gateway: Gateway, reference: str) -> MessageRow:
    with gateway.ledger.reading() as tx:
        ledger_id = lookups.message_id(tx, "inbound", "NO-SIRENE", reference)
        assert ledger_id is not None
        return gateway.ledger.get_in(tx, ledger_id)


async def test_a_received_form_reaches_its_dovecot_desk_once(
    world: World, dovecot: Dovecot, tmp_path: Path
) -> None:
    async with lmtp_gateway(world, tmp_path, dovecot) as gateway:
        code, _ = await send(world, gateway, message(world, numbered(501)))
        assert code == 250
        await settle(gateway)
        row = received_row(gateway, "NO-2026-000501")
        assert row and row.state == InboundState.DELIVERED
        wanted = f"<desk.{row.id}.NO-2026-000501@{DOMAIN}>"
        assert row.desk == "duty"  # the sample form is urgent: the duty desk's, by the routes
        assert dovecot.message_ids("duty")[wanted] == 1
        copy_bytes = dovecot.fetch("duty", wanted)
        assert b"X-IPC-Reference: NO-2026-000501" in copy_bytes
        assert not (tmp_path / "desks" / "duty" / "new").exists()  # no Maildir copy


async def test_a_refused_copy_is_set_aside_not_lost(world: World, tmp_path: Path) -> None:
    with running_dovecot(("sirene",)) as no_duty:  # no mailbox for the duty desk
        async with lmtp_gateway(world, tmp_path, no_duty) as gateway:
            code, _ = await send(world, gateway, message(world, numbered(601)))
            assert code == 250
            await settle(gateway)
            quarantined = list(gateway.inbound.quarantine.iterdir())
            assert len(quarantined) == 1
            row = received_row(gateway, "NO-2026-000601")
            assert row and row.state == InboundState.RECEIVED
            assert no_duty.message_ids("sirene") == {}
            assert (
                b"DeskRefused: LMTP RCPT TO: 550 5.1.1"
                in quarantined[0].read_bytes().split(b"\n", 1)[0]
            )


def test_a_notice_reaches_the_dovecot_desk_once(
    world: World, dovecot: Dovecot, tmp_path: Path
) -> None:
    path = gateway_config(world, tmp_path)
    path.write_text(path.read_text() + dovecot.desk_config())
    config = configuration.load(path)
    notice = Notice(kind="reminder", key="reminder.77.1", subject="Reminder", body="due soon\n")
    for _ in range(2):  # posted twice (a sweep retried): one copy in each place
        post(config, "sirene", notice, datetime(2026, 12, 6, 12, 0, tzinfo=UTC))
    assert dovecot.message_ids("sirene")[f"<notice.reminder.77.1@{DOMAIN}>"] == 1
    assert [p.name for p in (tmp_path / "desks" / "sirene" / "new").iterdir()] == [
        "notice.reminder.77.1"
    ]


def test_a_notice_dovecot_refuses_stays_in_the_maildir(world: World, tmp_path: Path) -> None:
    with running_dovecot(("duty",)) as no_sirene:
        path = gateway_config(world, tmp_path)
        path.write_text(path.read_text() + no_sirene.desk_config())
        config = configuration.load(path)
        kept = tmp_path / "imap.password"  # outlives the Dovecot folder
        kept.write_bytes(no_sirene.password_file.read_bytes())
        settings = replace(config.desk_delivery, imap_password_file=kept)
        config = replace(config, desk_delivery=settings)
        notice = Notice(kind="reminder", key="reminder.78.1", subject="Reminder", body="due\n")
        post(config, "sirene", notice, datetime(2026, 12, 6, 12, 0, tzinfo=UTC))
        assert (tmp_path / "desks" / "sirene" / "new" / "notice.reminder.78.1").is_file()
    # Dovecot away: the Maildir copy is made, and the caller told to post again later.
    with pytest.raises(DeskUnavailable):
        post(config, "sirene", replace(notice, key="reminder.79.1"), datetime.now(UTC))
    assert (tmp_path / "desks" / "sirene" / "new" / "notice.reminder.79.1").is_file()


def test_lmtp_and_imap_over_tcp_use_starttls(world: World, tmp_path: Path) -> None:
    key = world.root / "gateway.key"  # the world's certificate is for 127.0.0.1
    with running_dovecot(("sirene",), tls=(world.tls_cert, key)) as secured:
        tcp = replace(
            settings(secured),
            lmtp=f"127.0.0.1:{secured.lmtp_port}",
            imap_tls=True,
            tls_ca=world.tls_cert,
        )
        one = copy(desk(tmp_path, "sirene"), 801)
        assert LmtpSink(tcp, DOMAIN).deliver([one], unseen={one.name}) == [None]
        assert LmtpSink(tcp, DOMAIN).deliver([one]) == [None]  # looked for over IMAPS: found
        assert secured.message_ids("sirene") == {one.message_id: 1}
        assert "TLS" in secured.log.read_text()  # the gateway's IMAP login was over TLS

        # A certificate that does not chain to the CA given: nothing sent, by either protocol.
        untrusted = replace(tcp, tls_ca=None)
        other = copy(desk(tmp_path, "sirene"), 802)
        (outcome,) = LmtpSink(replace(untrusted, imap_tls=False), DOMAIN).deliver(
            [other], unseen={other.name}
        )
        assert isinstance(outcome, DeskUnavailable) and "CERTIFICATE_VERIFY_FAILED" in str(outcome)
        (outcome,) = LmtpSink(untrusted, DOMAIN).deliver([other])
        assert isinstance(outcome, DeskUnavailable)
        assert secured.message_ids("sirene") == {one.message_id: 1}


def test_lmtp_over_tcp_without_starttls_is_not_sent_in_clear(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    tcp = replace(settings(dovecot), lmtp=f"127.0.0.1:{dovecot.lmtp_port}")
    one = copy(desk(tmp_path, "sirene"), 901)
    (outcome,) = LmtpSink(tcp, DOMAIN).deliver([one], unseen={one.name})
    assert isinstance(outcome, DeskUnavailable) and "not sent in clear" in str(outcome)
    assert one.message_id not in dovecot.message_ids("sirene")
    # lmtp_tls = false (loopback, or a private network the operator vouches for): sent.
    clear = replace(tcp, lmtp_tls=False)
    assert LmtpSink(clear, DOMAIN).deliver([one], unseen={one.name}) == [None]
    assert dovecot.message_ids("sirene")[one.message_id] == 1
