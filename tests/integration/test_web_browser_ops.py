"""The operators' and the auditor's pages in a real browser: Debian's chromium, headless, driven
by Selenium through chromium-driver, against `gateway web` served by uvicorn in a subprocess on an
ephemeral port: an operator releases a quarantined item; an auditor filters the access log; no
Content-Security-Policy violation.

Skipped, saying why, where chromium or chromium-driver is missing, unless
GATEWAY_REQUIRE_BROWSER is set (CI sets it after installing them): then it fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
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
    sign_out,
    start_chromium,
    web_process,
)
from webkit import quarantine_inbound, receive, sent, write_config

from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.service.services import open_services
from gateway.store.spool import Spool

STUCK = "in-NO-2026-000104"  # a received message whose hand-off gave up: quarantined


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """`gateway web` on port 0 over a ledger holding a handler, an operator and an auditor,
    four received forms (one quarantined) and forms of ours in several states; its URL and the
    forms' ledger ids by Reference."""
    config_path = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    config = configuration.load(config_path)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        access.accounts.add("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
        access.accounts.add("olaf", frozenset({Role.OPERATOR}), frozenset(), PASSWORD)
        access.accounts.add("aud", frozenset({Role.AUDITOR}), frozenset(), PASSWORD)
        ids = {
            reference: receive(services, reference, desk=desk, reply_in=timedelta(hours=hours))
            for reference, desk, hours in (
                ("NO-2026-000101", "sirene", 24),
                ("NO-2026-000102", "sirene", 6),
                ("NO-2026-000103", "interpol", 6),
                ("NO-2026-000104", "interpol", 6),
            )
        }
        quarantine_inbound(services, STUCK, "cannot deliver into the Maildir: disk full")
        busy = "451 4.3.0 mailbox busy"
        for number, state, errors in (
            (201, "answered", ()),
            (202, "acknowledged", (busy,)),
            (203, "sent", ()),
            (204, "queued", (busy, busy)),
            (205, "rejected", ()),
            (206, "failed", (busy, busy, busy)),
            (207, "acknowledged", ()),
        ):
            ids[f"RO-2026-000{number}"] = sent(
                services, f"RO-2026-000{number}", state=state, errors=errors
            )
    with web_process(config_path) as url:
        yield url, ids


@pytest.fixture
def browser_paths() -> tuple[str, str]:
    """chromium and chromium-driver, or a skip saying which is missing (before a server starts)."""
    return browser_or_skip()


@pytest.fixture
def browser(browser_paths: tuple[str, str], tmp_path: Path) -> Iterator[Any]:
    """Headless chromium, quit at the end, after checking that no page broke the
    Content-Security-Policy."""
    driver = start_chromium(browser_paths, tmp_path / "chromium")
    try:
        yield driver
        assert csp_violations(driver) == []
    finally:
        driver.quit()


def test_an_operator_releases_an_item_and_an_auditor_filters_the_access_log(
    browser: Any, served: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.select import Select  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    url, ids = served
    wait = WebDriverWait(browser, WAIT)
    shots = Path(SHOTS) if SHOTS else tmp_path
    inbound = Spool(tmp_path / "spool" / "inbound")
    assert inbound.get(STUCK).path.parent == inbound.quarantine

    sign_in(browser, url, "ana")  # consultations for the auditor to find
    for reference in ("NO-2026-000101", "NO-2026-000102"):
        browser.get(f"{url}messages/{ids[reference]}")
        wait.until(expected_conditions.presence_of_element_located((By.ID, "form-text")))
    browser.get(url)
    sign_out(browser)

    sign_in(browser, url, "olaf")
    browser.find_element(By.ID, "nav-outbound").click()
    table = wait.until(expected_conditions.presence_of_element_located((By.ID, "outbound")))
    failed = table.find_element(By.ID, f"sent-{ids['RO-2026-000206']}")
    assert "gave up after 4 attempts" in failed.text and "failed" in failed.text
    browser.save_screenshot(str(shots / "console-outbound.png"))

    browser.find_element(By.ID, "nav-quarantine").click()
    row = wait.until(
        expected_conditions.presence_of_element_located((By.ID, f"item-inbound-{STUCK}"))
    )
    assert "disk full" in row.text
    browser.save_screenshot(str(shots / "console-quarantine.png"))
    row.find_element(By.CSS_SELECTOR, "button.release").click()
    done = wait.until(expected_conditions.presence_of_element_located((By.ID, "done")))
    assert done.text == f"inbound {STUCK} is back in its queue."
    assert not browser.find_elements(By.ID, f"item-inbound-{STUCK}")
    assert inbound.get(STUCK).path.parent == inbound.new  # really moved
    sign_out(browser)

    sign_in(browser, url, "aud")  # an auditor's home is the access log
    assert browser.current_url == url + "access-log"
    assert browser.find_element(By.ID, "chain-state").text.startswith("Intact:")
    links = browser.find_elements(By.CSS_SELECTOR, "#nav a")
    assert [link.get_attribute("id") for link in links] == [
        "nav-cases",
        "nav-access-log",
        "nav-subject-report",
    ]
    browser.find_element(By.ID, "filter-user").send_keys("ana")
    Select(browser.find_element(By.ID, "filter-kind")).select_by_value("view")
    before = browser.find_element(By.ID, "filter")
    before.click()
    wait.until(expected_conditions.staleness_of(before))  # the filtered page, not this one
    table = wait.until(expected_conditions.presence_of_element_located((By.ID, "access-entries")))
    assert "user=ana" in browser.current_url and "kind=view" in browser.current_url
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [row.find_element(By.CSS_SELECTOR, "td.user").text for row in rows] == ["ana", "ana"]
    assert "NO-2026-000102" in rows[0].text and "NO-2026-000101" in rows[1].text
    assert "Person arrested" not in browser.page_source  # the auditor sees no content
    browser.save_screenshot(str(shots / "console-access-log.png"))
