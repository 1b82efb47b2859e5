"""Test kit: a ledger with known contents for the statistics reports, built through the store's
own API (messages, events, deadlines, refusals at chosen instants), and the figures it must give."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gateway.core.clock import FakeClock
from gateway.core.errors import InvalidForm, UnknownSender
from gateway.store.ledger import Ledger, NewMessage
from gateway.store.states import DeadlineState, InboundState, OutboundState

FIRST, LAST = "2026-01-01", "2026-02-28"
AS_OF = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)  # the report is made then
HOUR = timedelta(hours=1)

BASE = NewMessage(
    direction="inbound",
    partner="NO-SIRENE",
    channel="sirene",
    form="G",
    reference="",
    message_id="<m@example>",
    priority="urgent",
    content_sha256="a" * 64,
    raw_sha256="b" * 64,
    state=InboundState.RECEIVED,
    desk="sirene",
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fill_known(ledger: Ledger, clock: FakeClock) -> dict[str, int]:
    """The known ledger; returns the ledger ids by reference."""
    ids: dict[str, int] = {}

    def record(when: str, new: NewMessage) -> int:
        clock.set(at(when))
        with ledger.transaction() as tx:
            ids[new.reference] = ledger.record_in(tx, new)
        return ids[new.reference]

    def deadline(message: int, when: str, kind: str, owed_by: str, due: timedelta) -> None:
        clock.set(at(when))
        with ledger.transaction() as tx:
            ledger.open_deadline_in(tx, message, kind=kind, owed_by=owed_by, due=at(when) + due)

    def close(message: int, when: str, kind: str, state: DeadlineState) -> None:
        clock.set(at(when))
        with ledger.transaction() as tx:
            assert ledger.close_deadline_in(tx, message, kind, state)

    # before and after the period: never counted
    record("2025-12-31 23:59", replace(BASE, reference="NO-2025-000999", form="M"))
    record("2026-03-01 00:00", replace(BASE, reference="NO-2026-000900", form="M"))
    # hits, our replies: in time (6 h), late (18 h against 12 h), never answered
    g1 = record("2026-01-10 08:00", replace(BASE, reference="NO-2026-000001", alert_article="26"))
    deadline(g1, "2026-01-10 08:00", "reply", "desk", 12 * HOUR)
    close(g1, "2026-01-10 14:00", "reply", DeadlineState.MET)
    g2 = record("2026-01-20 09:00", replace(BASE, reference="NO-2026-000002", alert_article="36"))
    deadline(g2, "2026-01-20 09:00", "reply", "desk", 12 * HOUR)
    close(g2, "2026-01-21 03:00", "reply", DeadlineState.MET)
    g3 = record("2026-02-05 10:00", replace(BASE, reference="NO-2026-000003", priority="normal"))
    deadline(g3, "2026-02-05 10:00", "reply", "desk", 12 * HOUR)
    out = replace(
        BASE,
        direction="outbound",
        partner="RS-NCB",
        channel="interpol",
        form="IP-MSG",
        priority="normal",
        state=OutboundState.QUEUED,
        desk="interpol",
    )
    # ours to RS-NCB: a receipt in 5 min, the reply in 2 days of 7
    m4 = record("2026-01-15 12:00", replace(out, reference="RO-2026-000004"))
    deadline(m4, "2026-01-15 12:00", "receipt", "partner", timedelta(minutes=15))
    close(m4, "2026-01-15 12:05", "receipt", DeadlineState.MET)
    deadline(m4, "2026-01-15 12:00", "reply", "partner", timedelta(days=7))
    close(m4, "2026-01-17 12:00", "reply", DeadlineState.MET)
    # and one that failed after two retries
    m5 = record("2026-02-10 12:00", replace(out, reference="RO-2026-000005", priority="urgent"))
    for when in ("2026-02-10 12:01", "2026-02-10 12:05"):
        clock.set(at(when))
        with ledger.transaction() as tx:
            ledger.event_in(tx, m5, "deferred", "421 4.3.0")
    clock.set(at("2026-02-10 13:00"))
    assert ledger.set_state(m5, OutboundState.FAILED, "retries exhausted")
    # to NL-ENU: receipt in 10 min, the reply deadline closed by a handler in time
    m6 = record(
        "2026-02-12 08:00",
        replace(
            out,
            partner="NL-ENU",
            channel="europol",
            form="EU-RFI",
            reference="RO-2026-000006",
            priority="urgent",
            desk="europol",
        ),
    )
    deadline(m6, "2026-02-12 08:00", "receipt", "partner", timedelta(minutes=15))
    close(m6, "2026-02-12 08:10", "receipt", DeadlineState.MET)
    deadline(m6, "2026-02-12 08:00", "reply", "partner", 8 * HOUR)
    close(m6, "2026-02-12 15:00", "reply", DeadlineState.CLOSED)
    # our receipt of g1: not a form
    record(
        "2026-01-10 08:01",
        replace(out, partner="NO-SIRENE", form="ACK", reference="RO-2026-000010"),
    )
    # refusals: two invalid forms from NO-SIRENE, an unknown sender claiming RS-NCB
    for when, partner, error in (
        ("2026-01-12 10:00", "NO-SIRENE", InvalidForm("bad")),
        ("2026-02-12 10:00", "NO-SIRENE", InvalidForm("bad")),
        ("2026-02-13 10:00", "RS-NCB", UnknownSender("who")),
        ("2026-03-02 10:00", "RS-NCB", UnknownSender("who")),  # after the period
    ):
        clock.set(at(when))
        ledger.record_refusal(partner, "c" * 64, error)
    clock.set(AS_OF)
    return ids


# The figures the known ledger gives over FIRST..LAST as of AS_OF.
FORMS = [
    ("2026-01", "inbound", "NO-SIRENE", "G", 2),
    ("2026-01", "outbound", "RS-NCB", "IP-MSG", 1),
    ("2026-02", "inbound", "NO-SIRENE", "G", 1),
    ("2026-02", "outbound", "NL-ENU", "EU-RFI", 1),
    ("2026-02", "outbound", "RS-NCB", "IP-MSG", 1),
]
HITS = [("inbound", "26", 1), ("inbound", "36", 1), ("inbound", "none", 1)]
# (owed_by, form, priority, partner, in_time, late)
COMPLIANCE = [
    ("desk", "G", "normal", "NO-SIRENE", 0, 1),
    ("desk", "G", "urgent", "NO-SIRENE", 1, 1),
    ("partner", "EU-RFI", "urgent", "NL-ENU", 1, 0),
    ("partner", "IP-MSG", "normal", "RS-NCB", 1, 0),
]
# (reference, overdue seconds, answered): g3 still open on 2026-03-10 (due 2026-02-05 22:00)
WORST = [("NO-2026-000003", 32 * 86400 + 2 * 3600, False), ("NO-2026-000002", 6 * 3600, True)]
# (measure, count, median, p90, max)
TIMES = [
    ("receipt", 2, 300, 600, 600),
    ("reply-desk", 2, 21600, 64800, 64800),
    ("reply-partner", 1, 172800, 172800, 172800),
]
REFUSALS = [
    ("NO-SIRENE", "550 5.6.0 InvalidForm", 2),
    ("RS-NCB", "550 5.7.1 UnknownSender", 1),
]
# (partner, sent, retries, failed, resends)
OUTBOUND = [("NL-ENU", 1, 0, 0, 0), ("RS-NCB", 2, 2, 1, 0)]
TREND = [
    ("2026-01-10", 1, 0),
    ("2026-01-15", 0, 1),
    ("2026-01-20", 1, 0),
    ("2026-02-05", 1, 0),
    ("2026-02-10", 0, 1),
    ("2026-02-12", 0, 1),
]
