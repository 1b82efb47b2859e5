"""The cross-check at arrival, end to end: a real gateway on port 0, real STARTTLS, real gpg,
SQLite and PostgreSQL. A second message about the same passport and person shows the first on
its desk copy and on its message view; a desk sees described only the hits on its own
messages (the others counted); an unrelated message has none; the check is recorded (its hits
in the ledger, an audit line without personal data) and its view access-logged."""

from __future__ import annotations

import contextlib
import dataclasses
import email.message
from collections.abc import Iterator
from datetime import timedelta

from accesskit import CHEAP, PASSWORD
from integration.inboundkit import FORM, World, desk_messages, message, send, settle
from sqlalchemy import select
from starlette.testclient import TestClient
from webkit import login

from gateway.access import accesslog, totp
from gateway.access.passwords import Passwords
from gateway.access.roles import Principal, Role
from gateway.access.setup import open_access
from gateway.core.config import RetentionRule
from gateway.service.cases import Cases
from gateway.service.server import Gateway
from gateway.store import case_rows
from gateway.store.ledger import crosscheck_hits
from gateway.store.states import DeadlineState
from gateway.tracking.retention import Purger
from gateway.web.app import build_app

ALERT = b"RO0000000000123456"
SUPERVISOR = Principal("sam", frozenset({Role.SUPERVISOR}))
NORMAL = b"<Priority><Normal/></Priority>"
URGENT = (
    b"<Priority><Urgent><UrgencyReason>Person held at the border; decision on detention needed"
    b" within hours.</UrgencyReason></Urgent></Priority>"
)


def form(
    reference: str,
    family: str,
    given: str,
    number: str,
    *,
    born: str = "1980-01-01",
    alert: bytes = ALERT,
    urgent: bool = True,
) -> bytes:
    """The G sample about another person, passport and alert; urgent goes to the duty desk,
    normal to the sirene desk."""
    text = (
        FORM.replace(b"NO-2026-000123", reference.encode())
        .replace(b"<FamilyName>EXAMPLE</FamilyName>", f"<FamilyName>{family}</FamilyName>".encode())
        .replace(b"<GivenName>Test</GivenName>", f"<GivenName>{given}</GivenName>".encode())
        .replace(b"<Number>X0000000</Number>", f"<Number>{number}</Number>".encode())
        .replace(
            b"<DateOfBirth>1980-01-01</DateOfBirth>", f"<DateOfBirth>{born}</DateOfBirth>".encode()
        )
        .replace(ALERT, alert)
    )
    assert URGENT in text
    return text if urgent else text.replace(URGENT, NORMAL)


def text_of(copy: email.message.EmailMessage) -> str:
    part = next(part for part in copy.walk() if part.get_content_type() == "text/plain")
    return str(part.get_content())


def copy_of(gateway: Gateway, desk: str, reference: str) -> str:
    [found] = [m for m in desk_messages(gateway, desk) if m["X-IPC-Reference"] == reference]
    return text_of(found)


def hits_of(gateway: Gateway, ledger_id: int) -> list[tuple[int, str, str, str | None]]:
    with gateway.engine.connect() as connection:
        rows = connection.execute(
            select(
                crosscheck_hits.c.earlier_id,
                crosscheck_hits.c.kind,
                crosscheck_hits.c.shown,
                crosscheck_hits.c.earlier_desk,
            )
            .where(crosscheck_hits.c.message_id == ledger_id)
            .order_by(crosscheck_hits.c.id)
        ).all()
    return sorted((row.earlier_id, row.kind, row.shown, row.earlier_desk) for row in rows)


@contextlib.contextmanager
def console(gateway: Gateway) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The console over the running gateway's own services, with a handler of each desk, a
    supervisor and an operator (PASSWORD each; the second factor enrolled for the two who need
    it): the client and their codes."""
    services = gateway.services
    access = open_access(services.config, services.ledger, services.clock, Passwords(CHEAP))
    access.accounts.add("dana", frozenset({Role.HANDLER}), frozenset({"duty"}), PASSWORD)
    access.accounts.add("sam", frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
    access.accounts.add("sue", frozenset({Role.SUPERVISOR}), frozenset(), PASSWORD)
    access.accounts.add("olaf", frozenset({Role.OPERATOR}), frozenset(), PASSWORD)
    codes = {
        name: totp.code_at(access.accounts.enrol_totp(name).secret, services.clock.now())
        for name in ("sue", "olaf")
    }
    with TestClient(build_app(services, access)) as client:
        yield client, codes


def ledger_id(gateway: Gateway, reference: str) -> int:
    row = gateway.ledger.find("inbound", "NO-SIRENE", reference)
    assert row is not None
    return row.id


async def test_a_second_message_about_the_same_passport_and_person_shows_the_first(
    world: World, gateway: Gateway
) -> None:
    first = form("NO-2026-000701", "IVANOV", "Ivan", "AB 123-456")
    # The same person spelled otherwise, the same passport written otherwise.
    second = form("NO-2026-000702", "IWANOW", "Iwan", "ab123456")
    assert (await send(world, gateway, message(world, first)))[0] == 250
    await settle(gateway)
    assert (await send(world, gateway, message(world, second)))[0] == 250
    await settle(gateway)
    one, two = ledger_id(gateway, "NO-2026-000701"), ledger_id(gateway, "NO-2026-000702")

    assert "Earlier exchanges" not in copy_of(gateway, "duty", "NO-2026-000701")
    assert hits_of(gateway, one) == []
    copy = copy_of(gateway, "duty", "NO-2026-000702")
    day = f"{gateway.ledger.get(one).created_at:%Y-%m-%d}"
    # The two name the same SIS alert: the second formed a case with the first at its
    # acceptance, which its hits name.
    with gateway.ledger.reading() as tx:
        case_id = case_rows.case_of_message(tx, one)
        assert case_id is not None and case_rows.case_of_message(tx, two) == case_id
        case = case_rows.get(tx, case_id)
    assert case is not None
    place = f"in a G form from NO-SIRENE, {day}, ledger {one}, case {case.number} (open)"
    earlier = copy.split("Earlier exchanges:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert earlier == [
        f"  person Ivan IVANOV, born 1980-01-01 {place}",
        f"  passport AB 123-456 {place}",
        f"  sis-alert RO0000000000123456 {place}",
    ]
    assert hits_of(gateway, two) == [
        (one, "document", "AB 123-456", "duty"),
        (one, "person", "Ivan IVANOV", "duty"),
        (one, "reference", "RO0000000000123456", "duty"),
    ]

    audit = [(e.kind, e.reference, e.reason) for e in gateway.audit.entries()]
    assert ("delivered", "NO-2026-000701", "desk duty") in audit
    on_the_desk = "desk duty; earlier exchanges: 3 on the desk, 0 elsewhere"
    assert ("delivered", "NO-2026-000702", on_the_desk) in audit
    assert not any("IVANOV" in str(entry) or "AB 123" in str(entry) for entry in audit)

    with console(gateway) as (client, _codes):
        assert login(client, "dana")[0] == 303
        page = client.get(f"/messages/{two}")
        assert page.status_code == 200
        assert f'<a href="/messages/{one}">passport AB 123-456 in a G form' in page.text
        assert "earlier-hidden" not in page.text
    views = accesslog.read(gateway.ledger)
    assert [(v.user, v.reference) for v in views] == [("dana", "NO-2026-000702")]

    # The first message's retention ends: the hits that describe it go with it.
    later = gateway.clock.now() + timedelta(days=31)
    config = dataclasses.replace(gateway.config, retention=(RetentionRule(timedelta(days=30)),))
    purger = Purger(
        config=config,
        ledger=gateway.ledger,
        audit=gateway.audit,
        inbound=gateway.inbound,
        outbound=gateway.services.outbound,
    )
    # Nothing is due while their case is open and their replies owed.
    assert purger.purge(later).messages == 0
    Cases(gateway.ledger, gateway.audit).close(SUPERVISOR, case.number, "answered")
    with gateway.ledger.transaction() as tx:
        for ledger_id_ in (one, two):
            gateway.ledger.close_deadline_in(
                tx, ledger_id_, "reply", DeadlineState.CLOSED, "handled"
            )
    assert purger.purge(later).messages >= 2
    assert hits_of(gateway, two) == []


async def test_a_desk_sees_described_only_the_hits_on_its_own_messages(
    world: World, gateway: Gateway
) -> None:
    on_duty = form("NO-2026-000711", "NOWAK", "Jan", "PL 998877")
    on_sirene = form("NO-2026-000712", "Novák", "Jan", "PL-998877", urgent=False)
    assert (await send(world, gateway, message(world, on_duty)))[0] == 250
    await settle(gateway)
    assert (await send(world, gateway, message(world, on_sirene)))[0] == 250
    await settle(gateway)
    duty, sirene = ledger_id(gateway, "NO-2026-000711"), ledger_id(gateway, "NO-2026-000712")

    copy = copy_of(gateway, "sirene", "NO-2026-000712")
    section = copy.split("Earlier exchanges:\n", 1)[1].split("\n\n", 1)[0]
    # Counted, never described: not the other desk's values, nor where its message is.
    assert section == "  3 on other desks (not described here: a supervisor sees them)"
    assert f"ledger {duty}" not in copy and "Jan NOWAK" not in copy
    assert [hit[3] for hit in hits_of(gateway, sirene)] == ["duty", "duty", "duty"]

    with console(gateway) as (client, codes):
        assert login(client, "sam")[0] == 303
        page = client.get(f"/messages/{sirene}").text
        assert '<ul id="earlier">' not in page and f"/messages/{duty}" not in page
        assert "3 hits on messages you do not see." in page
        assert "Jan NOWAK" not in page
        client.cookies.clear()
        assert login(client, "sue", code=codes["sue"])[0] == 303
        page = client.get(f"/messages/{sirene}").text
        assert f'<a href="/messages/{duty}">passport PL 998877 in a G form' in page
        assert "earlier-hidden" not in page
        client.cookies.clear()
        assert login(client, "olaf", code=codes["olaf"])[0] == 303
        page = client.get(f"/messages/{sirene}").text  # metadata only: counted
        assert "3 hits (your role sees a message&#39;s metadata, not what matched)." in page
        assert '<ul id="earlier">' not in page and "PL 998877" not in page
    # Who read what: the handler and the supervisor read the form; the operator did not.
    views = accesslog.read(gateway.ledger)
    assert [(v.user, v.reference) for v in views] == [
        ("sam", "NO-2026-000712"),
        ("sue", "NO-2026-000712"),
    ]


async def test_an_unrelated_message_has_no_hit(world: World, gateway: Gateway) -> None:
    first = form("NO-2026-000721", "LARSSON", "Erik", "N 1234567", born="1975-05-05")
    # Another person (a name alike, another date of birth), passport and alert.
    other = form(
        "NO-2026-000722",
        "ANDERSSON",
        "Erik",
        "N 7654321",
        born="1975-05-06",
        alert=b"RO0000000000999999",
    )
    assert (await send(world, gateway, message(world, first)))[0] == 250
    await settle(gateway)
    assert (await send(world, gateway, message(world, other)))[0] == 250
    await settle(gateway)
    assert "Earlier exchanges" not in copy_of(gateway, "duty", "NO-2026-000722")
    assert hits_of(gateway, ledger_id(gateway, "NO-2026-000722")) == []
    with console(gateway) as (client, _codes):
        assert login(client, "dana")[0] == 303
        page = client.get(f"/messages/{ledger_id(gateway, 'NO-2026-000722')}").text
        assert "Earlier exchanges" not in page


async def test_the_earlier_messages_of_one_case_are_one_hit_on_the_desk_copy(
    world: World, gateway: Gateway
) -> None:
    """Three messages about the same person, passport and alert form one case at acceptance:
    the third's copy says each value once, in the two earlier messages of that case."""
    references = ["NO-2026-000731", "NO-2026-000732", "NO-2026-000733"]
    for reference in references:
        sent = form(reference, "PETROV", "Pyotr", "RU 445566", born="1971-07-07")
        assert (await send(world, gateway, message(world, sent)))[0] == 250
        await settle(gateway)
    one, two, three = (ledger_id(gateway, reference) for reference in references)
    with gateway.ledger.reading() as tx:
        case_id = case_rows.case_of_message(tx, three)
        assert case_id is not None
        assert {case_rows.case_of_message(tx, one), case_rows.case_of_message(tx, two)} == {case_id}
        case = case_rows.get(tx, case_id)
    assert case is not None

    copy = copy_of(gateway, "duty", references[2])
    day = f"{gateway.ledger.get(two).created_at:%Y-%m-%d}"
    place = f"in 2 messages of case {case.number} (open), latest ledger {two}, from NO-SIRENE {day}"
    earlier = copy.split("Earlier exchanges:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert earlier == [
        f"  person Pyotr PETROV, born 1971-07-07 {place}",
        f"  passport RU 445566 {place}",
        f"  sis-alert RO0000000000123456 {place}",
    ]
    assert hits_of(gateway, three) == [
        (two, "document", "RU 445566", "duty"),
        (two, "person", "Pyotr PETROV", "duty"),
        (two, "reference", "RO0000000000123456", "duty"),
    ]
    audit = [(e.kind, e.reference, e.reason) for e in gateway.audit.entries()]
    on_the_desk = "desk duty; earlier exchanges: 3 on the desk, 0 elsewhere"
    assert ("delivered", references[2], on_the_desk) in audit
    with console(gateway) as (client, _codes):
        assert login(client, "dana")[0] == 303
        page = client.get(f"/messages/{three}")
        assert page.status_code == 200
        assert f'<a href="/messages/{two}">passport RU 445566 in 2 messages of case' in page.text
