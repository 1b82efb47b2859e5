"""Benchmark: the CPU time of a data-subject report's PDF (WeasyPrint) for 100 and 500 exchanges.

For each size a report of that many exchanges (made up, as gateway.service.subjects makes them)
is rendered by ``subjects.rendered(report, "pdf")``, the console's and the CLI's path. Two
figures in the same run, alternated: ``auto_layout``, the same page with the exchanges' table
laid out automatically (how it was made before: WeasyPrint measures every cell's content first),
and ``baseline``, WeasyPrint rendering a plain table of the same rows (the same cells' text, one
<table>, no style sheet) -- what any table of these rows costs. Each is the thread CPU time
(time.thread_time) of one render, the best and the median of ``--repeat``; ms per row is of the
best. Peak resident memory is of this process after the largest render. Prints JSON and writes
bench/results/subject_pdf.json.

    .venv/bin/python bench/subject_pdf.py [--sizes 100 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from benchkit import write_results

from gateway.reports import pdf, subject
from gateway.service import subjects

BENCH = Path(__file__).resolve().parent
MADE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
PARTNERS = ("NO-SIRENE", "RS-NCB", "NL-ENU")
FORMS = (("G", "Hit, action taken"), ("IP-MSG", "NCB message"), ("EU-RFI", "Request for info"))


def made_up(size: int) -> subject.SubjectReport:
    """A report of ``size`` exchanges, with the cells a real one has (a retention sentence, a
    match and its reasons)."""
    exchanges = []
    for n in range(size):
        form, title = FORMS[n % 3]
        exchanges.append(
            subject.Exchange(
                ledger_id=n + 1,
                at=MADE - timedelta(hours=7 * (size - n)),
                direction="inbound" if n % 2 == 0 else "outbound",
                partner=PARTNERS[n % 3],
                form=form,
                purpose=title,
                reference=f"NO-2026-{n + 1:06d}",
                desk=("sirene", "interpol", None)[n % 3],
                retention="deleted from 2027-12-01 (kept P365D)"
                if n % 4
                else f"kept while case 2026-{n:04d} is open, then P365D from its closure",
                score=100.0 if n % 5 else 93.4,
                matched=("person name 'Test EXAMPLE' born 1980-01-01: score 100.0",),
                why=("name: the same parts", "date of birth: the same"),
            )
        )
    return subject.SubjectReport(
        made_at=MADE,
        made_by="aud",
        role="auditor",
        purpose="data-subject-request",
        case_reference=None,
        reason="request 17/2026",
        search_id=1,
        asked=("Name Test EXAMPLE, born 1980-01-01",),
        method=("How the exchanges were found.",),
        exchanges=tuple(exchanges),
        partners=tuple(subject.Informed(p, 1, 1) for p in PARTNERS),
        zone=ZoneInfo("Europe/Bucharest"),
    )


def auto_layout(report: subject.SubjectReport) -> bytes:
    """The same page with the exchanges' table laid out automatically."""
    fixed = subject.STYLE.split("#subject-table", 1)[0]
    return pdf.to_pdf(subject.page(report).replace(subject.STYLE, fixed))


def plain(report: subject.SubjectReport) -> bytes:
    """A plain table of the same rows: their cells' text, no style sheet."""
    page = subject.page(report)
    table = page.split('<table id="subject-table">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>.*?</tr>", table)
    plain_rows = "".join(re.sub(r' class="[^"]*"', "", row) for row in rows)
    return pdf.to_pdf(f"<!DOCTYPE html><html><body><table>{plain_rows}</table></body></html>")


def cpu(work: Callable[[], bytes]) -> tuple[float, int]:
    began = time.thread_time()
    data = work()
    return time.thread_time() - began, len(data)


def measure(size: int, repeat: int) -> dict[str, Any]:
    report = made_up(size)
    ways: dict[str, Callable[[], bytes]] = {
        "pdf": lambda: subjects.rendered(report, "pdf"),
        "auto_layout": lambda: auto_layout(report),
        "baseline": lambda: plain(report),
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    sizes: dict[str, int] = {}
    for _ in range(repeat):  # alternated, so that a change of load falls on all three
        for name, work in ways.items():
            spent, sizes[name] = cpu(work)
            seconds[name].append(spent)
    figures: dict[str, Any] = {"rows": size}
    for name, runs in seconds.items():
        best = min(runs)
        figures[name] = {
            "cpu_s_best": round(best, 3),
            "cpu_s_median": round(statistics.median(runs), 3),
            "ms_per_row": round(best / size * 1000, 2),
            "pdf_bytes": sizes[name],
        }
    figures["pdf_over_auto_layout"] = round(
        figures["pdf"]["cpu_s_best"] / figures["auto_layout"]["cpu_s_best"], 2
    )
    figures["pdf_over_baseline"] = round(
        figures["pdf"]["cpu_s_best"] / figures["baseline"]["cpu_s_best"], 2
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "subject_pdf.json")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "benchmark": "subject_pdf",
        "method": "thread CPU time (time.thread_time), best and median of the repeats",
        "python": platform.python_version(),
        "weasyprint": version("weasyprint"),
        "cpus": os.cpu_count(),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
        "sizes": [],
    }
    for size in args.sizes:
        figures = measure(size, args.repeat)
        results["sizes"].append(figures)
        print(json.dumps(figures), flush=True)
    results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
