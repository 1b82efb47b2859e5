"""The statistics dashboard (/dashboard): the report's figures and SVG charts over the last 30
days for supervisors, duty officers and operators (codes and counts only: nothing for the access
log), 403 for a handler and no link to it; in a real browser with no CSP violation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from accesskit import PASSWORD
from browserkit import WAIT, browser_or_skip, csp_violations, sign_in, start_chromium, web_process
from reportkit import fill_known
from starlette.testclient import TestClient
from webkit import Console, console, login, receive, write_config

from gateway.access import accesslog
from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.service.services import open_services


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Console]:
    with console(write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")) as made:
        fill_known(made.services.ledger, made.clock)
        made.clock.set(datetime(2026, 2, 28, 12, 0, tzinfo=UTC))  # the last 30 days: Feb
        yield made


def rows_of(page: str, table: str) -> list[list[str]]:
    body = page[page.index(f'id="{table}"') :]
    body = body[: body.index("</table>")]
    rows = [
        re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]
    return [row for row in rows if row]  # the header row has no <td>


@pytest.mark.parametrize("name", ["sue", "dora", "olaf"])
def test_supervisors_duty_officers_and_operators_see_the_figures(desk: Console, name: str) -> None:
    with TestClient(desk.app, follow_redirects=False) as client:
        login(client, name)
        page = client.get("/dashboard")
    assert page.status_code == 200
    assert 'id="nav-dashboard"' in page.text
    assert "Period 2026-01-30 00:00 UTC to 2026-03-01 00:00 UTC" in page.text
    assert rows_of(page.text, "forms-table") == [
        ["2026-02", "inbound", "NO-SIRENE", "G", "1"],
        ["2026-02", "outbound", "NL-ENU", "EU-RFI", "1"],
        ["2026-02", "outbound", "RS-NCB", "IP-MSG", "1"],
    ]
    assert rows_of(page.text, "outbound-table") == [
        ["NL-ENU", "1", "0", "0", "0"],
        ["RS-NCB", "1", "2", "1", "0"],
    ]
    assert page.text.count("<svg") == 2
    assert "<script" not in page.text.split("</header>")[-1]
    charts = page.text[page.text.index("<svg") : page.text.rindex("</svg>")]
    assert 'style="' not in charts and "<style" not in charts
    assert accesslog.read(desk.services.ledger) == []  # no content was consulted


def test_a_handler_has_no_dashboard(desk: Console) -> None:
    with TestClient(desk.app, follow_redirects=False) as client:
        login(client, "ana")
        assert 'id="nav-dashboard"' not in client.get("/").text
        answer = client.get("/dashboard")
    assert answer.status_code == 403
    assert "NO-SIRENE" not in answer.text


def test_the_dashboard_in_a_browser_without_csp_violations(tmp_path: Path) -> None:
    paths = browser_or_skip()
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    config_path = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    config = configuration.load(config_path)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        access.accounts.add("sue", frozenset({Role.SUPERVISOR}), frozenset(), PASSWORD)
        for reference in ("NO-2026-000201", "NO-2026-000202"):
            receive(services, reference)
    with web_process(config_path) as url:
        browser = start_chromium(paths, tmp_path / "chromium")
        try:
            sign_in(browser, url, "sue")
            browser.find_element(By.ID, "nav-dashboard").click()
            WebDriverWait(browser, WAIT).until(
                expected_conditions.presence_of_element_located((By.ID, "forms-table"))
            )
            cells = [
                cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#forms-table td")
            ]
            assert cells[1:] == ["inbound", "NO-SIRENE", "G", "2"]
            charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
            assert len(charts) == 2
            assert all(chart.size["width"] > 100 for chart in charts)
            assert csp_violations(browser) == []
        finally:
            browser.quit()
