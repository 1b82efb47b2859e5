"""Deadlines as pure functions: the instants of a reply deadline, and what is due at a moment.

Nothing here reads the ledger or the clock: the sweep (``sweep.py``) hands in the open deadline
and ``now``, and stores the counters and ``next_action_at`` that ``plan`` gives back.

A reply deadline (owed by our desk for a form received, or by a partner for a form we sent):

- it opens at ``opened_at`` and falls due at ``due = opened_at + rule.within``;
- reminders at the rule's fractions of the window (its own ``reminders``, else the form's
  ``[reply] reminders``, else ``[deadlines] reminders`` of the configuration);
- the first escalation is at ``due``, or at ``opened_at + rule.escalate_after`` when the rule
  sets it (SIRENE J: due after 10 days, escalated after 60). Our reading of escalate_after: the
  deadline is breached at ``due`` whatever it says (the listing shows it overdue, the daily
  report counts it missed), escalate_after only puts off the escalation, and never before
  ``due``. Between the two the owing side gets one more reminder, at ``due``, saying so;
- then an escalation every ``escalate_every`` until the deadline is closed.

``reminders_sent`` is the number of reminder instants dealt with, ``escalations`` the number of
escalations sent; both only ever grow. After an outage (or a clock that jumped forward) only the
latest reminder instant passed is sent, once, standing for the ones missed; if the breach passed,
only the escalation is sent, once, and the next one follows ``escalate_every`` after the slot it
fell in. A clock that jumped back finds ``next_action_at`` in its future: nothing is sent twice.

A reply deadline waits while a request for clarification of its message is pending (Directive
(EU) 2023/977, Art. 6(3): the time limits are suspended from the moment the request for
clarification is received until the clarification is provided). It is ``paused`` from the
moment the clarification is sent or received, and the sweep never sees it (it looks at open
deadlines only). When the clarification is answered it resumes with the time it had left: its
``due`` and ``next_action_at`` move on by the time it waited, and ``paused`` (the total wait)
moves the start of its window as far, so that every reminder and escalation falls where it
would have fallen had the clock stood still.

A receipt deadline (a form we sent waits for its signed receipt): at ``due`` the message is sent
again, up to ``receipt_resends`` times, each time with a new window; then it is missed and the
message unacknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from gateway.core.config import DeadlineSettings
from gateway.forms.catalogue import DEFAULT_REMINDERS, DeadlineRule, FormSpec
from gateway.store.states import DeadlineState

KINDS = ("receipt", "reply")
OWED_BY = ("desk", "partner")


@dataclass(frozen=True)
class Rules:
    """What the plan of one deadline depends on besides its row and the clock."""

    reminders: tuple[float, ...] = DEFAULT_REMINDERS
    escalate_after: timedelta | None = None
    escalate_every: timedelta = timedelta(hours=1)
    receipt_window: timedelta = timedelta(minutes=15)
    receipt_resends: int = 2


@dataclass(frozen=True)
class PlannedDeadline:
    """The fixed UTC instants of a reply deadline, computed once when it opens."""

    opened_at: datetime
    due: datetime
    reminders: tuple[datetime, ...]
    first_escalation: datetime

    @property
    def next_action_at(self) -> datetime:
        """The first instant a sweep has something to do: what ``deadlines.next_action_at``
        starts as."""
        return self.reminders[0] if self.reminders else self.first_escalation


@dataclass(frozen=True)
class OpenDeadline:
    """An open deadline as the ledger holds it."""

    id: int
    kind: str  # receipt | reply
    owed_by: str  # desk | partner
    opened_at: datetime
    due: datetime
    reminders_sent: int = 0
    escalations: int = 0
    resends: int = 0
    next_action_at: datetime | None = None
    paused: timedelta = timedelta(0)  # the time it waited for clarifications, in all

    @property
    def window_start(self) -> datetime:
        """Where its window starts: ``opened_at``, later by the time it was paused."""
        return self.opened_at + self.paused


@dataclass(frozen=True)
class Action:
    """One thing to do now. ``number`` counts from 1: the reminder instant, the escalation, the
    re-send; ``of`` is how many reminders the deadline has (0 for the other kinds)."""

    kind: str  # reminder | escalation | resend | unacknowledged
    number: int = 1
    of: int = 0
    overdue: bool = False  # a reminder sent at or after the breach


@dataclass(frozen=True)
class Step:
    """The outcome of ``plan``: the action (if any) and the row as it must be stored after it."""

    action: Action | None
    reminders_sent: int
    escalations: int
    resends: int
    due: datetime
    next_action_at: datetime | None  # None: the deadline is no longer open
    state: DeadlineState = DeadlineState.OPEN  # open | missed


def rule_reminders(rule: DeadlineRule, defaults: DeadlineSettings) -> tuple[float, ...]:
    """The rule's reminder fractions; the configuration's when neither the rule nor its form
    names any (the catalogue then hands over the very DEFAULT_REMINDERS object)."""
    return defaults.reminders if rule.reminders is DEFAULT_REMINDERS else rule.reminders


def rules_for(rule: DeadlineRule | None, defaults: DeadlineSettings) -> Rules:
    """The Rules of a reply deadline opened under ``rule`` (None: the configuration's)."""
    if rule is None:
        return Rules(reminders=defaults.reminders, escalate_every=defaults.escalate_every)
    return Rules(
        reminders=rule_reminders(rule, defaults),
        escalate_after=rule.escalate_after,
        escalate_every=defaults.escalate_every,
    )


def instants(opened_at: datetime, due: datetime, rules: Rules) -> PlannedDeadline:
    """Reminder and escalation instants of the window [opened_at, due]."""
    window = due - opened_at
    first_escalation = due
    if rules.escalate_after is not None:
        first_escalation = max(due, opened_at + rules.escalate_after)
    reminders = tuple(opened_at + window * fraction for fraction in rules.reminders)
    if first_escalation > due:
        reminders += (due,)  # the breach, told to the owing side while escalation waits
    return PlannedDeadline(opened_at, due, reminders, first_escalation)


def reply_deadline(
    form: FormSpec,
    priority: str,
    values: Mapping[str, str],
    opened_at: datetime,
    defaults: DeadlineSettings,
) -> PlannedDeadline | None:
    """The reply deadline of a form received (owed by our desk) or sent (owed by the partner);
    None when the form's policy expects no reply from this message. ``values``: the form's
    values at ``form.reply.condition_paths`` (Validation.values)."""
    rule = form.reply.deadline(priority, values)
    if rule is None:
        return None
    return instants(opened_at, opened_at + rule.within, rules_for(rule, defaults))


def opened_under(form: FormSpec | None, priority: str, window: timedelta) -> DeadlineRule | None:
    """The rule a stored reply deadline was opened under. The ledger keeps its instants, not
    the form's values, so the rule is the first whose priority admits the message's and whose
    ``within`` is the stored window (the rules of each form in forms/ differ in one of these)."""
    if form is None:
        return None
    return next(
        (
            rule
            for rule in form.reply.deadlines
            if rule.within == window and rule.priority in (None, priority)
        ),
        None,
    )


def plan(deadline: OpenDeadline, now: datetime, rules: Rules) -> Step:
    """What is due for ``deadline`` at ``now``, and how its row reads after doing it."""
    if deadline.kind == "receipt":
        return _plan_receipt(deadline, now, rules)
    return _plan_reply(deadline, now, rules)


def _plan_reply(deadline: OpenDeadline, now: datetime, rules: Rules) -> Step:
    timeline = instants(deadline.window_start, deadline.due, rules)
    step = Step(
        action=None,
        reminders_sent=deadline.reminders_sent,
        escalations=deadline.escalations,
        resends=deadline.resends,
        due=deadline.due,
        next_action_at=deadline.next_action_at,
    )
    # Once escalations have started, the stored next_action_at is the next escalation's slot.
    escalation_at = timeline.first_escalation
    if deadline.escalations and deadline.next_action_at is not None:
        escalation_at = max(escalation_at, deadline.next_action_at)
    if now >= escalation_at:
        every = rules.escalate_every
        slots_passed = (now - timeline.first_escalation) // every
        return replace(
            step,
            action=Action("escalation", deadline.escalations + 1),
            escalations=deadline.escalations + 1,
            next_action_at=timeline.first_escalation + every * (slots_passed + 1),
        )
    # Reminders come before the first escalation; after it (a clock set back) they are moot.
    reminders = () if deadline.escalations else timeline.reminders
    passed = [index for index, at in enumerate(reminders) if at <= now]
    action = None
    sent = deadline.reminders_sent
    if passed and passed[-1] >= sent:
        latest = passed[-1]
        sent = latest + 1
        action = Action(
            "reminder",
            sent,
            of=len(reminders),
            overdue=reminders[latest] >= deadline.due,
        )
    upcoming = [at for at in reminders[sent:] if at > now]
    return replace(
        step,
        action=action,
        reminders_sent=sent,
        next_action_at=min([*upcoming, escalation_at]),
    )


def _plan_receipt(deadline: OpenDeadline, now: datetime, rules: Rules) -> Step:
    step = Step(
        action=None,
        reminders_sent=deadline.reminders_sent,
        escalations=deadline.escalations,
        resends=deadline.resends,
        due=deadline.due,
        next_action_at=deadline.due,
    )
    if now < deadline.due:
        return step
    if deadline.resends < rules.receipt_resends:
        due = now + rules.receipt_window
        return replace(
            step,
            action=Action("resend", deadline.resends + 1, of=rules.receipt_resends),
            resends=deadline.resends + 1,
            due=due,
            next_action_at=due,
        )
    return replace(
        step,
        action=Action("unacknowledged", deadline.resends, of=rules.receipt_resends),
        next_action_at=None,
        state=DeadlineState.MISSED,
    )
