"""The console against the real app on a real ledger (SQLite file; PostgreSQL where marked):
login and logout, CSRF, the security headers, the session cookie, the login rate limit, lockout,
session expiry, desk isolation, what each role receives, the access log, an XSS payload inert."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from accesskit import PASSWORD
from dbkit import postgres_schema
from starlette.testclient import TestClient
from webkit import (
    FREE_TEXT,
    XSS,
    Console,
    console,
    csrf_of,
    form_xml,
    login,
    receive,
    write_config,
)

from gateway.access import accesslog, totp
from gateway.web.headers import CSP


def audit_kinds(desk: Console, prefix: str) -> list[str]:
    return [entry.kind for entry in desk.services.audit.entries() if entry.kind.startswith(prefix)]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.fixture
def desk(config: Path) -> Iterator[Console]:
    with console(config) as made:
        yield made


@pytest.fixture
def client(desk: Console) -> Iterator[TestClient]:
    with TestClient(desk.app, follow_redirects=False) as made:
        yield made


# -- headers and cookies ------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(desk: Console, client: TestClient) -> None:
    receive(desk.services, "NO-2026-000001")
    pages = [client.get("/login")]
    login(client, "ana")
    pages += [client.get("/"), client.get("/messages/1"), client.get("/messages/999")]
    for page in pages:
        assert page.headers["content-security-policy"] == CSP
        assert "default-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
        assert "unsafe-inline" not in CSP
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        # Nothing inline that the CSP would have to allow: a script is a static file.
        assert re.findall(r"<script(?![^>]* src=\"/static/)", page.text) == []
        assert "style=" not in page.text
        assert "<style" not in page.text and " on" + "click=" not in page.text
    sheet = client.get("/static/console.css")
    assert sheet.status_code == 200 and sheet.headers["content-security-policy"] == CSP
    assert "no-store" not in sheet.headers.get("cache-control", "")


def test_the_session_cookie_is_httponly_and_strict_and_plain_without_tls(
    client: TestClient,
) -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post(
        "/login", data={"csrf": token, "name": "ana", "password": PASSWORD}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "gateway-session=" in c)
    assert cookie.startswith("gateway-session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie


def test_over_tls_the_cookie_is_host_prefixed_and_secure(desk: Console) -> None:
    with TestClient(desk.app, base_url="https://testserver", follow_redirects=False) as client:
        token = csrf_of(client.get("/login").text)
        answer = client.post("/login", data={"csrf": token, "name": "ana", "password": PASSWORD})
        cookie = next(c for c in answer.headers.get_list("set-cookie") if "session=" in c)
        assert cookie.startswith("__Host-gateway-session=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Domain" not in cookie
        assert client.get("/").status_code == 200


def test_behind_a_proxy_only_the_trusted_proxy_is_believed(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        per_minute=2,
        extra='behind_proxy = true\ntrusted_proxies = ["10.0.0.0/24"]',
    )
    forwarded = {"x-forwarded-proto": "https", "x-forwarded-for": "192.0.2.7"}
    with console(config) as desk:
        with TestClient(desk.app, client=("10.0.0.2", 4000), follow_redirects=False) as proxy:
            page = proxy.get("/login", headers=forwarded)
            assert "__Host-gateway-login=" in page.headers["set-cookie"]
            assert "Secure" in page.headers["set-cookie"]
            # The limit counts the address the proxy names: another client has its own bucket.
            for _ in range(2):
                assert proxy.post("/login", headers=forwarded).status_code == 403  # no CSRF
            assert proxy.post("/login", headers=forwarded).status_code == 429
            other = {**forwarded, "x-forwarded-for": "192.0.2.8"}
            assert proxy.post("/login", headers=other).status_code == 403
        with TestClient(desk.app, client=("198.51.100.9", 4000), follow_redirects=False) as direct:
            page = direct.get("/login", headers=forwarded)  # headers it may not set
            assert page.headers["set-cookie"].startswith("gateway-login=")
            assert "Secure" not in page.headers["set-cookie"]
            # Its forged X-Forwarded-For does not give it a fresh bucket each time.
            codes = [
                direct.post("/login", headers={"x-forwarded-for": f"192.0.2.{n}"}).status_code
                for n in range(3)
            ]
            assert codes == [403, 403, 429]


# -- CSRF ---------------------------------------------------------------------------------------


def test_login_without_or_with_a_wrong_csrf_token_is_403(desk: Console, client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    fields = {"name": "ana", "password": PASSWORD}
    assert client.post("/login", data=fields).status_code == 403
    assert client.post("/login", data={**fields, "csrf": token + "x"}).status_code == 403
    assert client.post("/login", data={**fields, "csrf": ""}).status_code == 403
    client.cookies.clear()  # the form's value without its cookie
    assert client.post("/login", data={**fields, "csrf": token}).status_code == 403
    assert audit_kinds(desk, "login.ok") == []


def test_logout_without_or_with_a_wrong_csrf_token_is_403(
    desk: Console, client: TestClient
) -> None:
    status, page = login(client, "ana")
    assert status == 303
    token = csrf_of(page)
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf": "0" * len(token)}).status_code == 403
    # Another session's token is not this session's.
    with TestClient(desk.app, follow_redirects=False) as other:
        other_token = csrf_of(login(other, "ana")[1])
    assert other_token != token
    assert client.post("/logout", data={"csrf": other_token}).status_code == 403
    assert client.get("/").status_code == 200  # still signed in
    answer = client.post("/logout", data={"csrf": token})
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    assert client.get("/").headers["location"] == "/login"


# -- login: rate limit, lockout, second factor, expiry ------------------------------------------


def test_the_login_rate_limit_answers_429_and_audits_one_refusal_per_window(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", per_minute=3)
    with console(config) as desk, TestClient(desk.app, follow_redirects=False) as client:
        for _ in range(3):
            assert login(client, "ana", "wrong password!")[0] == 401
        refused = [login(client, "ana", PASSWORD)[0] for _ in range(5)]
        assert refused == [429] * 5
        answer = client.post("/login", data={})
        assert answer.status_code == 429
        assert 1 <= int(answer.headers["retry-after"]) <= 20
        assert audit_kinds(desk, "login.throttled") == ["login.throttled"]
        desk.clock.advance(timedelta(seconds=20))  # one attempt's worth refilled
        assert login(client, "ana", PASSWORD)[0] == 303
        for _ in range(3):
            client.post("/login", data={})
        assert audit_kinds(desk, "login.throttled") == ["login.throttled"] * 2  # a new window


def test_failed_logins_lock_the_account(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", per_minute=100)
    with console(config) as desk, TestClient(desk.app, follow_redirects=False) as client:
        for _ in range(4):
            status, page = login(client, "ana", "not the password")
            assert status == 401 and "Wrong name or password." in page
        status, page = login(client, "ana", "not the password")
        assert "locked" in page
        status, page = login(client, "ana", PASSWORD)
        assert status == 401 and "locked until 10:" in page  # 08:05 UTC in Bucharest
        assert "login.locked" in audit_kinds(desk, "login.")
        desk.clock.advance(timedelta(minutes=6))
        assert login(client, "ana", PASSWORD)[0] == 303
        # An unknown name reads like a wrong password.
        client.cookies.clear()
        status, page = login(client, "nobody", PASSWORD)
        assert status == 401 and "Wrong name or password." in page


def test_a_role_that_requires_a_code_gets_it_asked(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", totp_required='["supervisor"]'
    )
    with console(config) as desk, TestClient(desk.app, follow_redirects=False) as client:
        status, page = login(client, "sue")
        assert status == 401 and "needs a second factor" in page
        secret = desk.access.accounts.enrol_totp("sue").secret
        status, page = login(client, "sue")
        assert status == 401 and "Give the code" in page
        assert login(client, "sue", code="000000")[0] == 401
        code = totp.code_at(secret, desk.clock.now())
        status, page = login(client, "sue", code=code)
        assert status == 303 and "all desks" in page
        with TestClient(desk.app, follow_redirects=False) as again:
            assert login(again, "sue", code=code)[0] == 401  # a code is used once


def test_a_session_ends_after_its_idle_time_and_at_its_absolute_end(
    desk: Console, client: TestClient
) -> None:
    assert login(client, "ana")[0] == 303
    desk.clock.advance(timedelta(minutes=29))
    assert client.get("/").status_code == 200
    desk.clock.advance(timedelta(minutes=30))
    answer = client.get("/")
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    assert login(client, "ana")[0] == 303
    for _ in range(12 * 3 - 1):  # busy all along: 20 minutes at a time for 12 hours
        desk.clock.advance(timedelta(minutes=20))
        assert client.get("/").status_code == 200
    desk.clock.advance(timedelta(minutes=20))
    assert client.get("/").headers["location"] == "/login"


# -- the worklist -------------------------------------------------------------------------------


def test_the_worklist_shows_the_users_desks_newest_first(desk: Console, client: TestClient) -> None:
    first = receive(desk.services, "NO-2026-000001")
    desk.clock.advance(timedelta(hours=13))  # the first reply is overdue by then
    receive(desk.services, "NO-2026-000002", priority="normal", reply_in=timedelta(hours=3))
    receive(desk.services, "NO-2026-000003", desk="interpol")
    login(client, "ana")
    page = client.get("/").text
    assert page.index("NO-2026-000002") < page.index("NO-2026-000001")
    assert "NO-2026-000003" not in page
    # Received 2026-12-01 08:00 UTC: shown in Bucharest time, UTC on hover.
    assert '<time datetime="2026-12-01T08:00:00Z" title="2026-12-01 08:00 UTC">' in page
    assert "2026-12-01 10:00 EET" in page
    assert "3 h 00 min" in page and "overdue 1 h 00 min" in page
    assert f'href="/messages/{first}"' in page
    # A supervisor sees every desk.
    with TestClient(desk.app, follow_redirects=False) as supervisor:
        login(supervisor, "sue")
        every = supervisor.get("/").text
        assert all(f"NO-2026-00000{n}" in every for n in (1, 2, 3))


def test_the_worklist_pages_by_ledger_id_and_filters(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", page_size=5)
    with console(config) as desk, TestClient(desk.app, follow_redirects=False) as client:
        ids = [receive(desk.services, f"NO-2026-{n:06d}") for n in range(1, 13)]
        login(client, "ana")
        seen: list[list[str]] = []
        url: str | None = "/"
        while url is not None:
            page = client.get(url).text
            seen.append(re.findall(r"NO-2026-0000\d\d", page))
            found = re.search(r'id="older" href="([^"]+)"', page)
            url = found.group(1).replace("&amp;", "&") if found else None
        assert [len(refs) for refs in seen] == [5, 5, 2]
        flat = [ref for refs in seen for ref in refs]
        assert flat == [f"NO-2026-{n:06d}" for n in range(12, 0, -1)]
        assert client.get(f"/?before={ids[2]}").text.count('class="open"') == 2
        assert "NO-2026-000012" in client.get("/?form=G&partner=NO-SIRENE").text
        assert 'id="empty"' in client.get("/?form=A").text
        assert client.get("/?partner=<x>").status_code == 400
        assert client.get("/?before=-1").status_code == 400


# -- the message view ---------------------------------------------------------------------------


def test_a_handler_reads_a_message_of_its_desk_and_the_view_is_logged(
    desk: Console, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    login(client, "ana")
    page = client.get(f"/messages/{ledger_id}")
    assert page.status_code == 200
    text = page.text
    assert "SIRENE form G" in text  # the desk copy's title line
    assert "  Action taken: Person arrested." in text  # labels as on the desk copy
    assert "Family name: EXAMPLE" in text
    assert re.search(r"<strong>received</strong>.*<strong>delivered</strong>", text, re.S)
    assert "2026-12-01 22:00 EET" in text and "(open, 12 h 00 min left)" in text
    views = accesslog.read(desk.services.ledger)
    assert [(v.kind, v.user, v.role, v.purpose, v.reference) for v in views] == [
        ("access.view", "ana", "handler", "case-work", "NO-2026-000001")
    ]
    assert views[0].details == {"ledger": str(ledger_id), "part": "form"}


def test_a_handler_of_another_desk_gets_404_as_for_no_message(
    desk: Console, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    login(client, "ben")
    theirs = client.get(f"/messages/{ledger_id}")
    none = client.get("/messages/424242")
    assert theirs.status_code == none.status_code == 404
    assert theirs.text == none.text
    assert "NO-2026-000001" not in client.get("/").text
    assert accesslog.read(desk.services.ledger) == []


def test_operators_see_metadata_only_and_auditors_nothing_of_messages(
    desk: Console, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    login(client, "olaf")
    listing = client.get("/")
    assert listing.status_code == 200 and "NO-2026-000001" in listing.text
    page = client.get(f"/messages/{ledger_id}")
    assert page.status_code == 200 and "NO-2026-000001" in page.text
    assert 'id="no-content"' in page.text
    for content in ("Action taken", "EXAMPLE", "Person arrested", "X0000000", "form-text"):
        assert content not in page.text
    with TestClient(desk.app, follow_redirects=False) as auditor:
        login(auditor, "aud")
        home = auditor.get("/")  # an auditor's page is the access log
        assert (home.status_code, home.headers["location"]) == (303, "/access-log")
        answer = auditor.get(f"/messages/{ledger_id}")
        assert answer.status_code == 403
        assert "NO-2026-000001" not in answer.text and "EXAMPLE" not in answer.text
    assert accesslog.read(desk.services.ledger) == []  # nothing of content was consulted


def test_an_xss_payload_in_every_free_text_field_is_rendered_inert(
    desk: Console, client: TestClient
) -> None:
    form = form_xml("NO-2026-000001", **dict.fromkeys(FREE_TEXT, XSS))
    ledger_id = receive(desk.services, "NO-2026-000001", form=form)
    login(client, "ana")
    page = client.get(f"/messages/{ledger_id}").text
    assert page.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") == len(FREE_TEXT)
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") == len(FREE_TEXT)
    assert "<script" not in page and "<img" not in page


def test_a_message_whose_copy_is_no_longer_kept_shows_its_metadata(
    desk: Console, client: TestClient
) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    desk.services.inbound.delete("in-NO-2026-000001", "queued")
    login(client, "ana")
    page = client.get(f"/messages/{ledger_id}")
    assert page.status_code == 200 and "no longer kept" in page.text
    assert accesslog.read(desk.services.ledger) == []


def test_a_message_whose_copy_cannot_be_read_says_so(desk: Console, client: TestClient) -> None:
    broken = receive(desk.services, "NO-2026-000001", form=b"<FormG>not the form</FormG>")
    login(client, "ana")
    page = client.get(f"/messages/{broken}")
    assert page.status_code == 200 and "cannot be read or no longer validates" in page.text
    assert "not the form" not in page.text
    assert accesslog.read(desk.services.ledger) == []


def test_without_a_session_every_page_leads_to_the_login(client: TestClient) -> None:
    for url in ("/", "/messages/1"):
        answer = client.get(url)
        assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    assert client.post("/logout").headers["location"] == "/login"


@pytest.mark.postgres
def test_the_console_on_postgresql(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_schema())
        desk = stack.enter_context(console(write_config(tmp_path, url)))
        client = stack.enter_context(TestClient(desk.app, follow_redirects=False))
        mine = receive(desk.services, "NO-2026-000001")
        theirs = receive(desk.services, "NO-2026-000002", desk="interpol")
        login(client, "ana")
        assert "NO-2026-000001" in client.get("/").text
        assert "Action taken" in client.get(f"/messages/{mine}").text
        assert client.get(f"/messages/{theirs}").status_code == 404
        assert len(accesslog.read(desk.services.ledger)) == 1


def test_a_body_over_the_cap_is_refused_with_413(desk: Console, client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    huge = {"csrf": token, "name": "ana", "password": "x" * 100_000}
    answer = client.post("/login", data=huge)
    assert answer.status_code == 413
    assert answer.headers["content-security-policy"] == CSP  # the headers wrap the refusal too

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b"csrf=" + token.encode() + b"&name=ana&password="
        for _ in range(100):
            yield b"x" * 1000

    streamed = client.post(
        "/login", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert streamed.status_code == 413
    assert audit_kinds(desk, "login.") == []
