"""The transition tables: every listed move allowed, every other refused, every state reachable,
the final states final, and the diagrams in docs/ARCHITECTURE.md drawn from the tables."""

from __future__ import annotations

import itertools
from enum import StrEnum
from pathlib import Path

import pytest

from gateway.core.errors import GatewayError, IllegalTransition
from gateway.store.states import (
    DEADLINE,
    INBOUND,
    MACHINES,
    OUTBOUND,
    DeadlineState,
    InboundState,
    Machine,
    OutboundState,
    check_state,
    check_transition,
    machine_of,
    mermaid,
)

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"
BY_NAME = pytest.mark.parametrize("machine", MACHINES, ids=[m.name for m in MACHINES])


def edges(machine: Machine) -> set[tuple[StrEnum, StrEnum]]:
    return {(source, target) for source in machine.states for target in machine.allowed(source)}


@BY_NAME
def test_every_listed_move_is_allowed_with_a_reason(machine: Machine) -> None:
    assert edges(machine)
    for source, target in edges(machine):
        check_transition(machine, source, target)
        check_transition(machine, str(source), str(target))  # the text the ledger stores
        assert machine.allowed(source)[target].strip()


@BY_NAME
def test_every_other_pair_is_refused_naming_both_states(machine: Machine) -> None:
    listed = edges(machine)
    refused = 0
    for source, target in itertools.product(machine.states, repeat=2):
        if (source, target) in listed:
            continue
        with pytest.raises(IllegalTransition) as raised:
            check_transition(machine, source, target)
        assert f"{machine.name} transition {source} -> {target}" in str(raised.value)
        assert (raised.value.source, raised.value.target) == (source, target)
        refused += 1
    assert refused == len(machine.states) ** 2 - len(listed)


@BY_NAME
def test_every_state_is_reachable_from_the_initial_one(machine: Machine) -> None:
    seen = {machine.initial}
    todo = [machine.initial]
    while todo:
        for target in machine.allowed(todo.pop()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(machine.states)


@BY_NAME
def test_the_table_names_only_its_own_states(machine: Machine) -> None:
    assert isinstance(machine.initial, machine.states)
    for source, moves in machine.moves.items():
        assert isinstance(source, machine.states)
        assert all(isinstance(target, machine.states) for target in moves)
        assert source not in moves  # staying put is not a move


def test_the_final_states_and_the_ways_out_of_the_end_states() -> None:
    """What ends each machine, and the only ways out of the states that look final."""
    assert INBOUND.final() == (InboundState.ANSWERED,)
    assert OUTBOUND.final() == (OutboundState.ANSWERED,)
    assert set(DEADLINE.final()) == {DeadlineState.MET, DeadlineState.MISSED, DeadlineState.CLOSED}
    # A refused or failed message goes back to the queue only by an operator's release.
    for state in (OutboundState.REJECTED, OutboundState.FAILED):
        assert set(OUTBOUND.allowed(state)) == {OutboundState.QUEUED}
    # A message without a receipt can still be acknowledged or answered, never sent again as new.
    assert set(OUTBOUND.allowed(OutboundState.UNACKNOWLEDGED)) == {
        OutboundState.ACKNOWLEDGED,
        OutboundState.ANSWERED,
    }
    assert set(OUTBOUND.allowed(OutboundState.ACKNOWLEDGED)) == {OutboundState.ANSWERED}


def test_the_stored_text_is_the_enum_s_value() -> None:
    """StrEnum: the ledger's text is unchanged, so no migration; compares equal to the text."""
    assert [str(s) for s in InboundState] == ["received", "delivered", "answered"]
    assert [str(s) for s in OutboundState] == [
        "queued",
        "sent",
        "acknowledged",
        "answered",
        "rejected",
        "failed",
        "unacknowledged",
    ]
    assert [str(s) for s in DeadlineState] == ["open", "paused", "met", "missed", "closed"]
    assert OutboundState("queued") is OutboundState.QUEUED and f"{DeadlineState.MET}" == "met"
    assert "queued" in (OutboundState.QUEUED,)  # a row's text compares equal to its enum


@pytest.mark.parametrize(
    ("machine", "source", "target"),
    [
        (INBOUND, "queued", "delivered"),  # another machine's state
        (OUTBOUND, "sent", "delivered"),
        (DEADLINE, "open", "gone"),
        (OUTBOUND, "", "sent"),
    ],
)
def test_a_state_the_machine_does_not_have_is_refused(
    machine: Machine, source: str, target: str
) -> None:
    with pytest.raises(IllegalTransition, match=f"{machine.name} transition {source} -> {target}"):
        check_transition(machine, source, target)


def test_check_state_and_machine_of() -> None:
    check_state(INBOUND, "received")
    with pytest.raises(IllegalTransition, match=r"inbound transition .* -> queued"):
        check_state(INBOUND, "queued")
    assert machine_of(InboundState.ANSWERED) is INBOUND
    assert machine_of(OutboundState.ANSWERED) is OUTBOUND
    assert machine_of(DeadlineState.OPEN) is DEADLINE


def test_an_illegal_transition_is_a_fault_not_an_smtp_reply() -> None:
    assert not issubclass(IllegalTransition, GatewayError)
    assert not hasattr(IllegalTransition("outbound", "sent", "queued"), "smtp_reply")


@BY_NAME
def test_the_architecture_document_shows_the_table(machine: Machine) -> None:
    """The diagram in docs/ARCHITECTURE.md is the one drawn from the table; when the table
    changes, paste the new one: python -c 'from gateway.store.states import *;
    print(mermaid(OUTBOUND))'."""
    block = f"```mermaid\n{mermaid(machine)}\n```"
    assert block in ARCHITECTURE.read_text(encoding="utf-8"), block
