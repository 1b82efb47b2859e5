"""Test kit: two `gateway serve` on one PostgreSQL, partners sending to both, node A killed
(SIGKILL, or by a crash point) in the middle of a batch and node B finishing its work.

``run_two_nodes`` plays the whole scenario and returns what happened (``TwoNodes``);
``check_two_nodes`` asserts what must hold whatever the desks are: every message with a 250 in
the ledger once and delivered, every receipt at the partner once, our forms delivered once
each, each due deadline re-sent and missed once, the takeover within the lease's bound. How
the desks are counted (one shared Maildir folder, or a real Dovecot over IMAP) is the caller's.

The bodies of accepted messages are committed to PostgreSQL with their ledger rows
(``[store] bodies = "database"``), the receipts go to the partner's real SMTP server (a
FakePartner). Forms of ours sent through A first meet a 451 from the partner, so A holds them
waiting for their retry when it dies; two more forms whose receipt deadlines come due are swept
by both nodes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email
import email.policy
import signal
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import pytest
from dbkit import POSTGRES_URL, postgres_schema
from integration.fakepartner import FakePartner, make_pki, server_context
from integration.inboundkit import World, gateway_config
from integration.servekit import SERVE, Served, smtp_send
from integration.test_crash import make_messages
from sqlalchemy import Engine, func, select

from gateway.core import crashpoints
from gateway.core.config import BUILTIN_FORMS
from gateway.store.ledger import events, leases, make_engine, message_bodies, messages

FORMS = 3  # forms of ours sent through A and still held by it (451 at first) when it dies
DUE = 2  # forms of ours delivered at once, whose receipt deadlines come due on both nodes
RECEIPT_WINDOW = 6  # seconds: the partner never sends its receipt, so the sweep re-sends once,
# then records the receipt as missed and tells the desk (both nodes sweep every second)
FORM = (BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml").read_bytes()
CLIENTS = 4  # two send to A, two to B
LEASE_SECONDS = 4
HEARTBEAT_SECONDS = 1
DESKS = ("sirene", "duty")
# A's leases must pass to B within a lease and a heartbeat after A's last beat, plus the
# hand-off's wake-up (1 s) and this margin for a loaded machine (measured: 4.0 to 5.4 s in all);
# the work itself is then finished within FINISH_SLACK (measured: under 1 s more).
TAKEOVER_MARGIN = 5.0
# The time A takes received messages of the ledger at which it dies when no poll caught it
# holding some first.
FED_BEFORE_DEATH = 8
# A node that holds no unfinished work for this long after its tenth 250 is killed anyway.
GIVE_UP_AFTER = 5.0
FINISH_SLACK = 30.0
TAKEOVER_BOUND = LEASE_SECONDS + HEARTBEAT_SECONDS + 1 + TAKEOVER_MARGIN


def require_postgres() -> None:
    if not POSTGRES_URL:
        pytest.skip(
            "TWO NODES NEED ONE POSTGRESQL: set GATEWAY_TEST_POSTGRES_URL (or run one on "
            "127.0.0.1:5432) to run the two-node SIGKILL tests"
        )


def node_config(
    world: World,
    folder: Path,
    shared: Path,
    *,
    url: str,
    name: str,
    partner: tuple[int, Path],
    extra: str = "",
) -> Path:
    """A node's configuration: its own spool, the shared desks, the ledger and bodies on
    PostgreSQL, a short lease, receipts to the partner's server at ``port``; ``extra``: more
    tables (e.g. ``[desk_delivery]`` to a Dovecot)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = gateway_config(world, shared, database_url=url)
    text = path.read_text().replace(f'spool = "{shared}/spool"', f'spool = "{folder}/spool"')
    text = text.replace(
        'smtp_host = "127.0.0.1"\n',
        f'smtp_host = "127.0.0.1"\nsmtp_port = {partner[0]}\ntls_ca = "{partner[1]}"\n'
        f'receipt_window = "PT{RECEIPT_WINDOW}S"\n',
        1,
    )
    text += (
        '\n[store]\nbodies = "database"\n'
        "\n[outbound]\nreceipt_resends = 1\n"
        '\n[scheduler]\nsweep_every = "PT1S"\n'
        f'\n[cluster]\nnode = "{name}"\nlease_seconds = {LEASE_SECONDS}\n'
        f"heartbeat_seconds = {HEARTBEAT_SECONDS}\n"
        f"{extra}"
    )
    mine = folder / "gateway.toml"
    mine.write_text(text)
    path.unlink()
    return mine


@dataclass
class Senders:
    """The partners' side: the messages, the nodes' ports, where the clients of A send now
    (``to_a[0]``: "a", then "b" once A is gone, as an MTA tries the other MX record), and which
    node gave each Reference its 250."""

    raws: dict[str, bytes]
    context: ssl.SSLContext
    ports: dict[str, int] = field(default_factory=dict)
    to_a: list[str] = field(default_factory=lambda: ["a"])
    acked: dict[str, str] = field(default_factory=dict)

    def target(self, client: int) -> str:
        return self.to_a[0] if client % 2 == 0 else "b"


async def client(queue: collections.deque[str], senders: Senders, number: int) -> None:
    """Send from ``queue`` to this client's node; what got no 250 goes again (to whichever
    node the client's target is by then)."""
    while queue:
        ref = queue.popleft()
        node = senders.target(number)
        try:
            code, _ = await smtp_send(senders.ports[node], senders.raws[ref], senders.context)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            queue.appendleft(ref)
            await asyncio.sleep(0.05)
            continue
        if code == 250:
            senders.acked[ref] = node
        else:
            queue.append(ref)
            await asyncio.sleep(0.1)


def send_form(config: Path, path: Path, number: int) -> subprocess.CompletedProcess[str]:
    """`gateway send` of a form of ours to NO-SIRENE, as a handler on node A runs it."""
    form = (
        FORM.replace(b"<Reference>NO-2026-000123</Reference>", b"")
        .replace(b"<Bureau>NO-SIRENE</Bureau><Officer>", b"<Bureau>RO-SIRENE</Bureau><Officer>")
        .replace(b"<Recipient><Bureau>RO-SIRENE</Bureau>", b"<Recipient><Bureau>NO-SIRENE</Bureau>")
        .replace(b"Duty officer 4", f"Duty officer {number}".encode())
    )
    path.write_bytes(form)
    return subprocess.run(
        [*SERVE, "-c", str(config), "send", str(path), "--desk", "sirene"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class TwoNodes:
    """What a two-node run did: the 250s, when A died and what it held, when B took over and
    finished, the ledger's and the partner's counts at the end."""

    raws: dict[str, bytes]
    acked: dict[str, str]
    acked_by_a: set[str]
    held_by_a: int
    killed_at: float
    last_250_at: float  # when the partners' clients were done: the last 250, after the kill
    taken_over_at: float | None
    finished_at: float | None
    inbound: list[tuple[int, str]]
    states: dict[str, int]
    forms: dict[str, str]
    held_forms: set[str]
    due_forms: set[str]
    resent_before_kill: dict[str, int]
    stored_bodies: int
    resends: collections.Counter[str]
    missed: collections.Counter[str]
    receipts: collections.Counter[int]
    # The receipts made but not recorded as sent when A was dead, by the message each answers.
    receipts_unrecorded_at_death: set[int]
    delivered: collections.Counter[str]
    b_status: int
    b_log: str  # node B's whole log
    at_death: object = None  # what the caller's ``on_death`` looked at when A had died

    def figures(self) -> str:
        return (
            f"A killed holding {self.held_by_a} leases with {len(self.acked_by_a)} 250s given; "
            f"A's leases taken over {_seconds(self.killed_at, self.taken_over_at)} after the "
            f"kill, the last 250 {self.last_250_at - self.killed_at:.2f} s after it, all work "
            f"finished {_seconds(self.last_250_at, self.finished_at)} after the last 250 "
            f"(lease {LEASE_SECONDS} s, heartbeat {HEARTBEAT_SECONDS} s); ledger states "
            f"{self.states}; {sum(self.receipts.values())} receipts at the partner for "
            f"{len(self.receipts)} messages; {FORMS} forms of ours held by A at its death, at "
            f"the partner {[self.delivered[m] for m in self.held_forms]} times each; {DUE} forms "
            f"due on both nodes: re-sent {[self.resends[m] for m in self.due_forms]} times, "
            f"missed {[self.missed[m] for m in self.due_forms]} times"
        )


@dataclass
class ServedPair:
    """Two nodes (``a`` and ``b``, not started) on one PostgreSQL ledger, the partner their
    receipts go to (started), and the partners' side with its signed and encrypted messages."""

    partner: FakePartner
    served: dict[str, Served]
    engine: Engine
    senders: Senders


@contextlib.asynccontextmanager
async def served_pair(
    world: World, tmp_path: Path, *, messages_count: int, extra: str = ""
) -> AsyncIterator[ServedPair]:
    """Two nodes configured on a private PostgreSQL schema (``extra``: more tables for both),
    the partner started, ``messages_count`` messages made; on leaving, the nodes killed (those
    still running), the partner stopped and the engine disposed of. Skipped without
    PostgreSQL."""
    require_postgres()
    shared = tmp_path / "shared"
    (shared / "pki").mkdir(parents=True)
    pki = make_pki(shared / "pki")
    partner = FakePartner(tls=server_context(pki.cert, pki.key))
    await partner.start()
    raws = make_messages(world, range(1, messages_count + 1))
    senders = Senders(raws, ssl.create_default_context(cafile=str(world.tls_cert)))
    with postgres_schema() as url:
        served = {
            name: Served(
                node_config(
                    world,
                    tmp_path / name,
                    shared,
                    url=url,
                    name=name,
                    partner=(partner.port, pki.ca),
                    extra=extra,
                ),
                tmp_path / name / "logs",
            )
            for name in ("a", "b")
        }
        engine = make_engine(url)
        try:
            yield ServedPair(partner, served, engine, senders)
        finally:
            for node in served.values():
                node.kill()
            await partner.stop()
            engine.dispose()


async def run_two_nodes(
    world: World,
    tmp_path: Path,
    *,
    messages_count: int,
    extra: str = "",
    crash_a: bool = False,
    on_death: Callable[[Engine], object] | None = None,
) -> TwoNodes:
    """Two nodes, partners sending ``messages_count`` messages to both, A killed mid-batch and
    B finishing. ``crash_a``: A dies by itself at ``handoff.desk-delivered`` (its first
    hand-off's desk copies delivered, the ledger not told) instead of a SIGKILL from the test
    while it holds leases; ``on_death``: called with the ledger's engine once A is dead, its
    result kept in ``at_death``."""
    at_death: object = None
    async with served_pair(world, tmp_path, messages_count=messages_count, extra=extra) as pair:
        partner, served, engine, senders = pair.partner, pair.served, pair.engine, pair.senders
        raws, refs = senders.raws, list(senders.raws)
        ports, acked = senders.ports, senders.acked
        clients: list[asyncio.Task[None]] = []
        takeover: asyncio.Task[float | None] | None = None
        try:
            # A dies by itself: after its desk copies are delivered (crash_a), or else once it
            # has taken received messages it has not handed off yet, the FED_BEFORE_DEATH-th
            # time (in the middle of a batch, while partners are still sending; the poll below
            # kills it first when it catches such a moment).
            crash = (
                crashpoints.DESK_DELIVERED if crash_a else f"{crashpoints.FED}@{FED_BEFORE_DEATH}"
            )
            ports["a"] = await served["a"].start(env={crashpoints.ENV_VAR: crash})
            # Forms of ours sent through A, whose partner answers 451 at first: A holds them
            # (leased, waiting for their retry) when it dies, and B must deliver them.
            partner.fail("data", "451 4.3.0 try again later", times=FORMS)
            for number in range(1, FORMS + 1):
                sent = send_form(served["a"].config, tmp_path / f"form-{number}.xml", number)
                assert sent.returncode == 0, sent.stderr
            wait_until = time.monotonic() + 60
            while held(engine, "a", "outbound") < FORMS or partner.faults["data"]:
                if time.monotonic() > wait_until:
                    raise AssertionError(f"A did not try the forms: {served['a'].log_tail()}")
                await asyncio.sleep(0.05)
            held_forms = set(our_forms(engine))
            for number in range(FORMS + 1, FORMS + DUE + 1):  # these go out at once
                sent = send_form(served["a"].config, tmp_path / f"form-{number}.xml", number)
                assert sent.returncode == 0, sent.stderr
            ports["b"] = await served["b"].start()
            # Both nodes sweep: each due form's re-send must happen once, not once per node.
            due_forms: set[str] = set()
            wait_until = time.monotonic() + 60
            while len(due_forms) < DUE or any(delivered_ids(partner)[m] < 2 for m in due_forms):
                if time.monotonic() > wait_until:
                    raise AssertionError(f"no re-sends: {delivered_ids(partner)}")
                due_forms = set(our_forms(engine)) - held_forms
                await asyncio.sleep(0.1)
            resent_before_kill = {m: delivered_ids(partner)[m] for m in due_forms}
            clients = [
                asyncio.create_task(client(collections.deque(refs[i::CLIENTS]), senders, i))
                for i in range(CLIENTS)
            ]
            if crash_a:
                # A dies by itself once its first hand-off has its desk copies delivered.
                assert await served["a"].died(timeout=120) == -signal.SIGKILL
                held_by_a = held(engine, "a")
            else:
                held_by_a = await _kill_mid_batch(engine, served["a"], acked)
            killed_at = time.monotonic()
            receipts_unrecorded_at_death = receipts_not_recorded_sent(engine)
            senders.to_a[0] = "b"  # its MX record no longer answers: the senders go to B
            acked_by_a = {ref for ref, node in acked.items() if node == "a"}
            if on_death is not None:
                at_death = on_death(engine)
            # The takeover is watched from the kill on, while the partners still send to B.
            takeover = asyncio.create_task(_taken_over(engine, killed_at))
            await asyncio.wait_for(asyncio.gather(*clients), 120)
            last_250_at = time.monotonic()

            # B finishes: every message with a 250 delivered, every receipt at the partner.
            finished_at = None
            deadline = max(killed_at + LEASE_SECONDS + HEARTBEAT_SECONDS, last_250_at)
            deadline += FINISH_SLACK
            while time.monotonic() < deadline:
                states = ledger_states(engine)
                receipts = receipt_ids(partner)
                forms = our_forms(engine)
                if (
                    states.get("received", 0) == 0
                    and set(forms.values()) <= {"sent", "unacknowledged"}
                    and sum(events_by_message(engine, "unacknowledged").values()) >= DUE
                    and len(acked) == messages_count
                    and set(receipts) >= {_id for _id, _ in inbound_rows(engine)}
                ):
                    finished_at = time.monotonic()
                    break
                await asyncio.sleep(0.1)
            taken_over_at = await takeover
            b_status = await served["b"].terminate()
        finally:
            for task in [*clients, *([takeover] if takeover is not None else [])]:
                task.cancel()
        # A is dead and B stopped: what they left.
        with engine.connect() as connection:
            stored_bodies = connection.execute(
                select(func.count()).select_from(message_bodies)
            ).scalar_one()
        return TwoNodes(
            raws=raws,
            acked=dict(acked),
            acked_by_a=acked_by_a,
            held_by_a=held_by_a,
            killed_at=killed_at,
            last_250_at=last_250_at,
            taken_over_at=taken_over_at,
            finished_at=finished_at,
            inbound=inbound_rows(engine),
            states=ledger_states(engine),
            forms=our_forms(engine),
            held_forms=held_forms,
            due_forms=due_forms,
            resent_before_kill=resent_before_kill,
            stored_bodies=int(stored_bodies),
            resends=events_by_message(engine, "resend"),
            missed=events_by_message(engine, "unacknowledged"),
            receipts=receipt_ids(partner),
            receipts_unrecorded_at_death=receipts_unrecorded_at_death,
            delivered=delivered_ids(partner),
            b_status=b_status,
            b_log=_log(served["b"]),
            at_death=at_death,
        )


async def _taken_over(engine: Engine, killed_at: float) -> float | None:
    """When A's leases on messages still waiting are all gone (taken by B, or their work
    done), polled from the kill on; None when they are still there well past the bound."""
    while held(engine, "a") > 0:
        if time.monotonic() > killed_at + TAKEOVER_BOUND + FINISH_SLACK:
            return None
        await asyncio.sleep(0.05)
    return time.monotonic()


async def _kill_mid_batch(engine: Engine, node: Served, acked: dict[str, str]) -> int:
    """SIGKILL ``node`` once it holds leases on received messages it has not handed off yet: in
    the middle of a hand-off batch, while partners are still sending. The leases it held."""
    wait_until = time.monotonic() + 120
    first_acked: float | None = None
    while time.monotonic() < wait_until:
        if node.process is not None and node.process.poll() is not None:  # its crash point
            node.kill()  # reaped
            return held(engine, "a")
        held_by_a = held(engine, "a")
        a_acked = sum(1 for name in acked.values() if name == "a")
        if a_acked >= 10 and first_acked is None:
            first_acked = time.monotonic()
        # Mid-batch when such a moment comes; else, GIVE_UP_AFTER s after its tenth 250, while
        # partners are still sending: what it accepted and never handed off is its work then.
        if first_acked is not None and (
            held_by_a >= 3 or time.monotonic() - first_acked > GIVE_UP_AFTER
        ):
            node.kill()
            return held_by_a
        await asyncio.sleep(0.005)
    raise AssertionError(f"A never held work to kill it in: {node.log_tail()}")


def check_two_nodes(run: TwoNodes, in_desks: collections.Counter[str]) -> None:
    """What must hold after any two-node run; ``in_desks``: the desk copies by Reference."""
    figures = run.figures()
    by_reference = {ref: id_ for id_, ref in run.inbound}
    assert set(run.acked) == set(run.raws), f"not every message got its 250: {figures}"
    lost = sorted(ref for ref in run.acked if ref not in by_reference)
    assert not lost, f"LOST: 250 given, no ledger row: {lost[:10]}"
    assert len(run.inbound) == len(by_reference) == len(run.raws), "a message recorded twice"
    assert run.stored_bodies >= len(run.raws), "an accepted message without its body"
    doubled = sorted(ref for ref, count in in_desks.items() if count != 1)
    assert not doubled, f"in a desk other than once: {doubled[:10]}; {figures}"
    missing = sorted(set(run.acked) - set(in_desks))
    assert set(in_desks) == set(run.acked), f"not in a desk: {missing[:10]}"
    assert run.states == {"delivered": len(run.raws)}, figures
    # A receipt whose 250 A had from the partner but had not yet recorded as sent goes out
    # again from B, with the same Message-ID (at-least-once transport, docs/ARCHITECTURE.md): a
    # second copy only of a receipt the ledger did not hold as sent at A's death, never a third.
    twice = {
        id_: n
        for id_, n in run.receipts.items()
        if n != 1 and not (n == 2 and id_ in run.receipts_unrecorded_at_death)
    }
    assert not twice, f"a receipt sent other than once: {twice}; {figures}"
    assert set(run.receipts) == set(by_reference.values()), f"a receipt missing; {figures}"
    assert run.taken_over_at is not None, f"B never took A's leases; {figures}"
    took = run.taken_over_at - run.killed_at
    assert took <= TAKEOVER_BOUND, f"takeover later than {TAKEOVER_BOUND} s; {figures}"
    assert run.finished_at is not None, f"B did not finish A's work in time; {figures}"
    since = max(run.killed_at + LEASE_SECONDS + HEARTBEAT_SECONDS, run.last_250_at)
    assert run.finished_at - since <= FINISH_SLACK, figures
    assert len(run.forms) == FORMS + DUE
    sent_more = {
        message_id: run.delivered[message_id]
        for message_id in run.forms
        if run.delivered[message_id] != 1 + run.resends[message_id]
    }
    assert not sent_more, f"a form sent other than once and once per re-send: {sent_more}"
    assert set(run.forms.values()) <= {"sent", "unacknowledged"}, run.forms
    # The due deadlines, swept by both nodes: one re-send each, one "missed" each.
    assert {run.resends[message_id] for message_id in run.due_forms} == {1}, run.resends
    assert set(run.resent_before_kill.values()) == {2}, run.resent_before_kill
    assert {run.missed[message_id] for message_id in run.due_forms} == {1}, run.missed
    assert run.b_status == 0, run.b_log[-3000:]


def held(engine: Engine, node: str, kind: str = "handoff") -> int:
    """The leases ``node`` holds on messages still waiting: received ones not handed off yet
    (``handoff``), forms of ours not delivered yet (``outbound``)."""
    return len(held_rows(engine, node, kind))


def held_rows(engine: Engine, node: str, kind: str = "handoff") -> list[tuple[int, str]]:
    """(ledger id, Reference) of the messages still waiting on which ``node`` holds a lease."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(messages.c.id, messages.c.reference)
            .select_from(leases.join(messages, messages.c.id == leases.c.item_id))
            .where(
                leases.c.holder == node,
                leases.c.kind == kind,
                messages.c.state == ("received" if kind == "handoff" else "queued"),
            )
        ).all()
    return [(int(id_), str(ref)) for id_, ref in rows]


def receipts_not_recorded_sent(engine: Engine) -> set[int]:
    """The receipts of ours the ledger holds but not as sent, by the ledger id of the message
    each answers (their Message-ID is ``<receipt.<id>.<reference>@host>``)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(messages.c.message_id).where(
                messages.c.direction == "outbound",
                messages.c.form == "ACK",
                messages.c.state != "sent",
            )
        ).scalars()
        return {int(str(message_id).split(".")[1]) for message_id in rows}


def our_forms(engine: Engine) -> dict[str, str]:
    """Our forms (not receipts): Message-ID to state."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(messages.c.message_id, messages.c.state).where(
                messages.c.direction == "outbound", messages.c.form != "ACK"
            )
        ).all()
    return {str(row.message_id): str(row.state) for row in rows}


def ledger_states(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(messages.c.state, func.count())
            .where(messages.c.direction == "inbound")
            .group_by(messages.c.state)
        ).all()
    return {str(state): int(count) for state, count in rows}


def inbound_rows(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(messages.c.id, messages.c.reference).where(messages.c.direction == "inbound")
        ).all()
    return [(int(id_), str(ref)) for id_, ref in rows]


def events_by_message(engine: Engine, kind: str) -> collections.Counter[str]:
    """How many events of ``kind`` each of our forms has, by its Message-ID."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(messages.c.message_id, func.count())
            .select_from(events.join(messages, messages.c.id == events.c.message_id))
            .where(events.c.kind == kind, messages.c.direction == "outbound")
            .group_by(messages.c.message_id)
        ).all()
    return collections.Counter({str(message_id): int(count) for message_id, count in rows})


def delivered_ids(partner: FakePartner) -> collections.Counter[str]:
    """Every message the partner's server took, by Message-ID."""
    return collections.Counter(
        str(email.message_from_bytes(received.data, policy=email.policy.default)["Message-ID"])
        for received in partner.received
    )


def receipt_ids(partner: FakePartner) -> collections.Counter[int]:
    """The receipts the partner's server took, by the ledger id of the message each answers
    (their Message-ID is ``<receipt.<id>.<reference>@host>``)."""
    found: collections.Counter[int] = collections.Counter()
    for received in partner.received:
        parsed = email.message_from_bytes(received.data, policy=email.policy.default)
        message_id = str(parsed["Message-ID"] or "")
        if message_id.startswith("<receipt."):
            found[int(message_id.split(".")[1])] += 1
    return found


def _log(node: Served) -> str:
    return "" if node.log_path is None else node.log_path.read_text(errors="replace")


def _seconds(since: float, at: float | None) -> str:
    return "never" if at is None else f"{at - since:.2f} s"
