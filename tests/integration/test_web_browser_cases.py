"""The cases pages in a real browser (Debian's chromium, headless, through chromium-driver)
against `gateway web` in a subprocess: a handler goes from the list to a case, links a message
with a reason and closes the case; no Content-Security-Policy violation.

Skipped, saying why, where chromium or chromium-driver is missing, unless
GATEWAY_REQUIRE_BROWSER is set (CI sets it after installing them): then it fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from accesskit import PASSWORD
from browserkit import (
    SHOTS,
    WAIT,
    browser_or_skip,
    csp_violations,
    sign_in,
    start_chromium,
    web_process,
)
from webkit import receive, write_config

from gateway.access.roles import Principal, Role
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.service.cases import Cases
from gateway.service.services import open_services

ANA = Principal("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}))


@pytest.fixture
def browser_paths() -> tuple[str, str]:
    return browser_or_skip()


@pytest.fixture
def served(tmp_path: Path, browser_paths: tuple[str, str]) -> Iterator[tuple[str, Path]]:
    """`gateway web` over a ledger with a handler, three received forms, the first in a case."""
    config_path = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    config = configuration.load(config_path)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        access.accounts.add("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
        first = receive(services, "NO-2026-000101")
        for reference in ("NO-2026-000102", "NO-2026-000103"):
            receive(services, reference)
        Cases(services.ledger, services.audit).open_around(ANA, services.ledger.get(first), "a hit")
    with web_process(config_path) as url:
        yield url, config_path


@pytest.fixture
def browser(browser_paths: tuple[str, str], tmp_path: Path) -> Iterator[Any]:
    driver = start_chromium(browser_paths, tmp_path / "chromium")
    try:
        yield driver
        assert csp_violations(driver) == []
    finally:
        driver.quit()


def test_list_case_link_and_close(browser: Any, served: tuple[str, Path], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    url, config_path = served
    wait = WebDriverWait(browser, WAIT)
    shots = Path(SHOTS) if SHOTS else tmp_path
    sign_in(browser, url, "ana")
    browser.find_element(By.ID, "nav-cases").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "cases")))
    browser.find_element(By.ID, "open-case-1").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "members")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#members tbody tr")) == 1

    browser.find_element(By.ID, "link-message").send_keys("NO-2026-000102")
    browser.find_element(By.ID, "link-reason").send_keys("same subject")
    browser.find_element(By.ID, "link").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "member-2")))
    assert "same subject" in browser.find_element(By.ID, "timeline").text

    browser.find_element(By.ID, "close").click()  # no reason: the browser asks for one
    assert browser.find_element(By.ID, "case-status").text == "open"
    browser.find_element(By.ID, "close-reason").send_keys("answered in full")
    browser.find_element(By.ID, "close").click()
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "case-status"), "closed"))
    assert browser.find_elements(By.ID, "form-reopen")
    browser.save_screenshot(str(shots / "case.png"))

    config = configuration.load(config_path)
    with open_services(config) as services:
        case = Cases(services.ledger, services.audit).find(None, "1")
        kinds = [e.kind for e in services.audit.entries() if e.kind.startswith("case.")]
    assert (case.status, case.closed_by, case.members) == ("closed", "ana", 2)
    assert kinds == ["case.opened", "case.linked", "case.closed"]
