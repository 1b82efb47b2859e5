"""The words of deadline notices (reminder, escalation, unacknowledged): codes, References and
instants only, never the content of a form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.desks.notices import Notice
from gateway.tracking.deadlines import Action


@dataclass(frozen=True)
class Facts:
    """What a notice may say about a deadline and its message."""

    deadline_id: int
    kind: str  # receipt | reply
    owed_by: str  # desk | partner
    direction: str  # inbound | outbound
    partner: str
    form: str
    reference: str
    priority: str
    desk: str | None
    opened_at: datetime
    due: datetime


def utc_text(instant: datetime) -> str:
    """``2026-11-26 09:00 UTC``."""
    return f"{instant.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def iso_text(instant: datetime) -> str:
    """``2026-11-26T09:00:00Z``: an instant for machines (JSON, audit reasons)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def span_text(span: timedelta) -> str:
    """``3 h 00 min``, ``2 d 04 h``, ``12 min``: how long, to the minute, never negative."""
    minutes = max(0, int(span.total_seconds()) // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"


def time_left(due: datetime, now: datetime) -> str:
    """``3 h 00 min left`` or ``overdue by 20 min``."""
    return f"{span_text(due - now)} left" if now < due else f"overdue by {span_text(now - due)}"


def what(facts: Facts) -> str:
    """The deadline in a few words, e.g. ``reply to NO-SIRENE G NO-2026-000123`` (owed by our
    desk) or ``no reply yet from RS-NCB to our IP-QUERY RO-2026-000001`` (owed by a partner)."""
    if facts.kind == "receipt":
        return f"receipt from {facts.partner} for our {facts.form} {facts.reference}"
    if facts.owed_by == "desk":
        return f"reply to {facts.partner} {facts.form} {facts.reference}"
    return f"no reply yet from {facts.partner} to our {facts.form} {facts.reference}"


def notice(facts: Facts, action: Action, now: datetime, *, desk: str = "") -> Notice:
    """The notice for ``action``; ``desk``: where an escalation is sent (for its text)."""
    urgent = "[URGENT] " if facts.priority == "urgent" else ""
    key = f"{action.kind}.{facts.deadline_id}.{action.number}"
    if action.kind == "reminder":
        heading = "Overdue" if action.overdue else "Reminder"
        subject = (
            f"{heading}: {what(facts)} due {utc_text(facts.due)} ({time_left(facts.due, now)})"
        )
        step = f"reminder {action.number} of {action.of}"
    elif action.kind == "escalation":
        subject = (
            f"Escalation: {what(facts)} overdue since {utc_text(facts.due)} "
            f"({span_text(now - facts.due)} late)"
        )
        step = f"escalation {action.number}" + (f", to desk {desk}" if desk else "")
    elif action.kind == "unacknowledged":
        subject = (
            f"No receipt: {facts.partner} has not acknowledged our {facts.form} "
            f"{facts.reference} (sent again {action.number} times)"
        )
        step = f"no receipt after {action.number} re-sends: the message is unacknowledged"
    else:
        raise ValueError(f"no notice for a {action.kind}")
    return Notice(
        kind=action.kind,
        key=key,
        subject=urgent + subject,
        body=body(facts, now, step),
        reference=facts.reference,
    )


def body(facts: Facts, now: datetime, step: str) -> str:
    if facts.direction == "inbound":
        direction = f"received from {facts.partner}"
    else:
        direction = f"sent by us to {facts.partner}"
    owed = "our desk" + (f" {facts.desk}" if facts.desk else "")
    if facts.owed_by == "partner":
        owed = facts.partner
    lines = [
        f"Form:       {facts.form}",
        f"Partner:    {facts.partner}",
        f"Reference:  {facts.reference}",
        f"Direction:  {direction}",
        f"Deadline:   {facts.kind}, owed by {owed}",
        f"Priority:   {facts.priority}",
        f"Opened:     {utc_text(facts.opened_at)}",
        f"Due:        {utc_text(facts.due)}",
        f"Time left:  {time_left(facts.due, now)}",
        f"This is:    {step}",
        "",
    ]
    if facts.kind == "reply":
        lines.append(
            "The deadline closes when the reply is sent or received, or with "
            f"`gateway deadlines close {facts.reference} --reason TEXT`."
        )
    else:
        lines.append(
            "The receipt may still come; `gateway status "
            f"{facts.reference}` shows the message's history."
        )
    return "\n".join(lines) + "\n"
