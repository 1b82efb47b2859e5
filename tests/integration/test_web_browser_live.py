"""The worklist keeps itself current in a real browser (Debian's chromium, headless, Selenium
through chromium-driver, against `gateway web` in a subprocess): two handlers of one desk each
have the worklist open; when the second claims a message, the first sees who holds it without
reloading, and a message recorded in the ledger meanwhile appears, with the first's filter kept
and its page never reloaded. No Content-Security-Policy violation.

Skipped, saying why, where chromium or chromium-driver is missing, unless
GATEWAY_REQUIRE_BROWSER is set (then it fails)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from accesskit import PASSWORD
from browserkit import WAIT, browser_or_skip, csp_violations, sign_in, start_chromium, web_process
from webkit import receive, write_config

from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.service.services import open_services

LIVE = "live_seconds = 1"


@pytest.fixture
def browser_paths() -> tuple[str, str]:
    return browser_or_skip()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, int]]]:
    """`gateway web` over a ledger holding two handlers of desk sirene and two of its messages;
    its URL, its configuration and the messages' ledger ids by Reference."""
    config_path = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", extra=LIVE)
    config = configuration.load(config_path)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        for name in ("ana", "cai"):
            access.accounts.add(name, frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
        ids = {
            reference: receive(services, reference, priority=priority, reply_in=reply_in)
            for reference, priority, reply_in in (
                ("NO-2026-000201", "urgent", timedelta(hours=12)),
                ("NO-2026-000202", "normal", timedelta(hours=12)),
                ("NO-2026-000205", "urgent", None),  # no deadline: its line never changes
            )
        }
    with web_process(config_path) as url:
        yield url, config_path, ids


def test_a_claim_by_another_and_a_new_message_appear_without_reload(
    browser_paths: tuple[str, str], served: tuple[str, Path, dict[str, int]], tmp_path: Path
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException  # noqa: PLC0415
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    url, config_path, ids = served
    first = start_chromium(browser_paths, tmp_path / "ana")
    second = start_chromium(browser_paths, tmp_path / "cai")
    try:
        sign_in(first, url, "ana")
        sign_in(second, url, "cai")
        first.get(url + "?priority=urgent")  # a filter, which the updates must keep
        WebDriverWait(first, WAIT).until(lambda b: b.find_element(By.ID, "worklist"))
        # A mark on the page: a reload would lose it.
        first.execute_script("document.body.dataset.mark = 'kept';")

        def holder_cell() -> str:
            text: str = (
                first.find_element(By.ID, "worklist")
                .find_element(
                    By.XPATH, f".//a[@href='/messages/{ids['NO-2026-000201']}']/ancestor::tr"
                )
                .find_element(By.CSS_SELECTOR, "td.work")
                .text
            )
            return text

        assert WebDriverWait(first, WAIT).until(lambda b: holder_cell() == "new")
        second.get(url)
        WebDriverWait(second, WAIT).until(lambda b: b.find_element(By.ID, "worklist"))
        second.find_element(By.ID, f"claim-{ids['NO-2026-000201']}").click()
        WebDriverWait(second, WAIT).until(
            lambda b: b.find_element(By.ID, f"release-{ids['NO-2026-000201']}")
        )
        # The lines are replaced under the test's feet: a line it holds may go stale meanwhile.
        live = WebDriverWait(first, WAIT, ignored_exceptions=(StaleElementReferenceException,))
        live.until(lambda b: "claimed cai" in holder_cell())
        assert first.find_elements(By.ID, f"claim-{ids['NO-2026-000201']}") == []  # cai's now
        # The user is on the Claim button of a line that will not change.
        quiet = ids["NO-2026-000205"]
        first.execute_script(
            f"window.quiet = document.getElementById('line-{quiet}');"
            f"document.getElementById('claim-{quiet}').focus();"
        )

        config = configuration.load(config_path)
        with open_services(config) as services:
            receive(services, "NO-2026-000203", priority="urgent", reply_in=timedelta(hours=2))
            receive(services, "NO-2026-000204", priority="normal")

        def references() -> list[str]:
            table = first.find_element(By.ID, "worklist")
            return [link.text for link in table.find_elements(By.CSS_SELECTOR, "a.open")]

        wanted = ["NO-2026-000203", "NO-2026-000205", "NO-2026-000201"]  # urgent only
        live.until(lambda b: references() == wanted)
        assert first.execute_script("return document.body.dataset.mark;") == "kept"
        # The unchanged line is the same element, and its button still has the focus.
        assert first.execute_script(
            f"return window.quiet === document.getElementById('line-{quiet}');"
        )
        assert first.execute_script("return document.activeElement.id;") == f"claim-{quiet}"
        assert first.current_url == url + "?priority=urgent"
        assert first.find_element(By.ID, "filter-priority").get_attribute("value") == "urgent"
        assert first.find_element(By.ID, "live-status").text == "Updates by itself."
        assert csp_violations(first) == [] and csp_violations(second) == []
    finally:
        first.quit()
        second.quit()
