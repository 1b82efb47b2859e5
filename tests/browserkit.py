"""Test kit for the console in a real browser: Debian's chromium and chromium-driver found (or
the test skipped, saying which is missing; a failure when GATEWAY_REQUIRE_BROWSER is set), a
headless chromium started, and signing in and out through the pages."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from accesskit import PASSWORD

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


@contextlib.contextmanager
def web_process(config_path: Path) -> Iterator[str]:
    """`gateway web` of ``config_path`` in a subprocess (its [web] port 0): its URL; at the end
    stopped by SIGTERM, which must end it with 0 and no password in its output."""
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
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
        assert process.returncode == 0, output
        assert PASSWORD not in output


def start_chromium(paths: tuple[str, str], profile: Path, size: str = "1280,800") -> Any:
    """Headless chromium through chromium-driver, its console log kept (see csp_violations)."""
    chromium, driver_path = paths
    from selenium import webdriver  # noqa: PLC0415 (only where a browser runs)
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={size}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def csp_violations(driver: Any) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]


def sign_in(browser: Any, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    browser.get(url + "login")
    WebDriverWait(browser, WAIT).until(
        expected_conditions.presence_of_element_located((By.ID, "login"))
    )
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, WAIT).until(
        expected_conditions.presence_of_element_located((By.ID, "logout"))
    )


def sign_out(browser: Any) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    browser.find_element(By.ID, "logout").click()
    WebDriverWait(browser, WAIT).until(
        expected_conditions.presence_of_element_located((By.ID, "login"))
    )
