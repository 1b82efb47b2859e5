"""The worklist that keeps itself current: /worklist/rows answers 304 while the ledger's change
token stays, the lines (with the page's filters) when it moved; one read of the ledger per
interval for every open worklist; its requests never keep a session alive; the page works
without its script (Refresh) and the script is a static file (the CSP stays strict)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from accesskit import PASSWORD
from starlette.testclient import TestClient
from webkit import Console, console, login, receive, write_config

from gateway.access.principals import principal_of
from gateway.web.headers import CSP

ROWS = "/worklist/rows"
TOKEN = re.compile(r'data-token="([^"]+)"')


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Console]:
    with console(write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")) as made:
        yield made


@pytest.fixture
def client(desk: Console) -> Iterator[TestClient]:
    with TestClient(desk.app, follow_redirects=False) as made:
        yield made


def token_of(page: str) -> str:
    found = TOKEN.search(page)
    assert found is not None, "no change token in the page"
    return found.group(1)


def poll(client: TestClient, token: str, query: str = "") -> tuple[int, str, str]:
    """What the page's script asks: the status, the new token (ETag) and the lines."""
    answer = client.get(ROWS + query, headers={"If-None-Match": f'"{token}"'})
    return answer.status_code, answer.headers.get("etag", "").strip('"'), answer.text


def test_the_lines_come_when_something_changed_and_304_otherwise(
    desk: Console, client: TestClient
) -> None:
    first = receive(desk.services, "NO-2026-000001")
    login(client, "ana")
    page = client.get("/").text
    token = token_of(page)
    assert '<script src="/static/live.js" defer></script>' in page
    assert 'data-every="5"' in page and 'id="refresh" href' not in page
    assert '<a href="/" id="refresh">Refresh</a>' in page  # without JavaScript
    assert poll(client, token)[0] == 304

    # Another handler claims it: a second later the token has moved and the lines say who.
    row = desk.services.ledger.get(first)
    cai = principal_of("cai", "handler", "sirene")
    console_app = desk.app.state.console
    console_app.claims.claim(cai, row)
    status, _, _ = poll(client, token)
    assert status == 304  # the token read 0 s ago is still fresh: nobody reads the ledger
    desk.clock.advance(timedelta(seconds=3))
    status, moved, lines = poll(client, token)
    assert status == 200 and moved != token
    assert "<html" not in lines and 'id="worklist"' in lines
    assert re.search(r'class="holder">cai</span>', lines)
    assert f'action="/messages/{first}/claim"' not in lines  # held by another: no Claim
    assert poll(client, moved)[0] == 304

    # A new message appears, and the page's filters hold.
    desk.clock.advance(timedelta(seconds=3))
    receive(desk.services, "NO-2026-000002", priority="normal")
    receive(desk.services, "NO-2026-000003", desk="interpol")  # not ana's desk
    desk.clock.advance(timedelta(seconds=3))
    status, newer, lines = poll(client, moved)
    assert status == 200 and newer != moved
    assert "NO-2026-000002" in lines and "NO-2026-000001" in lines
    assert "NO-2026-000003" not in lines
    status, _, urgent = poll(client, moved, "?priority=urgent")
    assert status == 200 and "NO-2026-000002" not in urgent and "NO-2026-000001" in urgent
    assert poll(client, moved, "?priority=nonsense")[0] == 400

    # The time left changes each minute: so does the token, without a change in the ledger.
    desk.clock.advance(timedelta(minutes=1))
    assert poll(client, newer)[0] == 200


def test_many_open_worklists_cost_one_read_of_the_ledger_per_interval(
    desk: Console, client: TestClient
) -> None:
    receive(desk.services, "NO-2026-000001")
    watch = desk.app.state.console.changes
    others = []
    for name in ("cai", "sue", "dora"):
        other = TestClient(desk.app, follow_redirects=False)
        assert login(other, name)[0] == 303  # each login is an audit entry: the token moves
        others.append(other)
    login(client, "ana")
    token = token_of(client.get("/").text)
    reads = watch.reads
    for _ in range(20):  # 20 polls of each of 4 consoles within one interval
        for each in (client, *others):
            assert poll(each, token)[0] == 304
    assert watch.reads == reads  # none: the page's read is fresh for 2.5 s
    desk.clock.advance(timedelta(seconds=2.5))
    # The token the page got was read at the first login's page, before the later logins
    # (entries of the audit chain): read again now, it has moved, once for every console.
    status, token, _ = poll(client, token)
    assert status == 200
    for _ in range(20):
        for each in (client, *others):
            assert poll(each, token)[0] == 304
    assert watch.reads == reads + 1
    for other in others:
        other.close()


def test_the_checks_never_keep_an_idle_session_alive(desk: Console, client: TestClient) -> None:
    login(client, "ana")
    token = token_of(client.get("/").text)
    for _ in range(29):  # the page checks all along; the user does nothing for 29 minutes
        desk.clock.advance(timedelta(minutes=1))
        status, token, _ = poll(client, token)
        assert status == 200  # the minute moved the token
    desk.clock.advance(timedelta(minutes=1))
    assert poll(client, token)[0] == 401  # idle 30 minutes: ended, the script reloads
    answer = client.get("/")
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")

    login(client, "ana")  # a user who acts keeps it: the same 30 minutes with a page view
    for minute in range(30):
        desk.clock.advance(timedelta(minutes=1))
        if minute == 15:
            assert client.get("/").status_code == 200
        assert poll(client, token)[0] in (200, 304)


def test_without_a_session_or_with_live_off(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", extra="live_seconds = 0")
    with console(config) as desk, TestClient(desk.app, follow_redirects=False) as client:
        assert client.get(ROWS).status_code == 401
        assert client.get(ROWS).text == ""
        assert login(client, "ana", PASSWORD)[0] == 303
        page = client.get("/").text
        assert "live.js" not in page and 'id="refresh"' in page
        answer = client.get("/static/live.js")
        assert answer.status_code == 200 and "fetch(" in answer.text
        assert client.get(ROWS).headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
