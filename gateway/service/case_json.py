"""A case as JSON, the same for `gateway cases --json` and the API: metadata, its messages and
its timeline (codes, references, instants; never a form's content)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.service.cases import CaseView
from gateway.store.case_rows import Case


def _instant(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def case_json(case: Case) -> dict[str, Any]:
    """A case as the command's and the API's JSON give it (metadata only)."""
    return {
        "id": case.id,
        "number": case.number,
        "status": case.status,
        "desk": case.desk,
        "title": case.title,
        "opened_at": _instant(case.opened_at),
        "closed_at": _instant(case.closed_at),
        "closed_by": case.closed_by,
        "merged_into": case.merged_into,
        "messages": case.members,
    }


def view_json(view: CaseView) -> dict[str, Any]:
    """A case with its messages and timeline, as JSON."""
    return {
        **case_json(view.case),
        "members": [
            {
                "ledger_id": member.message_id,
                "direction": member.direction,
                "partner": member.partner,
                "form": member.form,
                "reference": member.reference,
                "at": _instant(member.created_at),
                "how": member.how,
                "by": member.by,
                "joined_at": _instant(member.at),
            }
            for member in view.members
        ],
        "timeline": [
            {
                "at": _instant(event.at),
                "kind": event.kind,
                "actor": event.actor,
                "reason": event.reason,
                "ledger_id": event.message_id,
                "other_case": event.other_case,
            }
            for event in view.timeline
        ],
    }
