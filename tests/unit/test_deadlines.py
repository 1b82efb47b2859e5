"""Deadlines as pure functions: every policy of forms/*.toml, reminders, escalations, re-sends,
outages and clocks that jump, without a database and without waiting."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.config import DeadlineSettings
from gateway.forms.catalogue import FormCatalogue
from gateway.tracking.deadline_notices import Facts, notice, span_text
from gateway.tracking.deadlines import (
    Action,
    OpenDeadline,
    Rules,
    Step,
    instants,
    opened_under,
    plan,
    reply_deadline,
    rules_for,
)

T0 = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
DEFAULTS = DeadlineSettings()

Policy = tuple[str, str, dict[str, str], timedelta | None, tuple[float, ...], timedelta]
# form, priority, values -> window, reminder fractions (None: no deadline), escalation after
POLICIES: list[Policy] = [
    ("EU-RFI", "urgent", {"InformationAccess": "direct"}, 8 * H, (0.5, 0.9), 8 * H),
    ("EU-RFI", "urgent", {"InformationAccess": "indirect"}, 3 * D, (0.5, 0.9), 3 * D),
    ("EU-RFI", "normal", {"InformationAccess": "direct"}, 7 * D, (0.5, 0.9), 7 * D),
    ("G", "urgent", {}, 12 * H, (0.5, 0.9), 12 * H),
    ("G", "normal", {}, 12 * H, (0.5, 0.9), 12 * H),
    ("H", "normal", {}, 12 * H, (0.5, 0.9), 12 * H),
    ("I", "urgent", {}, 12 * H, (0.5, 0.9), 12 * H),
    ("IP-MSG", "urgent", {"MessageType": "request"}, 24 * H, (0.5, 0.9), 24 * H),
    ("IP-MSG", "normal", {"MessageType": "request"}, 7 * D, (0.5, 0.9), 7 * D),
    ("IP-MSG", "urgent", {"MessageType": "reply"}, None, (), timedelta(0)),
    ("IP-MSG", "normal", {"MessageType": "information"}, None, (), timedelta(0)),
    ("IP-QUERY", "normal", {}, 24 * H, (0.5, 0.9), 24 * H),
    ("IP-QUERY", "urgent", {}, 24 * H, (0.5, 0.9), 24 * H),
    # J: breached after 10 days (one more reminder then), escalated after 60.
    ("J", "normal", {}, 10 * D, (0.5, 0.9, 1.0), 60 * D),
    # Schengen Convention: Art. 40(1) within hours, Art. 40(2) the Convention's 5 hours, Art. 41.
    ("ART40-REQUEST", "urgent", {}, 4 * H, (0.5, 0.9), 4 * H),
    ("ART40-REQUEST", "normal", {}, 12 * H, (0.5, 0.9), 12 * H),
    ("ART40-URGENT", "urgent", {}, 5 * H, (0.5, 0.9), 5 * H),
    ("ART41-NOTICE", "urgent", {}, 2 * H, (0.5, 0.9), 2 * H),
    # A request for clarification is owed its answer quickly: the request it clarifies waits.
    ("CLARIFICATION", "urgent", {}, 8 * H, (0.5, 0.9), 8 * H),
    ("CLARIFICATION", "normal", {}, 3 * D, (0.5, 0.9), 3 * D),
]
NO_REPLY = [
    *("A", "ACK", "EU-INFO", "F", "IP-DIFF", "IP-NOTICE", "IP-QUERY-RESULT", "M", "Q"),
    *("REFUSAL", "CLARIFICATION-ANSWER"),
]


@pytest.mark.parametrize(
    "policy", POLICIES, ids=[f"{p[0]}-{p[1]}-{'-'.join(p[2].values()) or 'any'}" for p in POLICIES]
)
def test_every_policy_gives_the_right_instants(catalogue: FormCatalogue, policy: Policy) -> None:
    code, priority, values, window, fractions, escalation = policy
    planned = reply_deadline(catalogue.get(code), priority, values, T0, DEFAULTS)
    if window is None:
        assert planned is None
        return
    assert planned is not None
    assert planned.opened_at == T0
    assert planned.due == T0 + window
    assert planned.reminders == tuple(T0 + window * fraction for fraction in fractions)
    assert planned.first_escalation == T0 + escalation
    assert planned.next_action_at == T0 + window * fractions[0]
    assert all(instant.tzinfo is not None for instant in (planned.due, *planned.reminders))


@pytest.mark.parametrize("code", NO_REPLY)
def test_forms_that_expect_no_reply_open_no_deadline(catalogue: FormCatalogue, code: str) -> None:
    for priority in ("normal", "urgent"):
        assert reply_deadline(catalogue.get(code), priority, {}, T0, DEFAULTS) is None


def test_every_form_of_the_catalogue_is_covered(catalogue: FormCatalogue) -> None:
    covered = {policy[0] for policy in POLICIES} | set(NO_REPLY)
    assert covered == {form.code for form in catalogue}


def test_the_configured_reminders_apply_where_the_policy_names_none(
    catalogue: FormCatalogue,
) -> None:
    settings = DeadlineSettings(reminders=(0.25, 0.75))
    h_form = reply_deadline(catalogue.get("H"), "normal", {}, T0, settings)
    g_form = reply_deadline(catalogue.get("G"), "normal", {}, T0, settings)  # names [0.5, 0.9]
    assert h_form is not None and g_form is not None
    assert h_form.reminders == (T0 + 3 * H, T0 + 9 * H)
    assert g_form.reminders == (T0 + 6 * H, T0 + timedelta(hours=10, minutes=48))


def test_the_rule_of_a_stored_deadline_is_found_by_its_window(catalogue: FormCatalogue) -> None:
    rfi = catalogue.get("EU-RFI")
    assert opened_under(rfi, "urgent", 8 * H) is rfi.reply.deadlines[0]
    assert opened_under(rfi, "urgent", 3 * D) is rfi.reply.deadlines[1]
    assert opened_under(rfi, "normal", 7 * D) is rfi.reply.deadlines[2]
    assert opened_under(rfi, "normal", 5 * H) is None
    assert opened_under(None, "normal", 7 * D) is None
    j_rule = opened_under(catalogue.get("J"), "normal", 10 * D)
    assert rules_for(j_rule, DEFAULTS).escalate_after == 60 * D


# ------------------------------------------------------------------ reply deadlines

RULES = Rules(reminders=(0.5, 0.9), escalate_every=H)


def opened(window: timedelta = 12 * H, rules: Rules = RULES) -> OpenDeadline:
    timeline = instants(T0, T0 + window, rules)
    return OpenDeadline(
        id=7,
        kind="reply",
        owed_by="desk",
        opened_at=T0,
        due=T0 + window,
        next_action_at=timeline.next_action_at,
    )


def stored(deadline: OpenDeadline, step: Step) -> OpenDeadline:
    """The deadline as the sweep stores it after a step."""
    return replace(
        deadline,
        reminders_sent=step.reminders_sent,
        escalations=step.escalations,
        resends=step.resends,
        due=step.due,
        next_action_at=step.next_action_at,
    )


def run(deadline: OpenDeadline, moments: list[datetime], rules: Rules = RULES) -> list[Action]:
    """Sweep at each moment in turn (only when due, as the sweep does); the actions taken."""
    actions: list[Action] = []
    for now in moments:
        if deadline.next_action_at is None or deadline.next_action_at > now:
            continue
        step = plan(deadline, now, rules)
        if step.action is not None:
            actions.append(step.action)
        deadline = stored(deadline, step)
    return actions


def test_reminders_at_the_fractions_then_escalations_every_hour() -> None:
    deadline = opened()
    every_minute = [T0 + timedelta(minutes=m) for m in range(0, 15 * 60 + 1)]
    actions = run(deadline, every_minute)
    assert [(a.kind, a.number) for a in actions] == [
        ("reminder", 1),
        ("reminder", 2),
        ("escalation", 1),
        ("escalation", 2),
        ("escalation", 3),
        ("escalation", 4),
    ]
    assert actions[0].of == 2 and not actions[0].overdue


def test_each_instant_gives_exactly_one_action_at_the_minute() -> None:
    deadline = opened()
    step = plan(deadline, T0 + 6 * H - timedelta(seconds=1), RULES)
    assert step.action is None and step.next_action_at == T0 + 6 * H
    step = plan(deadline, T0 + 6 * H, RULES)
    assert step.action == Action("reminder", 1, of=2)
    assert step.next_action_at == T0 + timedelta(hours=10, minutes=48)
    deadline = stored(deadline, step)
    step = plan(deadline, T0 + 12 * H, RULES)  # missed reminder 2: the breach comes first
    assert step.action == Action("escalation", 1)
    assert (step.escalations, step.next_action_at) == (1, T0 + 13 * H)


def test_an_outage_over_two_reminders_sends_only_the_latest_once() -> None:
    deadline = opened()
    step = plan(deadline, T0 + 11 * H, RULES)
    assert step.action == Action("reminder", 2, of=2)
    assert (step.reminders_sent, step.next_action_at) == (2, T0 + 12 * H)
    again = plan(stored(deadline, step), T0 + 11 * H, RULES)
    assert again.action is None


def test_an_outage_over_the_breach_sends_one_escalation_then_follows_the_slots() -> None:
    deadline = opened()
    moments = [T0 + timedelta(hours=15, minutes=20), T0 + timedelta(hours=15, minutes=50)]
    moments += [T0 + 16 * H]
    actions = run(deadline, moments)
    assert [(a.kind, a.number) for a in actions] == [("escalation", 1), ("escalation", 2)]
    step = plan(deadline, T0 + timedelta(hours=15, minutes=20), RULES)
    assert step.next_action_at == T0 + 16 * H


def test_a_clock_that_jumps_back_sends_nothing_again() -> None:
    deadline = opened()
    after = stored(deadline, plan(deadline, T0 + 13 * H, RULES))  # escalation 1
    assert after.escalations == 1 and after.next_action_at == T0 + 14 * H
    for back in (T0 + 2 * H, T0 + 7 * H, T0 + 11 * H, T0 + 13 * H + timedelta(minutes=59)):
        step = plan(after, back, RULES)
        assert step.action is None, back
        assert (step.reminders_sent, step.escalations) == (0, 1)
        assert step.next_action_at == T0 + 14 * H
    # and the reminders that were never sent stay unsent: the breach passed
    assert run(after, [T0 + 6 * H, T0 + 11 * H]) == []


def test_a_clock_that_jumps_forward_is_an_outage() -> None:
    deadline = stored(opened(), plan(opened(), T0 + 6 * H, RULES))  # reminder 1
    actions = run(deadline, [T0 + 3 * D, T0 + 3 * D + timedelta(minutes=30), T0 + 3 * D + H])
    assert [(a.kind, a.number) for a in actions] == [("escalation", 1), ("escalation", 2)]


def test_j_is_breached_at_due_and_escalated_after_sixty_days(catalogue: FormCatalogue) -> None:
    rules = rules_for(opened_under(catalogue.get("J"), "normal", 10 * D), DEFAULTS)
    deadline = opened(10 * D, rules)
    days = [T0 + timedelta(hours=h) for h in range(0, 62 * 24)]
    actions = run(deadline, days, rules)
    kinds = [(a.kind, a.number, a.overdue) for a in actions[:4]]
    assert kinds == [
        ("reminder", 1, False),
        ("reminder", 2, False),
        ("reminder", 3, True),
        ("escalation", 1, False),
    ]
    step = plan(deadline, T0 + 10 * D, rules)
    assert step.action == Action("reminder", 3, of=3, overdue=True)
    assert step.next_action_at == T0 + 60 * D
    assert sum(a.kind == "escalation" for a in actions) == 2 * 24  # hourly after day 60


def test_a_deadline_without_reminders_escalates_at_due() -> None:
    rules = Rules(reminders=(), escalate_every=H)
    deadline = opened(8 * H, rules)
    assert deadline.next_action_at == T0 + 8 * H
    assert plan(deadline, T0 + 8 * H, rules).action == Action("escalation", 1)


# ------------------------------------------------------------------ receipt deadlines


def test_a_missing_receipt_is_sent_again_then_unacknowledged() -> None:
    rules = Rules(receipt_window=timedelta(minutes=15), receipt_resends=2)
    deadline = OpenDeadline(
        id=3, kind="receipt", owed_by="partner", opened_at=T0, due=T0 + timedelta(minutes=15)
    )
    assert plan(deadline, T0 + timedelta(minutes=14), rules).action is None
    first = plan(deadline, T0 + timedelta(minutes=16), rules)
    assert first.action == Action("resend", 1, of=2)
    assert first.due == first.next_action_at == T0 + timedelta(minutes=31)
    deadline = stored(deadline, first)
    second = plan(deadline, T0 + timedelta(minutes=31), rules)
    assert second.action == Action("resend", 2, of=2) and second.resends == 2
    deadline = stored(deadline, second)
    assert plan(deadline, T0 + timedelta(minutes=40), rules).action is None
    last = plan(deadline, T0 + timedelta(minutes=46), rules)
    assert last.action == Action("unacknowledged", 2, of=2)
    assert (last.state, last.next_action_at) == ("missed", None)


def test_no_resends_configured_means_unacknowledged_at_once() -> None:
    rules = Rules(receipt_resends=0)
    deadline = OpenDeadline(id=3, kind="receipt", owed_by="partner", opened_at=T0, due=T0)
    assert plan(deadline, T0, rules).action == Action("unacknowledged", 0, of=0)


# ------------------------------------------------------------------ the words


def facts(**changes: object) -> Facts:
    base = Facts(
        deadline_id=7,
        kind="reply",
        owed_by="desk",
        direction="inbound",
        partner="NO-SIRENE",
        form="G",
        reference="NO-2026-000123",
        priority="urgent",
        desk="sirene",
        opened_at=T0,
        due=T0 + 12 * H,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_reminder_subject_names_form_reference_due_and_time_left() -> None:
    made = notice(facts(), Action("reminder", 2, of=2), T0 + 9 * H)
    assert made.key == "reminder.7.2" and made.kind == "reminder"
    assert made.subject == (
        "[URGENT] Reminder: reply to NO-SIRENE G NO-2026-000123 due 2026-11-26 09:00 UTC "
        "(3 h 00 min left)"
    )
    assert "Reference:  NO-2026-000123" in made.body
    assert "reminder 2 of 2" in made.body
    assert made.reference == "NO-2026-000123"


def test_escalation_and_partner_wording() -> None:
    made = notice(
        facts(
            owed_by="partner", direction="outbound", reference="RO-2026-000001", priority="normal"
        ),
        Action("escalation", 1),
        T0 + 14 * H,
        desk="duty",
    )
    assert made.subject == (
        "Escalation: no reply yet from NO-SIRENE to our G RO-2026-000001 overdue since "
        "2026-11-26 09:00 UTC (2 h 00 min late)"
    )
    assert "escalation 1, to desk duty" in made.body
    gone = notice(
        facts(kind="receipt", owed_by="partner", direction="outbound"),
        Action("unacknowledged", 2, of=2),
        T0,
    )
    assert gone.key == "unacknowledged.7.2"
    assert gone.subject.startswith("[URGENT] No receipt: NO-SIRENE has not acknowledged our G")


def test_spans_read_as_days_hours_minutes() -> None:
    assert span_text(timedelta(minutes=5)) == "5 min"
    assert span_text(timedelta(hours=3)) == "3 h 00 min"
    assert span_text(timedelta(days=2, hours=4, minutes=59)) == "2 d 04 h"
    assert span_text(timedelta(seconds=-30)) == "0 min"
