"""Plain-text tables for the commands' output: a header row, columns padded to their widest cell."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO


def minute(instant: datetime | None) -> str:
    """``2026-12-05 14:03Z``: an instant to the minute, in UTC, for a person; "-" for none."""
    if instant is None:
        return "-"
    aware = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
    return f"{aware:%Y-%m-%d %H:%M}Z"


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    out: TextIO,
    *,
    headings: Mapping[str, str] | None = None,
    empty: str = "(none)",
) -> None:
    """One line per row under a header row of the columns' headings (default: the key in
    capitals); None shows as "-"; the last column is not padded."""
    if not rows:
        print(empty, file=out)
        return
    titles = [(headings or {}).get(column, column.upper().replace("_", " ")) for column in columns]
    cells = [
        [str(row[column]) if row[column] is not None else "-" for column in columns] for row in rows
    ]
    widths = [max(len(title), *(len(line[i]) for line in cells)) for i, title in enumerate(titles)]
    for line in [titles, *cells]:
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        print("  ".join(padded).rstrip(), file=out)
