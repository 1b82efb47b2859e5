"""A report's figures as rows: the JSON document and the CSV file (one table, a section column).

The CSV has one header row, the same columns on every line: ``section`` names the figure
(forms, hits, compliance, overdue, times, refusals, outbound, trend), the key columns that do not
apply to a section are empty, and ``metric``/``value`` carry one number per line. A spreadsheet
filters on ``section``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any

from gateway.reports.figures import Report

CSV_COLUMNS = (
    "section",
    "period",
    "direction",
    "partner",
    "form",
    "priority",
    "owed_by",
    "category",
    "metric",
    "value",
)


def period_text(report: Report) -> dict[str, Any]:
    scope = report.scope
    return {
        "start_utc": scope.start.isoformat().replace("+00:00", "Z"),
        "end_utc": scope.end.isoformat().replace("+00:00", "Z"),
        "as_of_utc": scope.as_of.isoformat().replace("+00:00", "Z"),
        "partner": scope.partner,
        "desk": scope.desk,
        "time_zone": report.zone.key,
    }


def to_json(report: Report) -> str:
    """The figures as one JSON document; seconds for durations, instants in UTC (ISO 8601)."""
    figures = report.figures
    document = {
        "title": report.title,
        "period": period_text(report),
        "forms": [
            {"month": m, "direction": d, "partner": p, "form": f, "count": n}
            for m, d, p, f, n in figures.forms
        ],
        "hits": [{"direction": d, "article": a, "count": n} for d, a, n in figures.hits],
        "compliance": [{**asdict(row), "share_in_time": row.share} for row in figures.compliance],
        "worst_overdue": [
            {**asdict(row), "due": row.due.isoformat().replace("+00:00", "Z")}
            for row in figures.worst
        ],
        "times": [asdict(row) for row in figures.times],
        "refusals": [{"partner": p, "reason": r, "count": n} for p, r, n in figures.refusals],
        "outbound": [asdict(row) for row in figures.outbound],
        "trend": [{"day": d, "received": i, "sent": o} for d, i, o in figures.trend],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def csv_rows(report: Report) -> list[dict[str, Any]]:
    figures = report.figures
    rows: list[dict[str, Any]] = []

    def add(section: str, metric: str, value: Any, **keys: Any) -> None:
        rows.append({"section": section, "metric": metric, "value": value, **keys})

    for month, direction, partner, form, count in figures.forms:
        add("forms", "count", count, period=month, direction=direction, partner=partner, form=form)
    for direction, article, count in figures.hits:
        add("hits", "count", count, direction=direction, form="G", category=article)
    for c in figures.compliance:
        keys = {"form": c.form, "priority": c.priority, "partner": c.partner, "owed_by": c.owed_by}
        add("compliance", "in_time", c.in_time, **keys)
        add("compliance", "late", c.late, **keys)
        share = "" if c.share is None else f"{c.share:.4f}"
        add("compliance", "share_in_time", share, **keys)
    for o in figures.worst:
        add(
            "overdue",
            "overdue_seconds",
            o.overdue_seconds,
            partner=o.partner,
            form=o.form,
            owed_by=o.owed_by,
            category=f"{o.reference} (ledger id {o.message_id})",
        )
    for t in figures.times:
        for metric in ("count", "median", "p90", "max"):
            add(
                "times",
                metric if metric == "count" else f"{metric}_seconds",
                getattr(t, metric),
                category=t.measure,
            )
    for partner, reason, count in figures.refusals:
        add("refusals", "count", count, partner=partner, category=reason)
    for b in figures.outbound:
        for metric in ("sent", "retries", "failed", "resends"):
            add("outbound", metric, getattr(b, metric), partner=b.partner, direction="outbound")
    for day, received, sent in figures.trend:
        add("trend", "received", received, period=day, direction="inbound")
        add("trend", "sent", sent, period=day, direction="outbound")
    return rows


def to_csv(report: Report) -> str:
    """The figures as one CSV table (RFC 4180, CRLF), header row first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, restval="")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return out.getvalue()
