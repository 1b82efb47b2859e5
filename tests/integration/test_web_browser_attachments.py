"""A received message's attachments in a real browser (Debian's chromium, headless, through
chromium-driver) against `gateway web` in a subprocess: the photo (a PNG made here) rendered
inline under the strict Content-Security-Policy with no violation, the file disguised as a photo
not rendered, a document fetched as a download, and every one of them in the access log.

Skipped, saying why, where chromium or chromium-driver is missing, unless
GATEWAY_REQUIRE_BROWSER is set: then it fails."""

from __future__ import annotations

from pathlib import Path

from accesskit import PASSWORD
from browserkit import WAIT, browser_or_skip, csp_violations, sign_in, start_chromium, web_process
from webkit import png, receive, write_config

from gateway.access import accesslog
from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.crypto.pgpmime import Attachment
from gateway.service.services import open_services

PHOTO = Attachment("face.png", "image/png", png(40, 30))
DISGUISED = Attachment("face2.png", "image/png", b"<html><script>alert(1)</script></html>")
PDF = Attachment("warrant.pdf", "application/pdf", b"%PDF-1.4\n% a warrant\n")
FETCH = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(async (answer) => done({
    status: answer.status,
    type: answer.headers.get("content-type"),
    disposition: answer.headers.get("content-disposition"),
    size: (await answer.arrayBuffer()).byteLength,
})).catch((error) => done({error: String(error)}));
"""


def test_a_photo_is_shown_inline_and_a_document_downloaded_each_in_the_access_log(
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support import expected_conditions  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    paths = browser_or_skip()
    config_path = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    config = configuration.load(config_path)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        access.accounts.add("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
        ledger_id = receive(services, "NO-2026-000201", attachments=(PHOTO, DISGUISED, PDF))
    with web_process(config_path) as url:
        browser = start_chromium(paths, tmp_path / "chromium")
        wait = WebDriverWait(browser, WAIT)
        try:
            sign_in(browser, url, "ana")
            browser.get(f"{url}messages/{ledger_id}")
            listed = wait.until(
                expected_conditions.presence_of_element_located((By.ID, "attachments"))
            )
            image = listed.find_element(By.CSS_SELECTOR, "#attachment-1 img")
            wait.until(lambda _: browser.execute_script("return arguments[0].complete", image))
            assert browser.execute_script("return arguments[0].naturalWidth", image) == 40
            assert browser.execute_script("return arguments[0].naturalHeight", image) == 30
            assert listed.find_elements(By.TAG_NAME, "img") == [image]  # not the disguised one
            link = listed.find_element(By.CSS_SELECTOR, "#attachment-3 a")
            assert link.text == "warrant.pdf"
            assert link.get_attribute("download") is not None
            fetched = browser.execute_async_script(FETCH, link.get_attribute("href"))
            assert fetched == {
                "status": 200,
                "type": "application/octet-stream",
                "disposition": 'attachment; filename="warrant.pdf"',
                "size": len(PDF.data),
            }
            assert csp_violations(browser) == []
        finally:
            browser.quit()
    with open_services(config) as services:
        seen = [
            (entry.kind, entry.user, entry.details.get("part"))
            for entry in accesslog.read(services.ledger)
        ]
    assert seen == [
        ("access.view", "ana", "form"),
        ("access.view", "ana", "attachment-1"),
        ("access.download", "ana", "attachment-3"),
    ]
