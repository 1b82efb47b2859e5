"""The console in a real browser: Debian's chromium, headless, driven by Selenium through
chromium-driver, against `gateway web` served by uvicorn in a subprocess on an ephemeral port:
log in, see the worklist, open a message, claim it, log out; a supervisor's deadlines board
with the overdue in red; no Content-Security-Policy violation.

Skipped, saying why, where chromium or chromium-driver is missing, unless
GATEWAY_REQUIRE_BROWSER is set (CI sets it after installing them): then it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from accesskit import PASSWORD
from webkit import receive, write_config

from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.service.services import open_services

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
REQUIRED = os.environ.get("GATEWAY_REQUIRE_BROWSER", "") not in ("", "0")
# Where the screenshots of the main screens are written when asked (docs/img for the README).
SHOTS = os.environ.get("GATEWAY_SCREENSHOTS", "")
WAIT = 20


def browser_or_skip() -> tuple[str, str]:
    if CHROMIUM and DRIVER:
        return CHROMIUM, DRIVER
    missing = " and ".join(
        name for name, found in (("chromium", CHROMIUM), ("chromium-driver", DRIVER)) if not found
    )
    reason = f"{missing} not installed: apt-get install chromium chromium-driver"
    if REQUIRED:
        pytest.fail(f"GATEWAY_REQUIRE_BROWSER is set but {reason}")
    print(f"\nBROWSER TESTS SKIPPED: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture
def browser_paths() -> tuple[str, str]:
    """chromium and chromium-driver, or a skip saying which is missing (before a server starts)."""
    return browser_or_skip()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """`gateway web` on port 0 over a ledger holding a handler, a supervisor and four received
    forms (one overdue); its URL and the forms' ledger ids by Reference."""
    config_path = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    config = configuration.load(config_path)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        access.accounts.add("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
        access.accounts.add("sue", frozenset({Role.SUPERVISOR}), frozenset(), PASSWORD)
        ids = {
            reference: receive(services, reference, desk=desk, reply_in=timedelta(hours=hours))
            for reference, desk, hours in (
                ("NO-2026-000101", "sirene", 24),
                ("NO-2026-000102", "sirene", 6),
                ("NO-2026-000103", "interpol", 6),
                ("NO-2026-000104", "sirene", -1),
            )
        }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "-c", str(config_path), "web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving the console at http://127.0.0.1:" in line, line
        yield line.rsplit(" ", 1)[1].strip(), ids
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
        assert process.returncode == 0, output
        assert PASSWORD not in output


def test_log_in_see_the_worklist_open_a_message(
    browser_paths: tuple[str, str], served: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    chromium, driver_path = browser_paths
    from selenium import webdriver  # noqa: PLC0415 (only where a browser runs)
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    url, ids = served
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1440,800",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    wait = WebDriverWait(browser, WAIT)
    shots = Path(SHOTS) if SHOTS else tmp_path

    try:
        browser.get(url)  # not signed in: the login page
        wait.until(expected_conditions.presence_of_element_located((By.ID, "login")))
        assert browser.current_url == url + "login"
        browser.find_element(By.ID, "name").send_keys("ana")
        browser.find_element(By.ID, "password").send_keys("not the password")
        browser.find_element(By.ID, "login").click()
        error = wait.until(expected_conditions.presence_of_element_located((By.ID, "login-error")))
        assert error.text == "Wrong name or password."
        browser.find_element(By.ID, "name").clear()
        browser.find_element(By.ID, "name").send_keys("ana")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.save_screenshot(str(shots / "console-login.png"))
        browser.find_element(By.ID, "login").click()

        table = wait.until(expected_conditions.presence_of_element_located((By.ID, "worklist")))
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        references = [row.find_element(By.CSS_SELECTOR, "a.open").text for row in rows]
        # Newest first, the desk's only.
        assert references == ["NO-2026-000104", "NO-2026-000102", "NO-2026-000101"]
        received = rows[0].find_element(By.TAG_NAME, "time")
        assert (received.get_attribute("title") or "").endswith(" UTC")  # UTC on hover
        assert browser.find_element(By.ID, "user").text == "ana"
        assert [row.find_element(By.CSS_SELECTOR, ".state").text for row in rows] == ["new"] * 3

        rows[1].find_element(By.CSS_SELECTOR, "a.open").click()
        form = wait.until(expected_conditions.presence_of_element_located((By.ID, "form-text")))
        assert browser.current_url == f"{url}messages/{ids['NO-2026-000102']}"
        assert "Action taken: Person arrested." in form.text
        assert "NO-2026-000102" in browser.find_element(By.ID, "message-title").text
        timeline = browser.find_element(By.ID, "timeline").text
        assert "received" in timeline and "delivered" in timeline
        assert "left" in browser.find_element(By.ID, "reply-due").text
        assert browser.find_element(By.ID, "work-state").text == "seen"
        browser.find_element(By.ID, "claim").click()
        holder = wait.until(expected_conditions.presence_of_element_located((By.ID, "holder")))
        assert holder.text == "ana"
        assert browser.find_element(By.ID, "work-state").text.startswith("claimed by ana since")
        assert "claimed" in browser.find_element(By.ID, "timeline").text
        browser.save_screenshot(str(shots / "console-message.png"))

        browser.get(url)  # the worklist: claimed, with Release; the others can be claimed
        table = wait.until(expected_conditions.presence_of_element_located((By.ID, "worklist")))
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert "claimed ana" in rows[1].find_element(By.CSS_SELECTOR, "td.work").text
        assert rows[1].find_element(By.CSS_SELECTOR, "button.release").text == "Release"
        rows[0].find_element(By.CSS_SELECTOR, "button.claim").click()  # from the list itself
        table = wait.until(expected_conditions.presence_of_element_located((By.ID, "worklist")))
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert "claimed ana" in rows[0].find_element(By.CSS_SELECTOR, "td.work").text
        browser.save_screenshot(str(shots / "console-worklist.png"))

        browser.get(f"{url}messages/{ids['NO-2026-000103']}")  # another desk's: 404
        assert "Not found" in browser.find_element(By.TAG_NAME, "h1").text

        browser.get(url)
        wait.until(expected_conditions.presence_of_element_located((By.ID, "logout"))).click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "login")))
        browser.get(url)
        assert browser.current_url == url + "login"  # the session ended

        browser.find_element(By.ID, "name").send_keys("sue")  # a supervisor: the board
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login").click()
        wait.until(
            expected_conditions.presence_of_element_located((By.ID, "nav-deadlines"))
        ).click()
        board = wait.until(expected_conditions.presence_of_element_located((By.ID, "board")))
        lines = board.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [line.find_element(By.CSS_SELECTOR, "a.open").text for line in lines] == [
            "NO-2026-000104",  # overdue first, then by time left
            "NO-2026-000102",
            "NO-2026-000103",
            "NO-2026-000101",
        ]
        late = lines[0].find_element(By.CSS_SELECTOR, "td.left")
        assert late.text.startswith("overdue")
        assert late.value_of_css_property("color") in ("rgba(180, 35, 24, 1)", "rgb(180, 35, 24)")
        assert lines[0].find_element(By.CSS_SELECTOR, "td.holder").text == "ana"
        assert lines[2].find_element(By.CSS_SELECTOR, "td.holder").text == "-"
        browser.save_screenshot(str(shots / "console-board.png"))

        violations = [
            entry["message"]
            for entry in browser.get_log("browser")  # type: ignore[no-untyped-call]
            if "Content Security Policy" in entry["message"]
        ]
        assert violations == []
    finally:
        browser.quit()
