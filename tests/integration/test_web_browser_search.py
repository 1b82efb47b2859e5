"""The search page and the data-subject report in a real browser (Debian's chromium, headless,
through chromium-driver) against `gateway web` in a subprocess: a handler finds a person from an
exchanged form and opens the message, a search without a purpose is refused, another desk's
message is not shown; an auditor's report lists the exchanges and the partners to inform and
offers the PDF. No Content-Security-Policy violation.

Skipped, saying why, where chromium or chromium-driver is missing, unless
GATEWAY_REQUIRE_BROWSER is set (CI sets it after installing them): then it fails."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from accesskit import PASSWORD
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
from subjectkit import RETENTION, fill
from webkit import write_config

from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.service.services import open_services


@pytest.fixture
def browser_paths() -> tuple[str, str]:
    return browser_or_skip()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    config_path = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", extra=RETENTION)
    config = configuration.load(config_path)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        access.accounts.add("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
        access.accounts.add("aud", frozenset({Role.AUDITOR}), frozenset(), PASSWORD)
        ids = fill(services).ids
    with web_process(config_path) as url:
        yield url, ids


def test_search_and_report_in_a_browser(
    browser_paths: tuple[str, str], served: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: PLC0415

    url, ids = served
    browser = start_chromium(browser_paths, tmp_path / "chromium", "1440,900")
    wait = WebDriverWait(browser, WAIT)
    shots = Path(SHOTS) if SHOTS else tmp_path
    present = expected_conditions.presence_of_element_located
    try:
        sign_in(browser, url, "ana")
        browser.find_element(By.ID, "nav-search").click()
        wait.until(present((By.ID, "search-form")))
        browser.find_element(By.ID, "search-name").send_keys("Exampel Test")
        browser.find_element(By.ID, "search-case").send_keys("RO-2026-000042")
        browser.find_element(By.ID, "search").click()  # no purpose
        error = wait.until(present((By.ID, "search-error")))
        assert "a search needs a purpose" in error.text
        assert browser.find_elements(By.CSS_SELECTOR, "a.message-link") == []
        assert browser.current_url == url + "search"  # the terms never in the URL

        assert browser.find_element(By.ID, "search-name").get_attribute("value") == "Exampel Test"
        Select(browser.find_element(By.ID, "search-purpose")).select_by_value("case-work")
        browser.find_element(By.ID, "search").click()
        wait.until(present((By.CSS_SELECTOR, "table.search-results")))
        assert browser.current_url == url + "search"
        links = browser.find_elements(By.CSS_SELECTOR, "a.message-link")
        opened = [
            int(re.sub(r".*/messages/", "", link.get_attribute("href") or "")) for link in links
        ]
        # The sirene desk's forms about the person and the namesake; not interpol's.
        assert sorted(opened) == sorted([ids["NO-2026-000001"], ids["NO-2026-000004"]])
        assert ids["NO-2026-000002"] not in opened and ids["RO-2026-000900"] not in opened
        why = browser.find_element(By.CSS_SELECTOR, "tr.hit td.why").text
        assert "exampel ~ example" in why
        assert browser.find_element(By.ID, "results-1").location_once_scrolled_into_view
        browser.save_screenshot(str(shots / "console-search.png"))
        links[0].click()
        title = wait.until(present((By.ID, "message-title")))
        assert "NO-2026-00000" in title.text
        sign_out(browser)

        sign_in(browser, url, "aud")  # the data-protection officer
        browser.find_element(By.ID, "nav-subject-report").click()
        wait.until(present((By.ID, "subject-form")))
        browser.find_element(By.ID, "subject-document").send_keys("X0000000")
        Select(browser.find_element(By.ID, "subject-purpose")).select_by_value(
            "data-subject-request"
        )
        browser.find_element(By.ID, "subject-reason").send_keys("request 17/2026")
        browser.find_element(By.ID, "subject-make").click()
        table = wait.until(present((By.ID, "subject-table")))
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        cells = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]
        assert [(row[1], row[2], row[3], row[5], row[6]) for row in cells] == [
            ("received", "NO-SIRENE", "G", "NO-2026-000001", "sirene"),
            ("received", "NO-SIRENE", "G", "NO-2026-000002", "interpol"),
        ]
        assert cells[0][4] == "Hit, action taken" and cells[0][7].startswith("deleted from")
        partners = browser.find_element(By.ID, "subject-partners-table").text
        assert "NO-SIRENE 2 0" in partners
        assert browser.find_element(By.ID, "subject-pdf").is_displayed()
        assert browser.current_url == url + "subject-report"
        assert browser.find_element(By.ID, "subject-title").location_once_scrolled_into_view
        browser.save_screenshot(str(shots / "console-subject-report.png"))
        assert csp_violations(browser) == []
    finally:
        browser.quit()
