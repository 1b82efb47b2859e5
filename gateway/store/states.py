"""The states of a message (inbound, outbound) and of a deadline, and the moves each may make."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.errors import IllegalTransition


class InboundState(StrEnum):
    """A partner's message in our ledger. The text is what the ledger stores."""

    RECEIVED = "received"  # 250 given, the message spooled
    DELIVERED = "delivered"  # in the desk's Maildir (a receipt: matched)
    ANSWERED = "answered"  # our reply to it went out


class OutboundState(StrEnum):
    """A message of ours (a form or a receipt) in our ledger. The text is what the ledger stores."""

    QUEUED = "queued"
    SENT = "sent"  # the partner's server said 250
    ACKNOWLEDGED = "acknowledged"  # a signed receipt with the digest of what we signed
    ANSWERED = "answered"  # a reply form references it
    REJECTED = "rejected"  # a 5xx from the partner's server
    FAILED = "failed"  # retries exhausted, refused by us, or dropped by an operator
    UNACKNOWLEDGED = "unacknowledged"  # no receipt after every re-send


class DeadlineState(StrEnum):
    """A receipt or reply deadline."""

    OPEN = "open"
    PAUSED = "paused"  # a request for clarification of the message is waiting for its answer
    MET = "met"  # the receipt or reply came
    MISSED = "missed"  # no receipt after every re-send
    CLOSED = "closed"  # a handler decided nothing more is owed


MessageState = InboundState | OutboundState
State = InboundState | OutboundState | DeadlineState


@dataclass(frozen=True)
class Machine:
    """One state machine: its states, the initial one, and every move with the reason for it.
    A state absent from ``moves`` (or mapped to nothing) is final."""

    name: str
    states: type[StrEnum]
    initial: StrEnum
    moves: Mapping[StrEnum, Mapping[StrEnum, str]]

    def allowed(self, source: StrEnum) -> Mapping[StrEnum, str]:
        """The states ``source`` may move to, each with its reason."""
        return self.moves.get(source, {})

    def final(self) -> tuple[StrEnum, ...]:
        """The states with no way out."""
        return tuple(state for state in self.states if not self.allowed(state))


INBOUND = Machine(
    "inbound",
    InboundState,
    InboundState.RECEIVED,
    {
        InboundState.RECEIVED: {
            InboundState.DELIVERED: "the desk copy is in its Maildir, or a receipt was matched",
            InboundState.ANSWERED: "our reply went out before the hand-off recorded delivery",
        },
        InboundState.DELIVERED: {
            InboundState.ANSWERED: "our reply to it went out",
        },
    },
)

OUTBOUND = Machine(
    "outbound",
    OutboundState,
    OutboundState.QUEUED,
    {
        OutboundState.QUEUED: {
            OutboundState.SENT: "the partner's server accepted it (250)",
            OutboundState.ACKNOWLEDGED: "the receipt came before the 250 was recorded",
            OutboundState.ANSWERED: "the reply came before the 250 was recorded",
            OutboundState.REJECTED: "the partner's server refused it (5xx)",
            OutboundState.FAILED: "retries exhausted, refused by us, or dropped by an operator",
        },
        OutboundState.SENT: {
            OutboundState.ACKNOWLEDGED: "a signed receipt quoting our digest",
            OutboundState.ANSWERED: "a reply form references it (a reply proves receipt)",
            OutboundState.UNACKNOWLEDGED: "no receipt after every re-send",
        },
        OutboundState.UNACKNOWLEDGED: {
            OutboundState.ACKNOWLEDGED: "a receipt came late",
            OutboundState.ANSWERED: "a reply came late",
        },
        OutboundState.ACKNOWLEDGED: {
            OutboundState.ANSWERED: "a reply form references it",
        },
        OutboundState.REJECTED: {
            OutboundState.QUEUED: "an operator released it (gateway queue release)",
        },
        OutboundState.FAILED: {
            OutboundState.QUEUED: "an operator released it (gateway queue release)",
        },
    },
)

DEADLINE = Machine(
    "deadline",
    DeadlineState,
    DeadlineState.OPEN,
    {
        DeadlineState.OPEN: {
            DeadlineState.PAUSED: "a request for clarification of the message was sent or received",
            DeadlineState.MET: "the receipt or the reply came",
            DeadlineState.MISSED: "no receipt after every re-send",
            DeadlineState.CLOSED: "a handler closed it (gateway deadlines close)",
        },
        DeadlineState.PAUSED: {
            DeadlineState.OPEN: "the clarification was answered: the time left runs again",
            DeadlineState.MET: "the reply came while the clarification was pending",
            DeadlineState.CLOSED: "a handler closed it (gateway deadlines close)",
        },
    },
)

MACHINES = (INBOUND, OUTBOUND, DEADLINE)


def machine_of(state: State) -> Machine:
    """The machine a state belongs to, by its enum."""
    if isinstance(state, InboundState):
        return INBOUND
    if isinstance(state, OutboundState):
        return OUTBOUND
    if isinstance(state, DeadlineState):
        return DEADLINE
    raise IllegalTransition("?", str(state), str(state), "not a state of any machine")


def check_state(machine: Machine, state: str) -> None:
    """Return when ``state`` is one of ``machine``'s; raise IllegalTransition otherwise."""
    try:
        machine.states(state)
    except ValueError:
        raise IllegalTransition(
            machine.name, "(none)", str(state), "not a state of this machine"
        ) from None


def check_transition(machine: Machine, source: str, target: str) -> None:
    """Return when ``machine`` may move from ``source`` to ``target``; raise IllegalTransition
    naming both otherwise (a state it does not have, or a move its table does not list)."""
    try:
        moves = machine.allowed(machine.states(source))
        wanted = machine.states(target)
    except ValueError:
        raise IllegalTransition(
            machine.name, str(source), str(target), "not a state of this machine"
        ) from None
    if wanted not in moves:
        raise IllegalTransition(machine.name, str(source), str(target))


def mermaid(machine: Machine) -> str:
    """The machine as a Mermaid state diagram (what docs/ARCHITECTURE.md shows)."""
    lines = ["stateDiagram-v2", f"    [*] --> {machine.initial}"]
    for source in machine.states:
        for target, reason in machine.allowed(source).items():
            lines.append(f"    {source} --> {target}: {reason}")
    lines.extend(f"    {state} --> [*]" for state in machine.final())
    return "\n".join(lines)
