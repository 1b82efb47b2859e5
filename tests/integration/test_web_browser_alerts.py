"""The alert register in a real browser (Debian's chromium through chromium-driver, against
`gateway web` in a subprocess): a handler opens Alerts from the navigation, sees her desk's alert
only, opens it, follows an exchange to its message and the message's link back to the alert; a
supervisor records the deletion a message told, and the alert reads deleted with that exchange
classified as the deletion. No Content-Security-Policy violation.

Skipped, saying why, where chromium or chromium-driver is missing, unless GATEWAY_REQUIRE_BROWSER
is set: then it fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from accesskit import PASSWORD
from alertkit import exchange, sample
from browserkit import (
    SHOTS,
    WAIT,
    browser_or_skip,
    csp_violations,
    sign_in,
    sign_out,
    start_chromium,
    web_process,
)
from webkit import write_config

from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.service.services import open_services

RO_ALERT, RO_KEY = "RO0000000000123456", "R00000000000123456"
NL_ALERT = "NL00000000000098765"


@pytest.fixture
def browser_paths() -> tuple[str, str]:
    return browser_or_skip()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """`gateway web` over a ledger where desk sirene received a G hit on the RO alert and sent
    the M answering it, and desk interpol received a G on the NL alert."""
    config_path = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    config = configuration.load(config_path)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        access.accounts.add("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
        access.accounts.add("sue", frozenset({Role.SUPERVISOR}), frozenset(), PASSWORD)
        ids = {
            "G": exchange(services, sample("G", "valid-person-arrested")),
            "M": exchange(
                services,
                sample("M", "valid-reply-to-hit", reference="RO-2026-000200"),
                direction="outbound",
            ),
            "NL": exchange(
                services,
                sample("G", "valid-vehicle-seized", reference="NO-2026-000300"),
                desk="interpol",
            ),
        }
    with web_process(config_path) as url:
        yield url, ids


def test_a_handler_follows_an_alert_and_a_supervisor_records_its_deletion(
    browser_paths: tuple[str, str], served: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: PLC0415

    url, ids = served
    browser = start_chromium(browser_paths, tmp_path / "chromium", "1440,800")
    wait = WebDriverWait(browser, WAIT)
    shots = Path(SHOTS) if SHOTS else tmp_path
    try:
        sign_in(browser, url, "ana")
        browser.find_element(By.ID, "nav-alerts").click()
        table = wait.until(expected_conditions.presence_of_element_located((By.ID, "alerts")))
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [row.find_element(By.CSS_SELECTOR, "a.open").text for row in rows] == [RO_ALERT]
        assert NL_ALERT not in table.text  # another desk's
        cells = rows[0].find_elements(By.TAG_NAME, "td")
        assert [cell.text for cell in cells[1:4]] == ["SIS art. 26", "active", "sirene"]
        assert cells[7].text == "hit 1, supplementary 1"
        browser.save_screenshot(str(shots / "console-alerts.png"))

        rows[0].find_element(By.CSS_SELECTOR, "a.open").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "exchanges")))
        assert browser.current_url == f"{url}alerts/{RO_KEY}"
        hit = browser.find_element(By.ID, f"exchange-{ids['G']}")
        assert "hit" in hit.text and "received" in hit.text and "NO-SIRENE" in hit.text
        assert browser.find_elements(By.ID, "set-status") == []  # a handler changes nothing
        hit.find_element(By.CSS_SELECTOR, "a.open").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "form-text")))
        assert browser.current_url == f"{url}messages/{ids['G']}"
        link = browser.find_element(By.CSS_SELECTOR, "#alerts a.alert-link")
        assert link.text == RO_ALERT
        link.click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "alert-title")))
        assert browser.current_url == f"{url}alerts/{RO_KEY}"
        sign_out(browser)

        sign_in(browser, url, "sue")
        browser.get(f"{url}alerts/{RO_KEY}")
        wait.until(expected_conditions.presence_of_element_located((By.ID, "set-status")))
        Select(browser.find_element(By.ID, "status-value")).select_by_value("deleted")
        Select(browser.find_element(By.ID, "status-message")).select_by_value(str(ids["M"]))
        browser.find_element(By.ID, "set-status").click()
        status = wait.until(
            expected_conditions.text_to_be_present_in_element((By.ID, "alert-status"), "deleted")
        )
        assert status
        assert "deletion" in browser.find_element(By.ID, f"exchange-{ids['M']}").text
        assert "hit" in browser.find_element(By.ID, f"exchange-{ids['G']}").text
        browser.save_screenshot(str(tmp_path / "console-alert.png"))
        assert csp_violations(browser) == []
    finally:
        browser.quit()
