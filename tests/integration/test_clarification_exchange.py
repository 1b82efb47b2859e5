"""Two real gateways (the demo's RO-SIRENE and NO-SIRENE: SMTP with STARTTLS, OpenPGP, receipts)
exchange a request, a request for clarification of it, the clarification and the reply; both
ledgers' reply deadlines are checked at each step: paused on both sides while the clarification
is pending, no reminder meanwhile, resumed with the time they had left, then met."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway.cli import demo
from gateway.core import config as configuration
from gateway.core.clock import ShiftedClock
from gateway.core.config import BUILTIN_FORMS
from gateway.service.server import Gateway
from gateway.service.services import open_services
from gateway.store import schema
from gateway.store.ledger import MessageRow, as_utc, deadlines, make_engine
from gateway.store.states import DeadlineState, InboundState, OutboundState

SAMPLES = BUILTIN_FORMS / "samples"
STEP_TIMEOUT = 30.0
H = timedelta(hours=1)


def about(span: timedelta, expected: timedelta) -> bool:
    """Equal but for the real seconds the exchange takes (the clock runs while it waits)."""
    return abs(span - expected) < timedelta(minutes=1)


def form(sample: str, in_reply_to: str = "") -> bytes:
    """A sample as RO or NO sends it: Created and Reference left for the gateway to fill in, no
    attachment."""
    text = re.sub(
        r"\s*<Attachment>.*?</Attachment>", "", (SAMPLES / sample).read_text("utf-8"), flags=re.S
    )
    lines = [
        line
        for line in text.splitlines()
        if "<Created>" not in line and "<Reference>" not in line and "<InReplyTo>" not in line
    ]
    text = "\n".join(lines)
    if in_reply_to:
        text = text.replace("<Language>", f"<InReplyTo>{in_reply_to}</InReplyTo>\n    <Language>")
    return text.encode()


@dataclass
class Deadline:
    state: str
    due: datetime
    owed_by: str
    paused_at: datetime | None
    paused_seconds: int


class Stage:
    """RO and NO running, on one clock that can jump ahead."""

    def __init__(self, gateways: dict[str, Gateway], clock: ShiftedClock) -> None:
        self.gateways = gateways
        self.clock = clock

    async def submit(self, name: str, document: bytes) -> MessageRow:
        gateway = self.gateways[name]
        submitted = await asyncio.to_thread(gateway.submitter.submit, document)
        gateway.wake_outbound()
        return gateway.ledger.get(submitted.ledger_id)

    async def until(self, name: str, what: str, check: Any) -> Any:
        """Poll ``check()`` until it returns something true; its value."""
        limit = time.monotonic() + STEP_TIMEOUT
        while True:
            found = await asyncio.to_thread(check)
            if found:
                return found
            if time.monotonic() > limit:
                raise TimeoutError(f"{name}: {what}")
            await asyncio.sleep(0.05)

    async def message(
        self, name: str, direction: str, partner: str, reference: str, states: tuple[str, ...]
    ) -> MessageRow:
        ledger = self.gateways[name].ledger

        def check() -> MessageRow | None:
            row = ledger.find(direction, partner, reference)
            return row if row is not None and row.state in states else None

        found: MessageRow = await self.until(name, f"{reference} in {states}", check)
        return found

    def deadline(self, name: str, message_id: int) -> Deadline:
        with self.gateways[name].ledger.reading() as tx:
            row = tx.connection.execute(
                select(deadlines).where(
                    deadlines.c.message_id == message_id, deadlines.c.kind == "reply"
                )
            ).one()
        return Deadline(
            row.state,
            as_utc(row.due),
            row.owed_by,
            as_utc(row.paused_at) if row.paused_at is not None else None,
            row.paused_seconds,
        )

    async def in_state(self, name: str, message_id: int, state: str) -> Deadline:
        def check() -> Deadline | None:
            found = self.deadline(name, message_id)
            return found if found.state == state else None

        reached: Deadline = await self.until(name, f"deadline {message_id} {state}", check)
        return reached

    def audit_kinds(self, name: str) -> list[str]:
        return [
            entry.kind
            for entry in self.gateways[name].audit.entries()
            if entry.kind.startswith("deadline.")
        ]


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, demo.Site]]:
    folder = tmp_path_factory.mktemp("clarify")
    made = demo.make_sites(folder / "run", say=lambda _: None)
    for site in made.values():
        engine = make_engine(configuration.load(site.config_path).database_url)
        try:
            schema.upgrade(engine)
        finally:
            engine.dispose()
    yield made


async def _exchange(sites: dict[str, demo.Site]) -> None:
    clock = ShiftedClock()
    async with contextlib.AsyncExitStack() as stack:
        gateways = {
            name: Gateway(
                stack.enter_context(
                    open_services(configuration.load(sites[name].config_path), clock=clock)
                )
            )
            for name in ("ro", "no")
        }
        for gateway in gateways.values():
            await gateway.start()
            stack.push_async_callback(gateway.stop)
        await _story(Stage(gateways, clock))


async def _story(stage: Stage) -> None:
    # 1. RO asks NO's authorisation for a surveillance (Art. 40(1)): 12 hours to answer.
    request = await stage.submit(
        "ro",
        form("ART40-REQUEST/valid-normal-fraud.xml"),
    )
    ref = request.reference
    asked = await stage.message("no", "inbound", "RO-SIRENE", ref, (InboundState.DELIVERED,))
    await stage.message("ro", "outbound", "NO-SIRENE", ref, (OutboundState.ACKNOWLEDGED,))
    ro_before = stage.deadline("ro", request.id)
    no_before = stage.deadline("no", asked.id)
    assert (ro_before.state, ro_before.owed_by) == (DeadlineState.OPEN, "partner")
    assert (no_before.state, no_before.owed_by) == (DeadlineState.OPEN, "desk")
    assert about(ro_before.due - as_utc(request.created_at), 12 * H)
    assert about(no_before.due - as_utc(asked.created_at), 12 * H)

    # 2. Two hours later NO asks RO for clarification: both clocks stop, about 10 hours left.
    stage.clock.advance(2 * H)
    question = await stage.submit(
        "no", form("CLARIFICATION/valid-sirene-one-question.xml", in_reply_to=ref)
    )
    no_paused = await stage.in_state("no", asked.id, DeadlineState.PAUSED)
    clarified = await stage.message(
        "ro", "inbound", "NO-SIRENE", question.reference, (InboundState.DELIVERED,)
    )
    ro_paused = await stage.in_state("ro", request.id, DeadlineState.PAUSED)
    for paused, before in ((no_paused, no_before), (ro_paused, ro_before)):
        assert paused.paused_at is not None and paused.due == before.due
        assert about(paused.due - paused.paused_at, 10 * H)
    assert stage.gateways["ro"].ledger.get(request.id).state == OutboundState.ACKNOWLEDGED
    assert stage.gateways["no"].ledger.get(asked.id).state == InboundState.DELIVERED
    # The clarification is owed its own answer, by RO's desk, within 3 days.
    owed = stage.deadline("ro", clarified.id)
    assert (owed.state, owed.owed_by) == (DeadlineState.OPEN, "desk")
    assert about(owed.due - as_utc(clarified.created_at), 72 * H)

    # 3. Eight hours after the request (past its 50 % reminder), nothing is reminded.
    await stage.message(  # receipted first: the jump would otherwise make NO send it again
        "no", "outbound", "RO-SIRENE", question.reference, (OutboundState.ACKNOWLEDGED,)
    )
    stage.clock.advance(6 * H)
    for gateway in stage.gateways.values():
        await asyncio.to_thread(gateway.schedule.sweep_once)
    for name in ("ro", "no"):
        assert "deadline.reminder" not in stage.audit_kinds(name)

    # 4. RO answers the clarification: both deadlines run again with the time they had left.
    answer = await stage.submit(
        "ro",
        form("CLARIFICATION-ANSWER/valid-sirene-answer.xml", in_reply_to=question.reference),
    )
    ro_resumed = await stage.in_state("ro", request.id, DeadlineState.OPEN)
    await stage.message("no", "inbound", "RO-SIRENE", answer.reference, (InboundState.DELIVERED,))
    no_resumed = await stage.in_state("no", asked.id, DeadlineState.OPEN)
    for resumed, before in ((ro_resumed, ro_before), (no_resumed, no_before)):
        assert resumed.paused_at is None
        waited = resumed.due - before.due
        assert about(waited, 6 * H)
        assert (
            timedelta(0)
            <= waited - timedelta(seconds=resumed.paused_seconds)
            < timedelta(seconds=1)
        )
    await stage.message(
        "no", "outbound", "RO-SIRENE", question.reference, (OutboundState.ANSWERED,)
    )
    assert stage.deadline("no", stage.gateways["no"].ledger.get(question.id).id).state == "met"
    assert stage.deadline("ro", clarified.id).state == DeadlineState.MET

    # 5. NO's reply (form M) meets both.
    reply = (demo.DEMO_FORMS / "m-reply.xml").read_bytes().replace(b"IN-REPLY-TO", ref.encode())
    await stage.submit("no", reply)
    await stage.message("ro", "outbound", "NO-SIRENE", ref, (OutboundState.ANSWERED,))
    await stage.message("no", "inbound", "RO-SIRENE", ref, (InboundState.ANSWERED,))
    assert stage.deadline("ro", request.id).state == DeadlineState.MET
    assert stage.deadline("no", asked.id).state == DeadlineState.MET
    for name in ("ro", "no"):
        assert stage.audit_kinds(name) == ["deadline.paused", "deadline.resumed"]
        assert stage.gateways[name].audit.verify() == []


def test_a_request_clarified_then_answered_between_two_gateways(
    sites: dict[str, demo.Site],
) -> None:
    asyncio.run(_exchange(sites))


def test_the_samples_used_are_addressed_between_ro_and_no() -> None:
    """The exchange sends samples as they are: each from one of the two bureaux to the other."""
    for sample, sender in (
        ("ART40-REQUEST/valid-normal-fraud.xml", "RO-SIRENE"),
        ("CLARIFICATION/valid-sirene-one-question.xml", "NO-SIRENE"),
        ("CLARIFICATION-ANSWER/valid-sirene-answer.xml", "RO-SIRENE"),
    ):
        text = (SAMPLES / sample).read_text("utf-8")
        assert f"<Sender><Bureau>{sender}</Bureau>" in text, sample
