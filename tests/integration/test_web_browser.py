"""The console in a real browser: Debian's chromium, headless, driven by Selenium through
chromium-driver, against `gateway web` served by uvicorn in a subprocess on an ephemeral port:
log in, see the worklist, open a message, claim it, log out; a supervisor's deadlines board
with the overdue in red; and, between two real gateways on loopback (`gateway serve` of two demo
bureaux), a form received, answered from the console with one field wrong, corrected and sent,
then seen receipted and the form it answers answered. No Content-Security-Policy violation.

Skipped, saying why, where chromium or chromium-driver is missing, unless
GATEWAY_REQUIRE_BROWSER is set (CI sets it after installing them): then it fails."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from accesskit import PASSWORD
from browserkit import SHOTS, WAIT, browser_or_skip, csp_violations, start_chromium, web_process
from dbkit import upgraded
from webkit import receive, write_config

from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.cli import demo
from gateway.core import config as configuration
from gateway.core.config import BUILTIN_FORMS
from gateway.service.services import open_services
from gateway.store.ledger import MessageRow


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
    with web_process(config_path) as url:
        yield url, ids


def test_log_in_see_the_worklist_open_a_message(
    browser_paths: tuple[str, str], served: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    url, ids = served
    browser = start_chromium(browser_paths, tmp_path / "chromium", "1440,800")
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
        wait.until(expected_conditions.staleness_of(table))  # the page the POST leads to
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

        assert csp_violations(browser) == []
    finally:
        browser.quit()


# ---------------------------------------------------------------------- a reply between two bureaux

EXCHANGE_WAIT = 90.0  # seconds for a form to cross from one gateway to the other and back
G_FROM_NORWAY = BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml"


@dataclass
class Exchange:
    """Two demo bureaux serving on loopback (RO and NO), RO's console, and a G from NO that RO
    received."""

    url: str  # RO's console
    ro: Path  # RO's configuration
    no: Path
    received: int  # the G's ledger id at RO
    reference: str


def _serve(config: Path, logs: Path, name: str) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "-c", str(config), "serve"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=config.parent,
    )


def _wait_for(what: str, check: Callable[[], bool], logs: Path) -> None:
    deadline = time.monotonic() + EXCHANGE_WAIT
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {path.name}\n"
                + "\n".join(path.read_text(errors="replace").splitlines()[-30:])
                for path in sorted(logs.glob("*.log"))
            )
            raise AssertionError(f"{what} did not happen in {EXCHANGE_WAIT:.0f} s\n{tails}")
        time.sleep(0.2)


def _row(config: Path, direction: str, partner: str, reference: str) -> MessageRow | None:
    with open_services(configuration.load(config)) as services:
        return services.ledger.find(direction, partner, reference)


def _state(config: Path, direction: str, partner: str, reference: str) -> str:
    row = _row(config, direction, partner, reference)
    return row.state if row is not None else ""


@pytest.fixture
def exchange(browser_paths: tuple[str, str], tmp_path: Path) -> Iterator[Exchange]:
    """The demo's bureaux made in tmp_path; RO and NO serving, RO's console on port 0 with ana,
    a handler of RO's sirene and duty desks; NO sends its G (a hit on RO's alert) to RO."""
    sites = demo.make_sites(tmp_path / "demo", lambda line: None)
    ro, no = sites["ro"].config_path, sites["no"].config_path  # [web]: loopback, port 0
    for config in (ro, no):
        upgraded(configuration.load(config).database_url)
    with open_services(configuration.load(ro)) as services:
        access = open_access(services.config, services.ledger, services.clock)
        access.accounts.add(
            "ana", frozenset({Role.HANDLER}), frozenset({"sirene", "duty"}), PASSWORD
        )
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = [_serve(ro, logs, "ro-serve"), _serve(no, logs, "no-serve")]
    web = subprocess.Popen(
        [sys.executable, "-m", "gateway", "-c", str(ro), "web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ro.parent,
    )
    try:
        assert web.stdout is not None
        line = web.stdout.readline()
        assert "serving the console at http://127.0.0.1:" in line, line
        form = tmp_path / "g.xml"
        form.write_bytes(G_FROM_NORWAY.read_bytes())
        sent = subprocess.run(
            [sys.executable, "-m", "gateway", "-c", str(no), "send", str(form)],
            capture_output=True,
            text=True,
            cwd=no.parent,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        reference = sent.stdout.strip()
        _wait_for(
            "NO's G delivered at RO",
            lambda: _state(ro, "inbound", "NO-SIRENE", reference) == "delivered",
            logs,
        )
        row = _row(ro, "inbound", "NO-SIRENE", reference)
        assert row is not None
        yield Exchange(line.rsplit(" ", 1)[1].strip(), ro, no, row.id, reference)
    finally:
        web.terminate()
        web.communicate(timeout=30)
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        for site in sites.values():
            subprocess.run(
                ["gpgconf", "--homedir", str(site.root / "var" / "gnupg"), "--kill", "gpg-agent"],
                check=False,
                capture_output=True,
            )


def test_reply_with_one_field_wrong_fix_it_send_it_see_it_receipted_and_answered(
    browser_paths: tuple[str, str], exchange: Exchange, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    url = exchange.url
    browser = start_chromium(browser_paths, tmp_path / "chromium", "1280,1400")
    wait = WebDriverWait(browser, WAIT)
    slow = WebDriverWait(browser, EXCHANGE_WAIT, poll_frequency=0.5)
    shots = Path(SHOTS) if SHOTS else tmp_path

    def field(key: str) -> Any:
        return browser.find_element(By.ID, f"f-{key}")

    try:
        browser.get(url)
        wait.until(expected_conditions.presence_of_element_located((By.ID, "login")))
        browser.find_element(By.ID, "name").send_keys("ana")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login").click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "worklist")))

        browser.get(f"{url}messages/{exchange.received}")
        wait.until(expected_conditions.element_to_be_clickable((By.ID, "reply-M"))).click()
        wait.until(expected_conditions.presence_of_element_located((By.ID, "compose")))
        assert f"G {exchange.reference}" in browser.find_element(By.ID, "compose-reply").text
        assert browser.find_element(By.ID, "compose-partner").text == "NO-SIRENE"
        assert field("Header/AlertRef").get_attribute("value") == "RO0000000000123456"

        field("Header/AlertRef").clear()
        field("Header/AlertRef").send_keys("RO-123")  # the one field wrong
        field("Header/Sender/Officer").send_keys("Duty officer 2")
        field("Information").send_keys("The European Arrest Warrant is confirmed and valid.")
        browser.find_element(By.ID, "send").click()

        error = wait.until(
            expected_conditions.presence_of_element_located((By.ID, "e-Header/AlertRef"))
        )
        assert "'RO-123'" in error.text
        assert browser.find_element(By.ID, "errors").text.startswith("Not sent. 1 error")
        assert field("Information").get_attribute("value") == (
            "The European Arrest Warrant is confirmed and valid."
        )
        browser.save_screenshot(str(shots / "console-compose.png"))

        field("Header/AlertRef").clear()
        field("Header/AlertRef").send_keys("RO0000000000123456")
        browser.find_element(By.ID, "send").click()
        title = wait.until(
            expected_conditions.presence_of_element_located((By.ID, "message-title"))
        )
        heading = title.text
        assert heading.startswith("M RO-") and "to NO-SIRENE" in heading
        reply = heading.split()[1]
        sent_url = browser.current_url

        def receipted(_: Any) -> bool:
            browser.get(sent_url)
            return "acknowledged" in browser.find_element(By.ID, "timeline").text

        slow.until(receipted)
        browser.save_screenshot(str(shots / "console-sent.png"))
        browser.get(f"{url}messages/{exchange.received}")
        facts = browser.find_element(By.CSS_SELECTOR, "dl.facts").text
        assert "answered" in facts
        _wait_for(
            "the reply at NO",
            lambda: _state(exchange.no, "outbound", "RO-SIRENE", exchange.reference) == "answered",
            tmp_path / "logs",
        )
        assert _state(exchange.no, "inbound", "RO-SIRENE", reply) in ("received", "delivered")

        assert csp_violations(browser) == []
    finally:
        browser.quit()
