"""Test kit for searches and data-subject reports in the console: received forms about known
persons on two desks (indexed as the pipeline would, by `gateway index rebuild`) and a form we
sent to another partner about one of them, with a retention rule."""

from __future__ import annotations

from dataclasses import dataclass

from webkit import form_xml, receive

from gateway.forms.entities import Entity
from gateway.search import index
from gateway.service.searching import rebuild
from gateway.service.services import Services
from gateway.store.ledger import NewMessage
from gateway.store.search_rows import Where
from gateway.store.states import OutboundState

RETENTION = """
[[retention]]
keep = "P365D"
"""
# The person of the data subject's request, and a namesake born on another day.
NAME, BORN, DOCUMENT = "Test EXAMPLE", "1980-01-01", "X0000000"


@dataclass(frozen=True)
class Filled:
    ids: dict[str, int]  # ledger ids by Reference


def fill(services: Services) -> Filled:
    """NO-2026-000001 (sirene) and -000002 (interpol): the person; -000003 (sirene): someone
    else; -000004 (sirene): a namesake born another day with another passport; RO-2026-000900:
    a form we sent to RS-NCB about the person (interpol desk)."""
    ids = {
        "NO-2026-000001": receive(services, "NO-2026-000001", desk="sirene"),
        "NO-2026-000002": receive(services, "NO-2026-000002", desk="interpol"),
        "NO-2026-000003": receive(
            services,
            "NO-2026-000003",
            form=form_xml(
                "NO-2026-000003", FamilyName="POPESCU", GivenName="Ion", Number="Y7654321"
            ).replace(b"1980-01-01", b"1975-03-04"),
        ),
        "NO-2026-000004": receive(
            services,
            "NO-2026-000004",
            form=form_xml("NO-2026-000004", Number="X0000001").replace(
                b"1980-01-01", b"1981-02-02"
            ),
        ),
    }
    assert rebuild(services).messages == 4
    ledger = services.ledger
    now = services.clock.now()
    with ledger.transaction() as tx:
        sent = ledger.record_in(
            tx,
            NewMessage(
                direction="outbound",
                partner="RS-NCB",
                channel="interpol",
                form="IP-MSG",
                reference="RO-2026-000900",
                message_id="<RO-2026-000900@ro.example>",
                priority="normal",
                content_sha256="c" * 64,
                raw_sha256="d" * 64,
                state=OutboundState.QUEUED,
                spool_key="form.RO-2026-000900",
                desk="interpol",
            ),
            "queued for RS-NCB",
        )
        where = Where(sent, "outbound", "RS-NCB", "interpol", "IP-MSG")
        index.write_in(tx, where, [Entity("person", "name", NAME, BORN, "RO")], now)
    ids["RO-2026-000900"] = sent
    return Filled(ids)
