"""contrib/prometheus: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`); the Grafana dashboard is valid JSON whose every query is valid PromQL
(checked by promtool as recording rules); ledger-wide series are only ever taken with max().

Without promtool (Debian's `prometheus` package) these tests skip, saying so; CI sets
GATEWAY_REQUIRE_PROMTOOL=1 to make that a failure. That every metric they name is one a real
`gateway serve` exports is checked against a real scrape in test_metrics.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from integration.promkit import ALERTS, CONTRIB, alert_exprs, dashboard, dashboard_exprs

LEDGER_SERIES = re.compile(r"ipcgw_ledger_\w+")
# max( or max by (...) ( right before the series: the only way a ledger-wide figure is read
UNDER_MAX = re.compile(r"max(?:\s+(?:by|without)\s*\([^)]*\))?\s*\(\s*ipcgw_ledger_\w+")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("GATEWAY_REQUIRE_PROMTOOL") == "1":
            pytest.fail(
                "promtool is required (GATEWAY_REQUIRE_PROMTOOL=1): apt-get install prometheus"
            )
        pytest.skip("promtool not found: install Debian's `prometheus` package to run these checks")
    return found


def run(*args: str, cwd: Path = CONTRIB) -> str:
    done = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS: 14 rules found" in run("check", "rules", ALERTS.name)


def test_promtool_runs_the_rules_unit_tests() -> None:
    assert "SUCCESS" in run("test", "rules", "tests.yml")


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 17
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for index, expr in enumerate(exprs):
        rules += [f"      - record: dashboard:query{index}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "dashboard-rules.yml").write_text("\n".join(rules) + "\n")
    assert f"SUCCESS: {len(exprs)} rules found" in run(
        "check", "rules", "dashboard-rules.yml", cwd=tmp_path
    )


def test_the_dashboard_is_grafana_json_with_a_prometheus_datasource() -> None:
    board = dashboard()
    assert board["uid"] == "ipc-gateway" and board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"]["type"] == "prometheus"


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_ledger_wide_series_are_taken_with_max_never_summed(source: str) -> None:
    exprs = alert_exprs() if source == "alerts" else dashboard_exprs()
    assert len(exprs) >= 14
    uses = 0
    for expr in exprs:
        found = len(LEDGER_SERIES.findall(expr))
        assert len(UNDER_MAX.findall(expr)) == found, expr
        uses += found
    assert uses >= 3  # the rule is not vacuous


def test_the_max_rule_catches_a_sum() -> None:
    assert UNDER_MAX.findall("sum(ipcgw_ledger_deadlines_open)") == []
    assert len(UNDER_MAX.findall("max by (kind) (ipcgw_ledger_deadlines_open) > 0")) == 1
