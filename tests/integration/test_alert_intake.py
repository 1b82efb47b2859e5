"""The alert register over forms taken in by the real intake (SMTP with STARTTLS, OpenPGP, the
validation, the ledger and its index in one transaction), on SQLite and PostgreSQL: a partner's
G (urgent: the duty desk) and J (the SIRENE desk) about one alert make one register line with a
hit and an update, with nothing written for the register but what intake writes; a handler of
the SIRENE desk sees the alert with her desk's exchange only; a refused form adds nothing."""

from __future__ import annotations

import re

from integration.inboundkit import FORM, World, message, send, settle
from sqlalchemy import func, select

from gateway.access.accesslog import AccessLog
from gateway.access.roles import Principal, Role
from gateway.core.config import BUILTIN_FORMS
from gateway.service import alerts
from gateway.service.server import Gateway
from gateway.store.ledger import alert_register

ALERT = "RO0000000000123456"
# The sample J without its Attachment list (sent without the files it names).
J_FORM = re.sub(
    rb"\s*<Attachment>.*?</Attachment>",
    b"",
    (BUILTIN_FORMS / "samples" / "J" / "valid-factual-date-of-birth.xml").read_bytes(),
    flags=re.S,
)


async def test_forms_taken_in_make_the_register(world: World, gateway: Gateway) -> None:
    for form in (FORM, J_FORM):
        code, text = await send(world, gateway, message(world, form))
        assert code == 250, text
    # An invalid form about the same alert: refused before the 250, so never in the register.
    invalid = FORM.replace(b"NO-2026-000123", b"NO-2026-000999").replace(
        b"<Sex>", b"<Sex>X</Sex><Sex>"
    )
    assert (await send(world, gateway, message(world, invalid)))[0] == 550
    await settle(gateway)

    services = gateway.services
    access_log = AccessLog(services.audit)
    supervisor = Principal("sue", frozenset({Role.SUPERVISOR}))
    [line] = alerts.listing(services, access_log, supervisor).alerts
    assert (line.shown, line.kind, line.partners) == (ALERT, "SIS art. 26", ("NO-SIRENE",))
    assert [(item.exchange.form, item.what, item.exchange.desk) for item in line.exchanges] == [
        ("G", "hit", "duty"),
        ("J", "update", "sirene"),
    ]
    assert line.desk == "sirene"  # the desk its last received message reached
    with services.ledger.reading() as tx:
        kept = tx.connection.execute(select(func.count()).select_from(alert_register))
        assert kept.scalar_one() == 0  # nothing of the register's own: intake wrote it all

    handler = Principal("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}))
    shown = alerts.show(services, access_log, handler, ALERT)
    assert [item.exchange.form for item in shown.exchanges] == ["J"] and shown.hidden == 1
    other = Principal("ivo", frozenset({Role.HANDLER}), frozenset({"interpol"}))
    assert alerts.listing(services, access_log, other).alerts == ()
