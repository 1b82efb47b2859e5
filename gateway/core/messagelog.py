"""One INFO line per message event on the logger ``gateway.messages``: direction, Reference,
partner, form, outcome and timings, as words for the plain log and as fields for JSON lines.

Only codes, References and numbers: never a name, a document number, a subject line or anything
else from a form's content (the caller passes nothing else; a test reads every line the demo
logs at DEBUG for the values of the forms it sent).
"""

from __future__ import annotations

import logging

log = logging.getLogger("gateway.messages")

FIELDS = "fields"  # the attribute of a LogRecord that holds its structured fields


def event(
    direction: str,
    outcome: str,
    *,
    reference: str = "",
    partner: str = "",
    form: str = "",
    detail: str = "",
    **timings: float,
) -> None:
    """Log one message's outcome: ``received G NO-2026-000123 from NO-SIRENE: accepted, 250 in
    38 ms``; ``timings`` are named by what they time and in seconds (``to_250=0.038``)."""
    if not log.isEnabledFor(logging.INFO):
        return
    what = " ".join(part for part in (form, reference) if part) or "a message"
    if direction == "inbound":
        text = f"received {what} from {partner or 'an unknown sender'}: {outcome}"
    else:
        text = f"{what} to {partner or 'a desk'}: {outcome}"
    if detail:
        text += f" ({detail})"
    for name, seconds in timings.items():
        label = name.removeprefix("to_").replace("_", " ")
        text += f", {label} after {_span(seconds)}"
    fields: dict[str, object] = {
        "direction": direction,
        "outcome": outcome,
        "reference": reference,
        "partner": partner,
        "form": form,
    }
    if detail:
        fields["detail"] = detail
    fields.update({f"seconds_{name}": round(seconds, 3) for name, seconds in timings.items()})
    log.info("%s", text, extra={FIELDS: fields})


def _span(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
