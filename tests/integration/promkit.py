"""Test kit: the queries of contrib/prometheus (alert rules, Grafana dashboard) and the metric
names they read."""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.core.config import PROJECT_ROOT

CONTRIB = PROJECT_ROOT / "contrib" / "prometheus"
ALERTS = CONTRIB / "alerts.yml"
DASHBOARD = CONTRIB / "dashboard.json"
METRIC = re.compile(r"\bipcgw_[a-z0-9_]+")
SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def alert_exprs() -> list[str]:
    """The expr of every rule in alerts.yml (a YAML subset read without a YAML library: an
    ``expr:`` line, or an ``expr: |`` block of more indented lines)."""
    exprs: list[str] = []
    lines = ALERTS.read_text().splitlines()
    for index, line in enumerate(lines):
        found = re.match(r"(\s*)expr:\s*(.*)$", line)
        if not found:
            continue
        if found.group(2).strip() != "|":
            exprs.append(found.group(2).strip())
            continue
        indent, block = len(found.group(1)), []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        exprs.append(" ".join(part for part in block if part))
    return exprs


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def metric_names(exprs: list[str]) -> set[str]:
    """The ipcgw_ series an expression reads, as their families are named in a scrape (a
    histogram's _bucket, _sum and _count are its family; a counter's _total is kept)."""
    return {name for expr in exprs for name in METRIC.findall(expr)}


def family_of(name: str, families: set[str]) -> str | None:
    """The family of the scrape that a series name belongs to, if any."""
    if name in families:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in families:
            return name.removesuffix(suffix)
    return None
