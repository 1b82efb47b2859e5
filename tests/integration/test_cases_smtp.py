"""Cases end to end: forms taken in over SMTP are grouped in the group commit's transaction,
before the 250, on SQLite and PostgreSQL."""

from __future__ import annotations

from integration.inboundkit import FORM, World, message, send, settle

from gateway.service.cases import Cases
from gateway.service.server import Gateway


async def test_forms_received_over_smtp_with_the_same_alert_make_a_case(
    world: World, gateway: Gateway
) -> None:
    """End to end: two G forms of NO-SIRENE naming the same SIS alert, each taken in over SMTP
    (the grouping in the group commit's transaction, before the 250), end in one case."""
    for number in (601, 602):
        form = FORM.replace(
            b"<Reference>NO-2026-000123</Reference>",
            f"<Reference>NO-2026-000{number}</Reference>".encode(),
        )
        assert (await send(world, gateway, message(world, form)))[0] == 250
    await settle(gateway)
    cases = Cases(gateway.ledger, gateway.audit)
    [case] = cases.listed(None)
    view = cases.view(None, case.number)
    assert [(m.reference, m.how) for m in view.members] == [
        ("NO-2026-000601", "alert-reference"),
        ("NO-2026-000602", "alert-reference"),
    ]
    [first] = gateway.ledger.by_reference("NO-2026-000601")
    assert (case.desk, case.title) == (first.desk, "G NO-2026-000601")  # the first one's desk
